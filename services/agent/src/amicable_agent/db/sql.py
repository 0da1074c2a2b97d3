"""Names and SQL text for the per-app database.

Every SQL statement the agent sends through ``run_sql`` (with the admin secret) is built
from identifiers checked by :func:`quote_ident` and values quoted by :func:`quote_literal`;
nothing user-controlled is ever pasted into SQL as is.
"""

from __future__ import annotations

import hashlib
import re

#: Schema of the agent's own bookkeeping tables.
META_SCHEMA = "amicable_meta"
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def app_schema_name(app_id: str) -> str:
    """``app_`` + the first 12 hex digits of sha256(app_id): the app's schema and role."""
    return "app_" + hashlib.sha256(app_id.encode("utf-8")).hexdigest()[:12]


def sha256_hex(text: str) -> str:
    """Hex sha256 of a UTF-8 string (how app keys are stored)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def valid_ident(name: str) -> bool:
    """A lower-case SQL identifier we are willing to use (no quoting tricks needed)."""
    return _IDENT.fullmatch(name) is not None


def quote_ident(name: str) -> str:
    """``"name"`` for a validated identifier.

    Raises:
        ValueError: not ``[a-z_][a-z0-9_]{0,62}``.
    """
    if not valid_ident(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return f'"{name}"'


def quote_literal(value: str) -> str:
    """An escape-string literal (``E'...'``) that means ``value`` whatever the server's
    ``standard_conforming_strings`` is.

    Raises:
        ValueError: ``value`` contains a NUL character (Postgres text cannot hold it).
    """
    if "\x00" in value:
        raise ValueError("SQL text cannot contain NUL")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def meta_table(table: str) -> str:
    """``"amicable_meta"."<table>"``."""
    return f"{quote_ident(META_SCHEMA)}.{quote_ident(table)}"


APPS_DDL = f"""CREATE SCHEMA IF NOT EXISTS {quote_ident(META_SCHEMA)};
CREATE TABLE IF NOT EXISTS {meta_table("apps")} (
  app_id text PRIMARY KEY,
  schema_name text NOT NULL,
  role_name text NOT NULL,
  app_key_sha256 text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);"""
