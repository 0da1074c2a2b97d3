"""What the SQLite and PostgreSQL stores share: every query of :class:`~amicable_agent.store.base.
Store`, written once against a DB-API-like connection.

A subclass provides :meth:`SqlStore._run` (run a function with a connection inside one
transaction, in a worker thread), the placeholder style, and :meth:`SqlStore._insert_slug`
(one attempt at a statement that may hit the unique index on live slugs). Queries are written
with ``?`` placeholders and translated once per statement for drivers that use ``%s``.
"""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, TypeVar

from amicable_protocol.messages import HistoryEntry

from .base import COLUMNS, Project, slug_candidates, slugify
from .identity import IDENTITY_MIGRATION, IdentityQueries
from .snapshots import SNAPSHOT_MIGRATION, SnapshotQueries
from .spend import SPEND_MIGRATION, SpendQueries

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .dbapi import Connection, Cursor

T = TypeVar("T")

#: Schema changes, numbered from 1, in either dialect: ``{serial_pk}`` is an auto-increment
#: integer primary key, ``{real}`` a double-precision float, ``{bytes}`` a byte string (see
#: :func:`render_migrations`).
MIGRATION_TEMPLATES: tuple[str, ...] = (
    # 1: projects, chat, conversation, state, turn events
    """
    CREATE TABLE projects (
        project_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        slug TEXT NOT NULL,
        template_id TEXT NOT NULL,
        sandbox_id TEXT,
        prompt TEXT,
        created_at {real} NOT NULL,
        updated_at {real} NOT NULL,
        deleted_at {real}
    );
    CREATE UNIQUE INDEX projects_live_slug ON projects(slug) WHERE deleted_at IS NULL;
    CREATE TABLE chat_entries (
        seq {serial_pk},
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at {real} NOT NULL
    );
    CREATE INDEX chat_entries_project ON chat_entries(project_id, seq);
    CREATE TABLE conversations (
        project_id TEXT PRIMARY KEY REFERENCES projects(project_id) ON DELETE CASCADE,
        messages_json TEXT NOT NULL,
        updated_at {real} NOT NULL
    );
    CREATE TABLE project_state (
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value_json TEXT NOT NULL,
        PRIMARY KEY (project_id, key)
    );
    CREATE TABLE turn_events (
        seq {serial_pk},
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        payload_json TEXT NOT NULL,
        created_at {real} NOT NULL
    );
    """,
    # 2: a project's turn events are read by project
    "CREATE INDEX turn_events_project ON turn_events(project_id, seq);",
    # 3: users, login sessions, API tokens, project owners, members and invites
    IDENTITY_MIGRATION,
    # 4: model usage per call, per-user budget overrides
    SPEND_MIGRATION,
    # 5: project snapshots (git bundles of each project's history) and their bytes
    SNAPSHOT_MIGRATION,
)


def render_migrations(*, serial_pk: str, real: str, blob: str) -> tuple[str, ...]:
    """:data:`MIGRATION_TEMPLATES` in one dialect."""
    return tuple(t.format(serial_pk=serial_pk, real=real, bytes=blob) for t in MIGRATION_TEMPLATES)


def _row(row: Sequence[Any] | None) -> Project | None:
    return Project(*row) if row is not None else None


