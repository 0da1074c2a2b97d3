"""Changing an app table's rows from the database pane: insert, update and delete by
primary key.

Hasura's ``run_sql`` has no bind parameters, so the values travel the way closest to one:
all of a request's values are one JSON document, written as a single escaped literal
(:func:`~.sql.quote_literal`) and turned into a row of the table's own type by PostgreSQL
(``jsonb_populate_record(NULL::"schema"."table", doc)``). No value is ever SQL syntax; the
statement's only other parts are identifiers checked against the introspected table and
quoted by :func:`~.sql.quote_ident`. Values are checked against the column types first so
the common mistakes get a specific answer (:class:`InvalidRow`); what PostgreSQL still
refuses (a date it cannot read, a duplicate key) comes back from Hasura as an error.

A table without a primary key is read-only here: there is no way to name one row of it.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from amicable_agent.errors import AgentError

from .sql import quote_ident, quote_literal

if TYPE_CHECKING:
    from .schema_model import ColumnDef, TableDef

#: Upper bound of one row-change request's body.
MAX_ROW_BODY_BYTES = 256 * 1024
_INT_TYPES = frozenset({"integer", "bigint", "smallint", "serial", "bigserial"})
_NUMBER_TYPES = frozenset({"numeric", "real", "double precision"})
_JSON_TYPES = frozenset({"json", "jsonb"})
_INT_TEXT = re.compile(r"-?\d{1,19}")
_NUMBER_TEXT = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_INT_RANGE = {"smallint": 2**15, "integer": 2**31, "serial": 2**31}
_ALIAS_ROW, _ALIAS_VALUES, _ALIAS_KEY = "amicable_t", "amicable_v", "amicable_k"


class InvalidRow(AgentError, ValueError):
    """A row change the pane will not send; ``code`` is the wire error, ``str`` the detail."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def primary_key(table: TableDef) -> list[str]:
    """The table's primary key columns, in table order."""
    return [c.name for c in table.columns if c.is_primary]


def read_only_reason(table: TableDef) -> str | None:
    """Why the pane cannot change ``table``'s rows, or None."""
    if not primary_key(table):
        return (
            f"table {table.name} has no primary key, so a row cannot be named: "
            "its rows are read-only here"
        )
    return None


def _type_error(column: ColumnDef, expected: str, value: Any) -> InvalidRow:
    shown = json.dumps(value)[:60]
    return InvalidRow(
        "invalid_value", f"column {column.name} ({column.type}) needs {expected}, not {shown}"
    )


def check_value(column: ColumnDef, value: Any) -> Any:
    """``value`` if it fits ``column`` (JSON in the column's terms).

    Raises:
        InvalidRow: ``invalid_value`` (wrong type, out of range, empty where not allowed).
    """
    if value is None:
        if not column.nullable:
            raise InvalidRow("invalid_value", f"column {column.name} cannot be empty")
        return None
    kind = column.type
    if kind in _JSON_TYPES:
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _type_error(column, "true or false", value)
        return value
    if isinstance(value, bool):
        raise _type_error(column, "a " + ("number" if kind in _NUMBER_TYPES else "string"), value)
    if kind in _INT_TYPES:
        text = str(value) if isinstance(value, int) else value
        if not isinstance(text, str) or not _INT_TEXT.fullmatch(text):
            raise _type_error(column, "a whole number", value)
        limit = _INT_RANGE.get(kind, 2**63)
        if not -limit <= int(text) < limit:
            raise InvalidRow("invalid_value", f"column {column.name}: {text} is out of range")
        return int(text)
    if kind in _NUMBER_TYPES:
        if isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                raise _type_error(column, "a finite number", value)
            return value
        if not isinstance(value, str) or not _NUMBER_TEXT.fullmatch(value):
            raise _type_error(column, "a number", value)
        return value
    if not isinstance(value, str):
        raise _type_error(column, "a string", value)
    if "\x00" in value:
        raise InvalidRow("invalid_value", f"column {column.name}: text cannot contain NUL")
    return value


def _column(table: TableDef, name: Any) -> ColumnDef:
    if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        shown = json.dumps(name)[:80]
        raise InvalidRow("invalid_column", f"{shown} is not a valid column name")
    found = table.column(name)
    if found is None:
        raise InvalidRow("unknown_column", f"table {table.name} has no column {name}")
    return found


