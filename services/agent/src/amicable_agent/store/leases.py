"""Turn leases both SQL stores share: which agent replica runs a project's turns, and the
requests other replicas queue for it.

A project's lease row names its ``holder`` (a replica id), an ``expires_at`` the holder
pushes forward with each heartbeat, and a ``token`` that grows by one with every acquisition
and never goes back. The token fences the holder's writes: a store *view* made with
:meth:`LeaseQueries.fenced` checks, in the same transaction as each call, that the project's
lease still carries the view's token (row-locked on PostgreSQL, so a take-over cannot slip in
between the check and the write) and raises :class:`~amicable_agent.errors.LeaseLost`
otherwise. A holder that was paused past its expiry and resumes therefore cannot write over
the replica that took the project from it.

``turn_requests`` carries ``user``/``hitl_response``/``runtime_error``/``cancel`` frames that
reached a replica other than the holder; the holder takes them in order. On PostgreSQL each
lease release, request and relayed event is announced with ``NOTIFY`` (:data:`CHANNEL`,
payload ``<what>:<project id>``) in the writing transaction; SQLite (one process) has nobody
to tell. The schema is migration 6 in :data:`~.sql.MIGRATION_TEMPLATES`.
"""

from __future__ import annotations

import copy
import json
import time
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from amicable_agent.errors import LeaseLost

if TYPE_CHECKING:
    from collections.abc import Callable

    from .dbapi import Connection, Cursor

T = TypeVar("T")

#: The lease and request tables (migration 6).
LEASE_MIGRATION = """
    CREATE TABLE turn_leases (
        project_id TEXT PRIMARY KEY REFERENCES projects(project_id) ON DELETE CASCADE,
        holder TEXT,
        token BIGINT NOT NULL,
        expires_at {real} NOT NULL,
        heartbeat_at {real} NOT NULL
    );
    CREATE TABLE turn_requests (
        seq {serial_pk},
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        payload_json TEXT NOT NULL,
        by_sub TEXT,
        created_at {real} NOT NULL
    );
    CREATE INDEX turn_requests_project ON turn_requests(project_id, seq);
"""

#: The ``LISTEN``/``NOTIFY`` channel (PostgreSQL).
CHANNEL = "amicable_turns"
#: What a listener delivers after its connection was lost and is back: notifications may
#: have been missed meanwhile, so every waiter should look again.
RECONNECTED = "*:"
#: ``turn_events.kind`` of a relayed wire message (payload: the server envelope as JSON).
WIRE_EVENT = "wire"


