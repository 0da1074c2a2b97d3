"""SQLite implementation of :class:`amicable_agent.store.Store`.

The one module that uses :mod:`sqlite3`: every call runs in a worker thread through
``trio.to_thread.run_sync`` with a single-slot :class:`trio.CapacityLimiter`, so the one
connection is never used concurrently. Schema changes are numbered migrations recorded in
``schema_version``.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from amicable_protocol.messages import HistoryEntry

from .store import Project, slug_candidates, slugify

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

T = TypeVar("T")

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
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        deleted_at REAL
    );
    CREATE UNIQUE INDEX projects_live_slug ON projects(slug) WHERE deleted_at IS NULL;
    CREATE TABLE chat_entries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX chat_entries_project ON chat_entries(project_id, seq);
    CREATE TABLE conversations (
        project_id TEXT PRIMARY KEY REFERENCES projects(project_id) ON DELETE CASCADE,
        messages_json TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE project_state (
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value_json TEXT NOT NULL,
        PRIMARY KEY (project_id, key)
    );
    CREATE TABLE turn_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        payload_json TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
)

_COLUMNS = (
    "project_id, name, slug, template_id, sandbox_id, prompt, created_at, updated_at, deleted_at"
)


def _row(row: tuple[Any, ...] | None) -> Project | None:
    return Project(*row) if row is not None else None


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


class SqliteStore:
    """The SQLite store. Create with :func:`open_sqlite_store`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._conn:
                return fn(self._conn)

        return await trio.to_thread.run_sync(call, limiter=self._limiter)

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

        def insert(conn: sqlite3.Connection) -> Project:
            for slug in slug_candidates(slugify(name), pid):
                try:
                    conn.execute(
                        f"INSERT INTO projects ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,NULL)",
                        (pid, name, slug, template_id, None, prompt, now, now),
                    )
                except sqlite3.IntegrityError as exc:
                    if "projects.project_id" in str(exc):
                        raise ValueError(f"project {pid} already exists") from exc
                    continue
                return Project(pid, name, slug, template_id, None, prompt, now, now)
            raise ValueError("could not find a free slug")

        return await self._run(insert)

    async def get_project(self, project_id: str) -> Project | None:
        return await self._run(
            lambda c: _row(
                c.execute(
                    f"SELECT {_COLUMNS} FROM projects WHERE project_id=? AND deleted_at IS NULL",
                    (project_id,),
                ).fetchone()
            )
        )

    async def get_project_by_slug(self, slug: str) -> Project | None:
        return await self._run(
            lambda c: _row(
                c.execute(
                    f"SELECT {_COLUMNS} FROM projects WHERE slug=? AND deleted_at IS NULL",
                    (slug,),
                ).fetchone()
            )
        )

    async def list_projects(self) -> list[Project]:
        def select(conn: sqlite3.Connection) -> list[Project]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM projects WHERE deleted_at IS NULL "
                "ORDER BY updated_at DESC, created_at DESC"
            ).fetchall()
            return [Project(*r) for r in rows]

        return await self._run(select)

    async def rename_project(self, project_id: str, name: str) -> Project | None:
        now = time.time()

        def update(conn: sqlite3.Connection) -> Project | None:
            for slug in slug_candidates(slugify(name), project_id):
                try:
                    cur = conn.execute(
                        "UPDATE projects SET name=?, slug=?, updated_at=? "
                        "WHERE project_id=? AND deleted_at IS NULL",
                        (name, slug, now, project_id),
                    )
                except sqlite3.IntegrityError:
                    continue
                if cur.rowcount == 0:
                    return None
                return _row(
                    conn.execute(
                        f"SELECT {_COLUMNS} FROM projects WHERE project_id=?", (project_id,)
                    ).fetchone()
                )
            raise ValueError("could not find a free slug")

        return await self._run(update)

    async def set_sandbox_id(self, project_id: str, sandbox_id: str) -> None:
        await self._run(
            lambda c: c.execute(
                "UPDATE projects SET sandbox_id=? WHERE project_id=?", (sandbox_id, project_id)
            )
        )

    async def soft_delete_project(self, project_id: str) -> Project | None:
        now = time.time()

        def update(conn: sqlite3.Connection) -> Project | None:
            row = _row(
                conn.execute(
                    f"SELECT {_COLUMNS} FROM projects WHERE project_id=? AND deleted_at IS NULL",
                    (project_id,),
                ).fetchone()
            )
            if row is not None:
                conn.execute(
                    "UPDATE projects SET deleted_at=? WHERE project_id=?", (now, project_id)
                )
            return row

        return await self._run(update)

    async def purge_project(self, project_id: str) -> None:
        await self._run(
            lambda c: c.execute("DELETE FROM projects WHERE project_id=?", (project_id,))
        )

    # --- chat, conversation, state, events ----------------------------------------------

    async def append_chat(self, project_id: str, role: str, text: str) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT INTO chat_entries (project_id, role, text, created_at) VALUES (?,?,?,?)",
                (project_id, role, text, time.time()),
            )
        )

    async def chat_history(self, project_id: str, limit: int = 20) -> list[HistoryEntry]:
        def select(conn: sqlite3.Connection) -> list[HistoryEntry]:
            rows = conn.execute(
                "SELECT role, text FROM chat_entries WHERE project_id=? ORDER BY seq DESC LIMIT ?",
                (project_id, limit),
            ).fetchall()
            return [
                HistoryEntry(role=role, text=text)
                for role, text in reversed(rows)
                if role in ("user", "assistant")
            ]

        return await self._run(select)

    async def load_conversation(self, project_id: str) -> list[dict[str, Any]]:
        def select(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            row = conn.execute(
                "SELECT messages_json FROM conversations WHERE project_id=?", (project_id,)
            ).fetchone()
            return list(json.loads(row[0])) if row else []

        return await self._run(select)

    async def save_conversation(self, project_id: str, messages: list[dict[str, Any]]) -> None:
        payload = json.dumps(messages)
        await self._run(
            lambda c: c.execute(
                "INSERT INTO conversations (project_id, messages_json, updated_at) VALUES (?,?,?) "
                "ON CONFLICT(project_id) DO UPDATE SET messages_json=excluded.messages_json, "
                "updated_at=excluded.updated_at",
                (project_id, payload, time.time()),
            )
        )

    async def load_state(self, project_id: str, key: str) -> Any:
        def select(conn: sqlite3.Connection) -> Any:
            row = conn.execute(
                "SELECT value_json FROM project_state WHERE project_id=? AND key=?",
                (project_id, key),
            ).fetchone()
            return json.loads(row[0]) if row else None

        return await self._run(select)

    async def save_state(self, project_id: str, key: str, value: Any) -> None:
        if value is None:
            await self._run(
                lambda c: c.execute(
                    "DELETE FROM project_state WHERE project_id=? AND key=?", (project_id, key)
                )
            )
            return
        payload = json.dumps(value)
        await self._run(
            lambda c: c.execute(
                "INSERT INTO project_state (project_id, key, value_json) VALUES (?,?,?) "
                "ON CONFLICT(project_id, key) DO UPDATE SET value_json=excluded.value_json",
                (project_id, key, payload),
            )
        )

    async def append_turn_event(self, project_id: str, kind: str, payload: Any) -> None:
        data = json.dumps(payload)
        await self._run(
            lambda c: c.execute(
                "INSERT INTO turn_events (project_id, kind, payload_json, created_at) "
                "VALUES (?,?,?,?)",
                (project_id, kind, data, time.time()),
            )
        )

    async def turn_events(self, project_id: str) -> list[tuple[str, Any]]:
        def select(conn: sqlite3.Connection) -> list[tuple[str, Any]]:
            rows = conn.execute(
                "SELECT kind, payload_json FROM turn_events WHERE project_id=? ORDER BY seq",
                (project_id,),
            ).fetchall()
            return [(k, json.loads(p)) for k, p in rows]

        return await self._run(select)

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