class SqlStore(IdentityQueries, SpendQueries, SnapshotQueries, ABC):
    """The shared queries; see the module docstring for what a subclass provides."""

    #: ``True`` for drivers with ``%s`` placeholders (psycopg), ``False`` for ``?`` (sqlite3).
    percent_placeholders = False
    #: Appended to the row lock of a soft delete (``" FOR UPDATE"`` where supported).
    lock_clause = ""

    def __init__(self) -> None:
        self._queries: dict[str, str] = {}

    def q(self, query: str) -> str:
        """``query`` in the driver's placeholder style."""
        if not self.percent_placeholders:
            return query
        translated = self._queries.get(query)
        if translated is None:
            translated = self._queries[query] = query.replace("?", "%s")
        return translated

    @abstractmethod
    async def _run(self, fn: Callable[[Any], T]) -> T:
        """Call ``fn(connection)`` inside one transaction (in a worker thread)."""

    @abstractmethod
    def _insert_slug(self, conn: Any, query: str, params: tuple[Any, ...]) -> Cursor | None:
        """Execute ``query``; None when it hit the unique index on live slugs (nothing
        changed). Raises ``ValueError`` when the project id is taken."""

    def _execute(self, conn: Connection, query: str, params: tuple[Any, ...] = ()) -> Cursor:
        return conn.execute(self.q(query), params)  # type: ignore[no-any-return]

    # --- projects -------------------------------------------------------------------

    async def create_project(
        self,
        name: str,
        *,
        template_id: str,
        prompt: str | None = None,
        project_id: str | None = None,
        owner_sub: str | None = None,
    ) -> Project:
        pid = project_id or str(uuid.uuid4())
        now = time.time()

        def insert(conn: Connection) -> Project:
            if self._execute(conn, "SELECT 1 FROM projects WHERE project_id=?", (pid,)).fetchone():
                raise ValueError(f"project {pid} already exists")
            query = self.q(f"INSERT INTO projects ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,NULL,?)")
            for slug in slug_candidates(slugify(name), pid):
                params = (pid, name, slug, template_id, None, prompt, now, now, owner_sub)
                if self._insert_slug(conn, query, params) is not None:
                    return Project(
                        pid, name, slug, template_id, None, prompt, now, now, None, owner_sub
                    )
            raise ValueError("could not find a free slug")

        return await self._run(insert)

    async def get_project(self, project_id: str) -> Project | None:
        query = f"SELECT {COLUMNS} FROM projects WHERE project_id=? AND deleted_at IS NULL"
        return await self._run(lambda c: _row(self._execute(c, query, (project_id,)).fetchone()))

    async def get_project_by_slug(self, slug: str) -> Project | None:
        query = f"SELECT {COLUMNS} FROM projects WHERE slug=? AND deleted_at IS NULL"
        return await self._run(lambda c: _row(self._execute(c, query, (slug,)).fetchone()))

    async def list_projects(self) -> list[Project]:
        query = (
            f"SELECT {COLUMNS} FROM projects WHERE deleted_at IS NULL "
            "ORDER BY updated_at DESC, created_at DESC"
        )
        return await self._run(lambda c: [Project(*r) for r in self._execute(c, query).fetchall()])

    async def rename_project(self, project_id: str, name: str) -> Project | None:
        now = time.time()

        def update(conn: Connection) -> Project | None:
            query = self.q(
                "UPDATE projects SET name=?, slug=?, updated_at=? "
                "WHERE project_id=? AND deleted_at IS NULL"
            )
            for slug in slug_candidates(slugify(name), project_id):
                if self._insert_slug(conn, query, (name, slug, now, project_id)) is None:
                    continue
                return _row(
                    self._execute(
                        conn,
                        f"SELECT {COLUMNS} FROM projects WHERE project_id=? AND deleted_at IS NULL",
                        (project_id,),
                    ).fetchone()
                )
            raise ValueError("could not find a free slug")

        return await self._run(update)

    async def set_sandbox_id(self, project_id: str, sandbox_id: str) -> None:
        query = "UPDATE projects SET sandbox_id=? WHERE project_id=?"
        await self._run(lambda c: self._execute(c, query, (sandbox_id, project_id)))

    async def soft_delete_project(self, project_id: str) -> Project | None:
        now = time.time()

        def update(conn: Connection) -> Project | None:
            row = _row(
                self._execute(
                    conn,
                    f"SELECT {COLUMNS} FROM projects WHERE project_id=? AND deleted_at IS NULL"
                    + self.lock_clause,
                    (project_id,),
                ).fetchone()
            )
            if row is not None:
                self._execute(
                    conn, "UPDATE projects SET deleted_at=? WHERE project_id=?", (now, project_id)
                )
            return row

        return await self._run(update)

    async def purge_project(self, project_id: str) -> None:
        query = "DELETE FROM projects WHERE project_id=?"
        await self._run(lambda c: self._execute(c, query, (project_id,)))

    # --- chat, conversation, state, events ----------------------------------------------

    async def append_chat(self, project_id: str, role: str, text: str) -> None:
        query = "INSERT INTO chat_entries (project_id, role, text, created_at) VALUES (?,?,?,?)"
        params = (project_id, role, text, time.time())
        await self._run(lambda c: self._execute(c, query, params))

    async def chat_history(self, project_id: str, limit: int = 20) -> list[HistoryEntry]:
        query = "SELECT role, text FROM chat_entries WHERE project_id=? ORDER BY seq DESC LIMIT ?"

        def select(conn: Connection) -> list[HistoryEntry]:
            rows = self._execute(conn, query, (project_id, limit)).fetchall()
            return [
                HistoryEntry(role=role, text=text)
                for role, text in reversed(rows)
                if role in ("user", "assistant")
            ]

        return await self._run(select)

    async def load_conversation(self, project_id: str) -> list[dict[str, Any]]:
        query = "SELECT messages_json FROM conversations WHERE project_id=?"

        def select(conn: Connection) -> list[dict[str, Any]]:
            row = self._execute(conn, query, (project_id,)).fetchone()
            return list(json.loads(row[0])) if row else []

        return await self._run(select)

    async def save_conversation(self, project_id: str, messages: list[dict[str, Any]]) -> None:
        query = (
            "INSERT INTO conversations (project_id, messages_json, updated_at) VALUES (?,?,?) "
            "ON CONFLICT (project_id) DO UPDATE SET messages_json=excluded.messages_json, "
            "updated_at=excluded.updated_at"
        )
        params = (project_id, json.dumps(messages), time.time())
        await self._run(lambda c: self._execute(c, query, params))

    async def load_state(self, project_id: str, key: str) -> Any:
        query = "SELECT value_json FROM project_state WHERE project_id=? AND key=?"

        def select(conn: Connection) -> Any:
            row = self._execute(conn, query, (project_id, key)).fetchone()
            return json.loads(row[0]) if row else None

        return await self._run(select)

    async def save_state(self, project_id: str, key: str, value: Any) -> None:
        if value is None:
            query = "DELETE FROM project_state WHERE project_id=? AND key=?"
            await self._run(lambda c: self._execute(c, query, (project_id, key)))
            return
        query = (
            "INSERT INTO project_state (project_id, key, value_json) VALUES (?,?,?) "
            "ON CONFLICT (project_id, key) DO UPDATE SET value_json=excluded.value_json"
        )
        params = (project_id, key, json.dumps(value))
        await self._run(lambda c: self._execute(c, query, params))

    async def append_turn_event(self, project_id: str, kind: str, payload: Any) -> None:
        query = (
            "INSERT INTO turn_events (project_id, kind, payload_json, created_at) VALUES (?,?,?,?)"
        )
        params = (project_id, kind, json.dumps(payload), time.time())
        await self._run(lambda c: self._execute(c, query, params))

    async def turn_records(
        self, project_id: str, *, before: int | None = None, limit: int = 20
    ) -> list[tuple[int, Any]]:
        query = (
            "SELECT seq, payload_json FROM turn_events WHERE project_id=? AND kind=? "
            "AND seq < ? ORDER BY seq DESC LIMIT ?"
        )
        # seq is an integer column: 2**62 is past any row.
        params = (project_id, "turn_record", 2**62 if before is None else before, limit)

        def select(conn: Connection) -> list[tuple[int, Any]]:
            rows = self._execute(conn, query, params).fetchall()
            return [(int(seq), json.loads(p)) for seq, p in rows]

        return await self._run(select)

    async def turn_events(self, project_id: str) -> list[tuple[str, Any]]:
        query = "SELECT kind, payload_json FROM turn_events WHERE project_id=? ORDER BY seq"

        def select(conn: Connection) -> list[tuple[str, Any]]:
            rows = self._execute(conn, query, (project_id,)).fetchall()
            return [(k, json.loads(p)) for k, p in rows]

        return await self._run(select)