class LeaseQueries:
    """Lease, request and relayed-event queries; a mixin over :class:`~.sql.SqlStore`."""

    lock_clause: str
    #: Set on a view made by :meth:`fenced`: (project id, the fence to check).
    _fence: tuple[str, Any] | None = None
    #: Fenced calls refused since the process started (all views of one store share it).
    _refused: list[int]
    #: Project id -> the fence of the session holding its lease here (shared by views).
    _fences: dict[str, Any]

    def _execute(self, conn: Connection, query: str, params: tuple[Any, ...] = ()) -> Cursor:
        raise NotImplementedError

    async def _run(self, fn: Callable[[Any], T]) -> T:
        raise NotImplementedError

    def _notify(self, conn: Connection, what: str, project_id: str) -> None:
        """Announce a change to the other replicas (PostgreSQL; nothing on SQLite)."""

    async def listen(
        self,
        on_notify: Callable[[str], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``on_notify(payload)`` for each notification until cancelled (one process
        has nobody to hear from: this only waits)."""
        task_status.started()
        await trio.sleep_forever()

    @property
    def shared(self) -> bool:
        """Several processes may share this store (turn events must be relayed)."""
        return False

    @property
    def refused_writes(self) -> int:
        """Fenced calls refused because the lease had moved on."""
        return self._refused[0]

    # --- fencing --------------------------------------------------------------------------

    def fenced(self, project_id: str, fence: Any) -> Any:
        """A view of this store whose every call first checks that ``project_id``'s lease
        still carries ``fence.token`` (read at call time; ``None`` = not holding, calls
        pass unchecked). The view shares the connections."""
        view = copy.copy(self)
        view._fence = (project_id, fence)
        return view

    def register_fence(self, project_id: str, fence: Any) -> None:
        """Fence this process's snapshot writes of ``project_id`` (which go through the
        shared snapshot store, not a session's view) with the holding session's ``fence``."""
        self._fences[project_id] = fence

    def unregister_fence(self, project_id: str, fence: Any) -> None:
        """The session of ``fence`` ended."""
        if self._fences.get(project_id) is fence:
            del self._fences[project_id]

    def _project_fenced(self, project_id: str, fn: Callable[[Any], T]) -> Callable[[Any], T]:
        """``fn`` behind the registered fence of ``project_id``, if any."""
        fence = self._fences.get(project_id)
        return fn if fence is None else self._checked(project_id, fence.token, fn)

    def _guarded(self, fn: Callable[[Any], T]) -> Callable[[Any], T]:
        """``fn`` preceded by the fence check of a :meth:`fenced` view."""
        fence = self._fence
        if fence is None:
            return fn
        project_id, holder = fence
        return self._checked(project_id, holder.token, fn)

    def _checked(
        self, project_id: str, token: int | None, fn: Callable[[Any], T]
    ) -> Callable[[Any], T]:
        """``fn`` preceded by the check that the lease still carries ``token`` (in the same
        transaction, the lease row locked); ``token`` None: unchecked."""
        if token is None:
            return fn

        def guarded(conn: Any) -> T:
            row = self._execute(
                conn,
                "SELECT token FROM turn_leases WHERE project_id=?" + self.lock_clause,
                (project_id,),
            ).fetchone()
            if row is None or int(row[0]) != token:
                self._refused[0] += 1
                raise LeaseLost(
                    f"the turn lease of {project_id} moved on (token {token}, now "
                    f"{None if row is None else int(row[0])}); the write was refused"
                )
            return fn(conn)

        return guarded

    # --- the lease ------------------------------------------------------------------------

    async def acquire_lease(
        self, project_id: str, holder: str, ttl_s: float, *, steal: bool = False
    ) -> int | None:
        """Take ``project_id``'s lease when it is free, expired or already ``holder``'s (or
        always, with ``steal``: a store only this process uses, whose other holders can only
        be its own dead predecessors); returns the new token (always larger than any
        before), or None when another replica holds it."""

        def acquire(conn: Connection) -> int | None:
            now = time.time()
            row = self._execute(
                conn,
                "SELECT holder, token, expires_at FROM turn_leases WHERE project_id=?"
                + self.lock_clause,
                (project_id,),
            ).fetchone()
            if row is None:
                self._execute(
                    conn,
                    "INSERT INTO turn_leases (project_id, holder, token, expires_at, "
                    "heartbeat_at) VALUES (?,?,1,?,?) ON CONFLICT (project_id) DO NOTHING",
                    (project_id, holder, now + ttl_s, now),
                )
                row = self._execute(
                    conn, "SELECT holder, token, expires_at FROM turn_leases WHERE project_id=?",
                    (project_id,),
                ).fetchone()  # fmt: skip
                return 1 if row is not None and row[0] == holder and int(row[1]) == 1 else None
            current, token, expires_at = row
            if not steal and current is not None and current != holder and float(expires_at) > now:
                return None
            token = int(token) + 1
            self._execute(
                conn,
                "UPDATE turn_leases SET holder=?, token=?, expires_at=?, heartbeat_at=? "
                "WHERE project_id=?",
                (holder, token, now + ttl_s, now, project_id),
            )
            return token

        return await self._run(acquire)

    async def renew_lease(self, project_id: str, token: int, ttl_s: float) -> bool:
        """Push the lease's expiry forward (the heartbeat); False when ``token`` is no
        longer the lease's (another replica took it)."""

        def renew(conn: Connection) -> bool:
            now = time.time()
            cur = self._execute(
                conn,
                "UPDATE turn_leases SET expires_at=?, heartbeat_at=? "
                "WHERE project_id=? AND token=? AND holder IS NOT NULL",
                (now + ttl_s, now, project_id, token),
            )
            return cur.rowcount > 0

        return await self._run(renew)

    async def release_lease(self, project_id: str, token: int) -> bool:
        """Give the lease up (the token stays, so the next holder's is larger)."""

        def release(conn: Connection) -> bool:
            cur = self._execute(
                conn,
                "UPDATE turn_leases SET holder=NULL, expires_at=0 WHERE project_id=? AND token=?",
                (project_id, token),
            )
            if cur.rowcount > 0:
                self._notify(conn, "lease", project_id)
            return cur.rowcount > 0

        return await self._run(release)

    async def lease_of(self, project_id: str) -> tuple[str | None, int, float] | None:
        """(holder, token, expires_at) of ``project_id``'s lease, or None if never taken."""
        query = "SELECT holder, token, expires_at FROM turn_leases WHERE project_id=?"

        def select(conn: Connection) -> tuple[str | None, int, float] | None:
            row = self._execute(conn, query, (project_id,)).fetchone()
            return None if row is None else (row[0], int(row[1]), float(row[2]))

        return await self._run(select)

    # --- requests from other replicas -----------------------------------------------------

    async def queue_turn_request(
        self, project_id: str, kind: str, payload: Any, by: str | None
    ) -> None:
        """Queue a client frame for the holder of ``project_id``'s lease."""
        query = (
            "INSERT INTO turn_requests (project_id, kind, payload_json, by_sub, created_at) "
            "VALUES (?,?,?,?,?)"
        )
        params = (project_id, kind, json.dumps(payload), by, time.time())

        def insert(conn: Connection) -> None:
            self._execute(conn, query, params)
            self._notify(conn, "request", project_id)

        await self._run(insert)

    async def take_turn_requests(self, project_id: str) -> list[tuple[str, Any, str | None]]:
        """Take (and delete) the queued requests of ``project_id``, oldest first, as
        (kind, payload, by). Fenced on a :meth:`fenced` view: only the holder takes them."""

        def take(conn: Connection) -> list[tuple[str, Any, str | None]]:
            rows = self._execute(
                conn,
                "SELECT seq, kind, payload_json, by_sub FROM turn_requests "
                "WHERE project_id=? ORDER BY seq",
                (project_id,),
            ).fetchall()
            if rows:
                self._execute(
                    conn,
                    "DELETE FROM turn_requests WHERE project_id=? AND seq<=?",
                    (project_id, rows[-1][0]),
                )
            return [(kind, json.loads(payload), by) for _, kind, payload, by in rows]

        return await self._run(take)

    # --- relayed events -------------------------------------------------------------------

    async def append_wire_events(self, project_id: str, messages: list[Any]) -> None:
        """Append the holder's broadcasts (JSON-ready envelopes) as ``wire`` turn events and
        announce them, in one transaction."""
        query = (
            "INSERT INTO turn_events (project_id, kind, payload_json, created_at) VALUES (?,?,?,?)"
        )
        now = time.time()

        def insert(conn: Connection) -> None:
            for message in messages:
                self._execute(conn, query, (project_id, WIRE_EVENT, json.dumps(message), now))
            self._notify(conn, "events", project_id)

        await self._run(insert)

    async def prune_wire_events(self, project_id: str, older_than_s: float) -> int:
        """Delete the project's relayed events older than ``older_than_s`` (every reader
        has long read them); returns how many went."""
        cutoff = time.time() - older_than_s

        def delete(conn: Connection) -> int:
            cur = self._execute(
                conn,
                "DELETE FROM turn_events WHERE project_id=? AND kind=? AND created_at<?",
                (project_id, WIRE_EVENT, cutoff),
            )
            return max(0, cur.rowcount)

        return await self._run(delete)

    async def wire_events_after(self, project_id: str, seq: int) -> list[tuple[int, Any]]:
        """The relayed events of ``project_id`` after event id ``seq``, in order (with
        ``seq`` < 0: none, only the newest id, as ``[(id, None)]``)."""

        def select(conn: Connection) -> list[tuple[int, Any]]:
            if seq < 0:
                row = self._execute(
                    conn, "SELECT MAX(seq) FROM turn_events WHERE project_id=?", (project_id,)
                ).fetchone()
                return [(int(row[0] or 0) if row else 0, None)]
            rows = self._execute(
                conn,
                "SELECT seq, payload_json FROM turn_events WHERE project_id=? AND seq>? "
                "AND kind=? ORDER BY seq",
                (project_id, seq, WIRE_EVENT),
            ).fetchall()
            return [(int(s), json.loads(p)) for s, p in rows]

        return await self._run(select)
