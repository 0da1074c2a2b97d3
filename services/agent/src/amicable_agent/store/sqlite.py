"""SQLite implementation of :class:`amicable_agent.store.base.Store` (queries in ``sql_store``).

The one module that uses :mod:`sqlite3`: every call runs in a worker thread through
``trio.to_thread.run_sync`` with a single-slot :class:`trio.CapacityLimiter`, so the one
connection is never used concurrently. Schema changes are numbered migrations recorded in
``schema_version``.
"""

from __future__ import annotations

import sqlite3
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .sql import SqlStore, render_migrations

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

T = TypeVar("T")

MIGRATIONS = render_migrations(
    serial_pk="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL", blob="BLOB"
)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the pending migrations; returns the resulting schema version."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    current = int(row[0] or 0)
    for number, script in enumerate(MIGRATIONS, start=1):
        if number <= current:
            continue
        conn.executescript(
            f"BEGIN; {script}; INSERT INTO schema_version VALUES ({number}); COMMIT;"
        )
        current = number
    return current


class SqliteStore(SqlStore):
    """The SQLite store. Create with :func:`open_sqlite_store`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__()
        self._conn = conn
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        fn = self._guarded(fn)

        def call() -> T:
            with self._conn:
                return fn(self._conn)

        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    def _insert_slug(
        self, conn: sqlite3.Connection, query: str, params: tuple[Any, ...]
    ) -> sqlite3.Cursor | None:
        try:
            return conn.execute(query, params)
        except sqlite3.IntegrityError as exc:
            if "projects.project_id" in str(exc):
                raise ValueError("the project already exists") from exc
            return None  # the unique index on live slugs

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._conn.close, limiter=self._limiter)


@asynccontextmanager
async def open_sqlite_store(path: Path | str) -> AsyncIterator[SqliteStore]:
    """Open (creating and migrating) the SQLite database at ``path``; ``":memory:"`` works.

    Cancellation: closing is shielded so the file is always released.
    """

    def connect() -> sqlite3.Connection:
        if str(path) != ":memory:":
            from pathlib import Path as _Path

            _Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA busy_timeout = 5000")
        migrate(conn)
        conn.isolation_level = "DEFERRED"  # implicit transactions, committed by `with conn`
        return conn

    conn = await trio.to_thread.run_sync(connect)
    store = SqliteStore(conn)
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
