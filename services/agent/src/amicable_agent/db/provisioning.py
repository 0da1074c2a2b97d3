"""Per-app schemas, app keys and cleanup (upstream §6.1, §6.6).

An app's schema and Hasura role are both ``app_<sha12>``; ``amicable_meta.apps`` keeps the
sha256 of the app key (the plaintext exists only in the return value of
:meth:`Provisioner.ensure_app` and in the sandbox's ``amicable-db.js``). No Postgres role is
created: the "role" is a Hasura permission role named in the minted JWT.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import TYPE_CHECKING

import attrs
import trio

from amicable_agent.errors import HasuraError

from .sql import (
    APPS_DDL,
    META_SCHEMA,
    app_schema_name,
    meta_table,
    quote_ident,
    quote_literal,
    sha256_hex,
    valid_ident,
)

if TYPE_CHECKING:
    from .hasura import HasuraClient

log = logging.getLogger(__name__)

#: Permissions granted to the app role on a tracked table (upstream: full CRUD, no filter).
CRUD = ("select", "insert", "update", "delete")


@attrs.frozen
class AppRecord:
    """One row of ``amicable_meta.apps``."""

    app_id: str
    schema_name: str
    role_name: str
    app_key_sha256: str = attrs.field(repr=False)

    def key_matches(self, app_key: str) -> bool:
        """Constant-time comparison of ``sha256(app_key)`` with the stored hash."""
        return hmac.compare_digest(sha256_hex(app_key).encode(), self.app_key_sha256.encode())


@attrs.frozen
class AppCredentials:
    """The result of :meth:`Provisioner.ensure_app`.

    Attributes:
        record: the app row.
        app_key: the plaintext key (for ``amicable-db.js`` only; never log it).
        changed: the key is new (created or rotated), so the sandbox file must be rewritten.
    """

    record: AppRecord
    app_key: str = attrs.field(repr=False)
    changed: bool


def _not_tracked(exc: HasuraError) -> bool:
    text = f"{exc.code} {exc.detail}".lower()
    return any(s in text for s in ("untracked", "not-exists", "not tracked", "does not exist"))


class Provisioner:
    """Creates, looks up, re-keys and removes app databases through Hasura's admin API."""

    def __init__(self, client: HasuraClient) -> None:
        self._client = client
        self._meta_ready = False
        self._meta_lock = trio.Lock()

    async def _ensure_meta(self) -> None:
        async with self._meta_lock:
            if not self._meta_ready:
                await self._client.run_sql(APPS_DDL)
                self._meta_ready = True

    async def get_app(self, app_id: str) -> AppRecord | None:
        """The app row, or None.

        Raises:
            HasuraError: Hasura failed.
        """
        await self._ensure_meta()
        rows = await self._client.run_sql(
            "SELECT app_id, schema_name, role_name, app_key_sha256 FROM "
            f"{meta_table('apps')} WHERE app_id = {quote_literal(app_id)};",
            read_only=True,
        )
        if not rows or len(rows) < 2:
            return None
        app, schema, role, digest = rows[1][:4]
        return AppRecord(app, schema, role, digest)

    async def ensure_app(self, app_id: str, *, known_key: str | None = None) -> AppCredentials:
        """Create the app's schema and row if missing; keep ``known_key`` if it still
        matches, else issue a new key.

        Args:
            app_id: the project id.
            known_key: the key found in the sandbox's ``amicable-db.js``, if any.

        Raises:
            HasuraError: Hasura failed.
        """
        schema = app_schema_name(app_id)
        await self._ensure_meta()
        await self._client.run_sql(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)};")
        record = await self.get_app(app_id)
        if record is not None and known_key and record.key_matches(known_key):
            return AppCredentials(record, known_key, changed=False)
        key = secrets.token_urlsafe(32)
        digest = sha256_hex(key)
        # Insert or re-key in one statement: two agents racing both end with a valid row
        # and the last writer's key, which its sandbox file then carries.
        await self._client.run_sql(
            f"INSERT INTO {meta_table('apps')} "
            "(app_id, schema_name, role_name, app_key_sha256) VALUES "
            f"({quote_literal(app_id)}, {quote_literal(schema)}, {quote_literal(schema)}, "
            f"{quote_literal(digest)}) ON CONFLICT (app_id) DO UPDATE SET "
            "app_key_sha256 = EXCLUDED.app_key_sha256, updated_at = now();"
        )
        log.info("app %s: %s app key", schema, "rotated" if record else "created")
        return AppCredentials(AppRecord(app_id, schema, schema, digest), key, changed=True)

    async def rotate_app_key(self, app_id: str) -> str | None:
        """A new key for an existing app (the old one stops working); None if unknown.

        Raises:
            HasuraError: Hasura failed.
        """
        if await self.get_app(app_id) is None:
            return None
        key = secrets.token_urlsafe(32)
        await self._client.run_sql(
            f"UPDATE {meta_table('apps')} SET app_key_sha256 = {quote_literal(sha256_hex(key))}, "
            f"updated_at = now() WHERE app_id = {quote_literal(app_id)};"
        )
        return key

    async def track_table(
        self, app_id: str, table: str, *, operations: tuple[str, ...] = CRUD
    ) -> None:
        """Track ``<schema>.<table>`` in Hasura and grant the app role ``operations``
        (all columns, no row filter — the schema belongs to this app alone).

        Raises:
            ValueError: ``table`` is not a safe identifier.
            HasuraError: Hasura failed.
        """
        if not valid_ident(table):
            raise ValueError(f"not a safe table name: {table!r}")
        schema = app_schema_name(app_id)
        source = self._client.source_name
        ref = {"schema": schema, "name": table}
        try:
            await self._client.metadata("pg_track_table", {"source": source, "table": ref})
        except HasuraError as exc:
            if exc.code != "already-tracked":
                raise
        perms = {
            "select": {"columns": "*", "filter": {}, "allow_aggregations": True},
            "insert": {"columns": "*", "check": {}},
            "update": {"columns": "*", "filter": {}, "check": {}},
            "delete": {"filter": {}},
        }
        for op in operations:
            args = {"source": source, "table": ref, "role": schema, "permission": perms[op]}
            try:
                await self._client.metadata(f"pg_create_{op}_permission", args)
            except HasuraError as exc:
                if exc.code != "already-exists":
                    raise

    async def untrack_table(self, app_id: str, table: str) -> bool:
        """Untrack ``<schema>.<table>`` (cascade: its permissions and relationships go too).

        Returns:
            Whether it was tracked.

        Raises:
            ValueError: ``table`` is not a safe identifier.
            HasuraError: Hasura failed (a table that is not tracked is fine).
        """
        if not valid_ident(table):
            raise ValueError(f"not a safe table name: {table!r}")
        args = {
            "source": self._client.source_name,
            "table": {"schema": app_schema_name(app_id), "name": table},
            "cascade": True,
        }
        try:
            await self._client.metadata("pg_untrack_table", args)
        except HasuraError as exc:
            if not _not_tracked(exc):
                raise
            return False
        return True

    async def cleanup_app(self, app_id: str) -> bool:
        """Untrack the app's tables, drop its schema and delete its row (idempotent).

        Returns:
            Whether the app had a row.

        Raises:
            HasuraError: Hasura failed (untracking a table that is not tracked is fine).
        """
        record = await self.get_app(app_id)
        schema = record.schema_name if record is not None else app_schema_name(app_id)
        if not valid_ident(schema) or schema == META_SCHEMA:
            raise ValueError(f"refusing to drop schema {schema!r}")
        rows = await self._client.run_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            f"{quote_literal(schema)} AND table_type = 'BASE TABLE';",
            read_only=True,
        )
        for (table,) in (rows or [[]])[1:]:
            args = {
                "source": self._client.source_name,
                "table": {"schema": schema, "name": table},
                "cascade": True,
            }
            try:
                await self._client.metadata("pg_untrack_table", args)
            except HasuraError as exc:
                if not _not_tracked(exc):
                    raise
        await self._client.run_sql(
            f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE;\n"
            f"DELETE FROM {meta_table('apps')} WHERE app_id = {quote_literal(app_id)};",
            cascade=True,
        )
        return record is not None