def check_values(table: TableDef, raw: Any, what: str) -> dict[str, Any]:
    """``{column: value}`` of ``raw`` after :func:`check_value` of each.

    Raises:
        InvalidRow: ``invalid_request`` (not an object), ``invalid_column``,
            ``unknown_column``, ``invalid_value``.
    """
    if not isinstance(raw, dict):
        raise InvalidRow("invalid_request", f"{what} must be an object of column: value")
    return {name: check_value(_column(table, name), v) for name, v in raw.items()}


def check_key(table: TableDef, raw: Any) -> dict[str, Any]:
    """The primary key values naming one row of ``table``.

    Raises:
        InvalidRow: ``read_only_table`` (no primary key), ``invalid_key`` (not exactly the
            key's columns, or a null), or what :func:`check_values` raises.
    """
    reason = read_only_reason(table)
    if reason is not None:
        raise InvalidRow("read_only_table", reason)
    wanted = primary_key(table)
    if isinstance(raw, dict) and any(v is None for v in raw.values()):
        raise InvalidRow("invalid_key", f"a key value cannot be empty: {', '.join(wanted)}")
    key = check_values(table, raw, "key")
    if sorted(key) != sorted(wanted):
        raise InvalidRow(
            "invalid_key", f"key must give exactly the primary key: {', '.join(wanted)}"
        )
    return key


def _doc(values: dict[str, Any], schema: str, table: str, alias: str) -> str:
    literal = quote_literal(json.dumps(values, separators=(",", ":")))
    target = f"{quote_ident(schema)}.{quote_ident(table)}"
    return f"jsonb_populate_record(NULL::{target}, {literal}::jsonb) AS {alias}"


def _key_match(key: dict[str, Any]) -> str:
    return " AND ".join(
        f"{_ALIAS_ROW}.{quote_ident(c)} = {_ALIAS_KEY}.{quote_ident(c)}" for c in sorted(key)
    )


def _answer(change: str) -> str:
    return (
        f"WITH done AS ({change} RETURNING {_ALIAS_ROW}.*) SELECT json_build_object("
        "'count', (SELECT count(*) FROM done), "
        "'row', (SELECT row_to_json(done) FROM done LIMIT 1))::text AS answer;"
    )


def insert_sql(schema: str, table: TableDef, values: dict[str, Any]) -> str:
    """One statement inserting a row of checked ``values`` (others get their defaults)."""
    target = f"{quote_ident(schema)}.{quote_ident(table.name)} AS {_ALIAS_ROW}"
    if not values:
        return _answer(f"INSERT INTO {target} DEFAULT VALUES")
    cols = ", ".join(quote_ident(c) for c in values)
    picked = ", ".join(f"{_ALIAS_VALUES}.{quote_ident(c)}" for c in values)
    source = _doc(values, schema, table.name, _ALIAS_VALUES)
    return _answer(f"INSERT INTO {target} ({cols}) SELECT {picked} FROM {source}")


def update_sql(schema: str, table: TableDef, key: dict[str, Any], values: dict[str, Any]) -> str:
    """One statement setting checked ``values`` in the row named by ``key``."""
    target = f"{quote_ident(schema)}.{quote_ident(table.name)} AS {_ALIAS_ROW}"
    sets = ", ".join(f"{quote_ident(c)} = {_ALIAS_VALUES}.{quote_ident(c)}" for c in values)
    sources = (
        f"{_doc(values, schema, table.name, _ALIAS_VALUES)}, "
        f"{_doc(key, schema, table.name, _ALIAS_KEY)}"
    )
    return _answer(f"UPDATE {target} SET {sets} FROM {sources} WHERE {_key_match(key)}")


def delete_sql(schema: str, table: TableDef, key: dict[str, Any]) -> str:
    """One statement deleting the row named by ``key``."""
    target = f"{quote_ident(schema)}.{quote_ident(table.name)} AS {_ALIAS_ROW}"
    source = _doc(key, schema, table.name, _ALIAS_KEY)
    return _answer(f"DELETE FROM {target} USING {source} WHERE {_key_match(key)}")


def parse_answer(rows: list[list[str]] | None) -> tuple[int, dict[str, Any] | None]:
    """``(rows changed, the first changed row)`` of a statement built here."""
    if not rows or len(rows) < 2 or rows[1][0] in (None, "NULL"):
        return 0, None
    doc = json.loads(rows[1][0])
    row = doc.get("row")
    return int(doc.get("count") or 0), row if isinstance(row, dict) else None
