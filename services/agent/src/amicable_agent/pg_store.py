"""PostgreSQL implementation of :class:`amicable_agent.store.Store` (a store several agent
replicas can share).

The one module that uses :mod:`psycopg`. Calls run in worker threads
(``trio.to_thread.run_sync``) on a small pool of connections; the limiter's slot count is the
pool size, so a connection is never used by two threads at once. Each call is one
transaction (``with conn.transaction()``); a conflicting slug is retried inside a savepoint.

Connections that sat idle longer than ``ping_after_s`` are checked with ``SELECT 1`` before
use and replaced when the server dropped them (a database restart or failover), so the first
call after an outage succeeds instead of failing on a dead socket. A failure in the middle of
a call is not retried (a write may or may not have committed): it raises
:class:`~amicable_agent.errors.StoreUnavailable` and the connection is discarded.

Schema changes are the same numbered migrations as the SQLite store, in PostgreSQL's
dialect, applied under a transaction-scoped advisory lock so replicas starting at the same
time do not race.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import trio
from amicable_protocol.messages import HistoryEntry

from .errors import StoreUnavailable
from .store import Project, slug_candidates, slugify

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

T = TypeVar("T")

#: Arbitrary constant naming the migration lock (``pg_advisory_xact_lock``).
MIGRATION_LOCK_ID = 0x616D6963  # "amic"
#: Connections idle longer than this are pinged before use.
PING_AFTER_S = 30.0
#: Connect timeout per attempt.
CONNECT_TIMEOUT_S = 10

MIGRATIONS: tuple[str, ...] = (
    # 1: projects, chat, conversation, state, turn events
    """
    CREATE TABLE projects (
        project_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        slug TEXT NOT NULL,
        template_id TEXT NOT NULL,
        sandbox_id TEXT,
        prompt TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        deleted_at DOUBLE PRECISION
    );
    CREATE UNIQUE INDEX projects_live_slug ON projects(slug) WHERE deleted_at IS NULL;
    CREATE TABLE chat_entries (
        seq BIGSERIAL PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX chat_entries_project ON chat_entries(project_id, seq);
    CREATE TABLE conversations (
        project_id TEXT PRIMARY KEY REFERENCES projects(project_id) ON DELETE CASCADE,
        messages_json TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE project_state (
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value_json TEXT NOT NULL,
        PRIMARY KEY (project_id, key)
    );
    CREATE TABLE turn_events (
        seq BIGSERIAL PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        payload_json TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX turn_events_project ON turn_events(project_id, seq);
    """,
)

_COLUMNS = (
    "project_id, name, slug, template_id, sandbox_id, prompt, created_at, updated_at, deleted_at"
)


def _row(row: tuple[Any, ...] | None) -> Project | None:
    return Project(*row) if row is not None else None


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Apply the pending migrations (serialised across processes); returns the version."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = int(row[0] or 0) if row else 0
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            conn.execute(script)  # several statements: allowed without parameters
            conn.execute("INSERT INTO schema_version VALUES (%s)", (number,))
            current = number
    return current


def _is_slug_conflict(exc: psycopg.errors.UniqueViolation) -> bool:
    return exc.diag.constraint_name == "projects_live_slug"


class _Pool:
    """A fixed set of lazily opened connections, handed out to one worker thread at a time."""

    def __init__(self, conninfo: str, size: int, ping_after_s: float) -> None:
        self.conninfo = conninfo
        self.ping_after_s = ping_after_s
        self.limiter = trio.CapacityLimiter(size)
        self._lock = threading.Lock()  # worker threads share the lists below
        #: idle connections with the time each was last used (monotonic)
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []
        self._all: set[psycopg.Connection[Any]] = set()
        #: when a connection last failed: idle ones older than that are suspect (the server
        #: may have restarted under all of them)
        self._failed_at = float("-inf")

    def connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        with self._lock:
            self._all.add(conn)
        return conn

    def _pop_idle(self) -> tuple[psycopg.Connection[Any], float] | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def take(self) -> psycopg.Connection[Any]:
        """An open connection (worker thread; the limiter guarantees one is free or new)."""
        while (idle := self._pop_idle()) is not None:
            conn, last_used = idle
            if conn.closed:
                self.discard(conn)
                continue
            if last_used <= self._failed_at or time.monotonic() - last_used >= self.ping_after_s:
                try:
                    conn.execute("SELECT 1")
                except psycopg.Error:
                    self.discard(conn, failed=True)
                    continue
            return conn
        return self.connect()

    def give_back(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            self.discard(conn, failed=True)
        else:
            with self._lock:
                self._idle.append((conn, time.monotonic()))

    def discard(self, conn: psycopg.Connection[Any], *, failed: bool = False) -> None:
        with self._lock:
            self._all.discard(conn)
            if failed:
                self._failed_at = time.monotonic()
        with contextlib.suppress(psycopg.Error):  # closing a dead socket
            conn.close()

    def close_all(self) -> None:
        with self._lock:
            conns, self._idle = list(self._all), []
        for conn in conns:
            self.discard(conn)


class PostgresStore:
    """The PostgreSQL store. Create with :func:`open_postgres_store`."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool

    async def _run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        pool = self._pool

        def call() -> T:
            try:
                conn = pool.take()
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"cannot reach the PostgreSQL store: {exc}") from exc
            try:
                with conn.transaction():
                    result = fn(conn)
            except psycopg.OperationalError as exc:
                pool.discard(conn, failed=True)
                raise StoreUnavailable(f"the PostgreSQL store failed mid-call: {exc}") from exc
            except BaseException:
                pool.give_back(conn)
                raise
            pool.give_back(conn)
            return result

        return await trio.to_thread.run_sync(call, limiter=pool.limiter)

    # --- projects -------------------------------------------------------------------

    async def create_project(
        self,
        name: str,
        *,
        template_id: str,
        prompt: str | None = None,
        project_id: str | None = None,
    ) -> Project:
        pid = project_id or str(uuid.uuid4())
        now = time.time()

        def insert(conn: psycopg.Connection[Any]) -> Project:
            if conn.execute("SELECT 1 FROM projects WHERE project_id=%s", (pid,)).fetchone():
                raise ValueError(f"project {pid} already exists")
            for slug in slug_candidates(slugify(name), pid):
                try:
                    with conn.transaction():  # a savepoint: a taken slug rolls back only this
                        conn.execute(
                            f"INSERT INTO projects ({_COLUMNS}) "
                            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,NULL)",
                            (pid, name, slug, template_id, None, prompt, now, now),
                        )
                except psycopg.errors.UniqueViolation as exc:
                    if not _is_slug_conflict(exc):
                        raise ValueError(f"project {pid} already exists") from exc
                    continue
                return Project(pid, name, slug, template_id, None, prompt, now, now)
            raise ValueError("could not find a free slug")

        return await self._run(insert)

    async def get_project(self, project_id: str) -> Project | None:
        return await self._run(
            lambda c: _row(
                c.execute(
                    f"SELECT {_COLUMNS} FROM projects WHERE project_id=%s AND deleted_at IS NULL",
                    (project_id,),
                ).fetchone()
            )
        )

    async def get_project_by_slug(self, slug: str) -> Project | None:
        return await self._run(
            lambda c: _row(
                c.execute(
                    f"SELECT {_COLUMNS} FROM projects WHERE slug=%s AND deleted_at IS NULL",
                    (slug,),
                ).fetchone()
            )
        )

    async def list_projects(self) -> list[Project]:
        def select(conn: psycopg.Connection[Any]) -> list[Project]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM projects WHERE deleted_at IS NULL "
                "ORDER BY updated_at DESC, created_at DESC"
            ).fetchall()
            return [Project(*r) for r in rows]

        return await self._run(select)

    async def rename_project(self, project_id: str, name: str) -> Project | None:
        now = time.time()

        def update(conn: psycopg.Connection[Any]) -> Project | None:
            for slug in slug_candidates(slugify(name), project_id):
                try:
                    with conn.transaction():
                        row = conn.execute(
                            "UPDATE projects SET name=%s, slug=%s, updated_at=%s "
                            f"WHERE project_id=%s AND deleted_at IS NULL RETURNING {_COLUMNS}",
                            (name, slug, now, project_id),
                        ).fetchone()
                except psycopg.errors.UniqueViolation:
                    continue
                return _row(row)
            raise ValueError("could not find a free slug")

        return await self._run(update)

    async def set_sandbox_id(self, project_id: str, sandbox_id: str) -> None:
        await self._run(
            lambda c: c.execute(
                "UPDATE projects SET sandbox_id=%s WHERE project_id=%s", (sandbox_id, project_id)
            )
        )

    async def soft_delete_project(self, project_id: str) -> Project | None:
        now = time.time()

        def update(conn: psycopg.Connection[Any]) -> Project | None:
            row = _row(
                conn.execute(
                    f"SELECT {_COLUMNS} FROM projects "
                    "WHERE project_id=%s AND deleted_at IS NULL FOR UPDATE",
                    (project_id,),
                ).fetchone()
            )
            if row is not None:
                conn.execute(
                    "UPDATE projects SET deleted_at=%s WHERE project_id=%s", (now, project_id)
                )
            return row

        return await self._run(update)

    async def purge_project(self, project_id: str) -> None:
        await self._run(
            lambda c: c.execute("DELETE FROM projects WHERE project_id=%s", (project_id,))
        )

    # --- chat, conversation, state, events ----------------------------------------------

    async def append_chat(self, project_id: str, role: str, text: str) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT INTO chat_entries (project_id, role, text, created_at) "
                "VALUES (%s,%s,%s,%s)",
                (project_id, role, text, time.time()),
            )
        )

    async def chat_history(self, project_id: str, limit: int = 20) -> list[HistoryEntry]:
        def select(conn: psycopg.Connection[Any]) -> list[HistoryEntry]:
            rows = conn.execute(
                "SELECT role, text FROM chat_entries WHERE project_id=%s "
                "ORDER BY seq DESC LIMIT %s",
                (project_id, limit),
            ).fetchall()
            return [
                HistoryEntry(role=role, text=text)
                for role, text in reversed(rows)
                if role in ("user", "assistant")
            ]

        return await self._run(select)

    async def load_conversation(self, project_id: str) -> list[dict[str, Any]]:
        def select(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            row = conn.execute(
                "SELECT messages_json FROM conversations WHERE project_id=%s", (project_id,)
            ).fetchone()
            return list(json.loads(row[0])) if row else []

        return await self._run(select)

    async def save_conversation(self, project_id: str, messages: list[dict[str, Any]]) -> None:
        payload = json.dumps(messages)
        await self._run(
            lambda c: c.execute(
                "INSERT INTO conversations (project_id, messages_json, updated_at) "
                "VALUES (%s,%s,%s) ON CONFLICT (project_id) DO UPDATE SET "
                "messages_json=excluded.messages_json, updated_at=excluded.updated_at",
                (project_id, payload, time.time()),
            )
        )

    async def load_state(self, project_id: str, key: str) -> Any:
        def select(conn: psycopg.Connection[Any]) -> Any:
            row = conn.execute(
                "SELECT value_json FROM project_state WHERE project_id=%s AND key=%s",
                (project_id, key),
            ).fetchone()
            return json.loads(row[0]) if row else None

        return await self._run(select)

    async def save_state(self, project_id: str, key: str, value: Any) -> None:
        if value is None:
            await self._run(
                lambda c: c.execute(
                    "DELETE FROM project_state WHERE project_id=%s AND key=%s", (project_id, key)
                )
            )
            return
        payload = json.dumps(value)
        await self._run(
            lambda c: c.execute(
                "INSERT INTO project_state (project_id, key, value_json) VALUES (%s,%s,%s) "
                "ON CONFLICT (project_id, key) DO UPDATE SET value_json=excluded.value_json",
                (project_id, key, payload),
            )
        )

    async def append_turn_event(self, project_id: str, kind: str, payload: Any) -> None:
        data = json.dumps(payload)
        await self._run(
            lambda c: c.execute(
                "INSERT INTO turn_events (project_id, kind, payload_json, created_at) "
                "VALUES (%s,%s,%s,%s)",
                (project_id, kind, data, time.time()),
            )
        )

    async def turn_events(self, project_id: str) -> list[tuple[str, Any]]:
        def select(conn: psycopg.Connection[Any]) -> list[tuple[str, Any]]:
            rows = conn.execute(
                "SELECT kind, payload_json FROM turn_events WHERE project_id=%s ORDER BY seq",
                (project_id,),
            ).fetchall()
            return [(k, json.loads(p)) for k, p in rows]

        return await self._run(select)

    async def aclose(self) -> None:
        pool = self._pool
        # every slot taken, so no call is using a connection while they close
        held: list[object] = []
        try:
            for _ in range(int(pool.limiter.total_tokens)):
                slot = object()
                await pool.limiter.acquire_on_behalf_of(slot)
                held.append(slot)
            await trio.to_thread.run_sync(pool.close_all)
        finally:
            for slot in held:
                pool.limiter.release_on_behalf_of(slot)


@asynccontextmanager
async def open_postgres_store(
    url: str, *, pool_size: int = 4, ping_after_s: float = PING_AFTER_S
) -> AsyncIterator[PostgresStore]:
    """Connect to ``url`` (a libpq URL or DSN), migrate, and yield the store.

    Raises:
        StoreUnavailable: the server cannot be reached or the migration failed.

    Cancellation: closing is shielded so connections are always released.
    """
    pool = _Pool(url, pool_size, ping_after_s)

    def first() -> None:
        conn = pool.connect()
        try:
            migrate(conn)
        finally:
            pool.give_back(conn)

    try:
        await trio.to_thread.run_sync(first)
    except psycopg.Error as exc:
        await trio.to_thread.run_sync(pool.close_all)
        raise StoreUnavailable(f"cannot open the PostgreSQL store: {exc}") from exc
    store = PostgresStore(pool)
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
