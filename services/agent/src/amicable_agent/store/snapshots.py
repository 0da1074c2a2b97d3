"""Snapshot queries both SQL stores share: each project's chain of git bundles, and the
bundles' bytes when they are kept in the database.

A project's *chain* is its newest ``full`` snapshot followed by the ``incremental`` ones
taken after it, oldest first; each incremental's ``base_sha`` is the ``head_sha`` of the one
before it. Appending is conditional on the chain's head (:meth:`SnapshotQueries.
append_snapshot`), so a stale writer can never put a divergent history on top, and a
compaction replaces the chain with one full snapshot of the same head in one transaction.

Bytes kept in the database live in ``snapshot_parts`` (``blob`` ``db:<uuid>``, parts of a few
MiB, written one transaction per part so no call holds a whole bundle). A mixin over
:class:`~.sql.SqlStore`'s connection handling; the schema is migration 4 in
:data:`~.sql.MIGRATION_TEMPLATES`. Both tables hang off ``projects`` with ``ON DELETE
CASCADE``: purging a project deletes its snapshots.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from amicable_agent.errors import SnapshotError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .dbapi import Connection, Cursor

T = TypeVar("T")

SnapshotKind = Literal["full", "incremental"]

#: The snapshot tables (migration 4); ``{bytes}`` is BLOB or BYTEA.
SNAPSHOT_MIGRATION = """
    CREATE TABLE snapshots (
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        head_sha TEXT NOT NULL,
        base_sha TEXT,
        size_bytes BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        blob TEXT NOT NULL,
        created_at {real} NOT NULL,
        PRIMARY KEY (project_id, seq)
    );
    CREATE TABLE snapshot_parts (
        blob TEXT NOT NULL,
        part INTEGER NOT NULL,
        project_id TEXT NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
        data {bytes} NOT NULL,
        PRIMARY KEY (blob, part)
    );
    CREATE INDEX snapshot_parts_project ON snapshot_parts(project_id);
"""

#: The prefix of a blob kept in ``snapshot_parts``.
DB_BLOB_PREFIX = "db:"
_COLUMNS = "project_id, seq, kind, head_sha, base_sha, size_bytes, sha256, blob, created_at"


@attrs.frozen
class SnapshotRecord:
    """One stored snapshot (a git bundle) of a project.

    Attributes:
        project_id: the project.
        seq: its place in the project's snapshots (increasing, never reused).
        kind: ``full`` (every commit) or ``incremental`` (the commits after ``base_sha``).
        head_sha: the commit the bundle brings the history to.
        base_sha: the commit an incremental bundle builds on (None for a full one).
        size_bytes: the bundle's size.
        sha256: hex digest of the bundle's bytes (checked when it is read back).
        blob: where the bytes are: ``db:<id>`` or ``s3:<key>``.
        created_at: unix time it was stored.
    """

    project_id: str
    seq: int
    kind: SnapshotKind
    head_sha: str
    base_sha: str | None
    size_bytes: int
    sha256: str
    blob: str
    created_at: float


def _record(row: Sequence[Any]) -> SnapshotRecord:
    return SnapshotRecord(
        project_id=str(row[0]),
        seq=int(row[1]),
        kind="full" if row[2] == "full" else "incremental",
        head_sha=str(row[3]),
        base_sha=None if row[4] is None else str(row[4]),
        size_bytes=int(row[5]),
        sha256=str(row[6]),
        blob=str(row[7]),
        created_at=float(row[8]),
    )


def _chain(rows: Sequence[SnapshotRecord]) -> list[SnapshotRecord]:
    """The rows from the newest full snapshot on (all of them, oldest first)."""
    start = 0
    for index, row in enumerate(rows):
        if row.kind == "full":
            start = index
    return list(rows[start:])


class SnapshotQueries:
    """The snapshot half of the SQL stores (see the module docstring)."""

    if TYPE_CHECKING:  # provided by SqlStore

        async def _run(self, fn: Callable[[Any], T]) -> T: ...

        def _execute(
            self, conn: Connection, query: str, params: tuple[Any, ...] = ()
        ) -> Cursor: ...

        def _project_fenced(  # provided by LeaseQueries
            self, project_id: str, fn: Callable[[Any], T]
        ) -> Callable[[Any], T]: ...

    def _rows(self, conn: Connection, project_id: str) -> list[SnapshotRecord]:
        query = f"SELECT {_COLUMNS} FROM snapshots WHERE project_id=? ORDER BY seq"
        return [_record(r) for r in self._execute(conn, query, (project_id,)).fetchall()]

    async def snapshot_chain(self, project_id: str) -> list[SnapshotRecord]:
        """The project's chain: its newest full snapshot and the incrementals after it,
        oldest first ([] when it has none)."""
        return await self._run(lambda c: _chain(self._rows(c, project_id)))

    async def append_snapshot(
        self,
        project_id: str,
        *,
        kind: SnapshotKind,
        head_sha: str,
        base_sha: str | None,
        size_bytes: int,
        sha256: str,
        blob: str,
        expect_head: str | None,
        parts: Sequence[bytes] = (),
    ) -> SnapshotRecord:
        """Append a snapshot if the chain's head is still ``expect_head`` (None: no chain);
        ``parts``: the bytes of a small database blob, stored in the same transaction.

        Raises:
            SnapshotError: ``conflict`` when the head moved (another writer, or a history
                that does not continue the stored one).
        """
        now = time.time()

        def insert(conn: Connection) -> SnapshotRecord:
            rows = self._rows(conn, project_id)
            head = rows[-1].head_sha if rows else None
            if head != expect_head:
                raise SnapshotError("conflict", f"the stored history is at {head}")
            seq = rows[-1].seq + 1 if rows else 1
            record = SnapshotRecord(
                project_id, seq, kind, head_sha, base_sha, size_bytes, sha256, blob, now
            )
            self._execute(
                conn,
                f"INSERT INTO snapshots ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                attrs.astuple(record),
            )
            for index, data in enumerate(parts):
                self._execute(
                    conn,
                    "INSERT INTO snapshot_parts (blob, part, project_id, data) VALUES (?,?,?,?)",
                    (blob, index, project_id, data),
                )
            return record

        return await self._run(self._project_fenced(project_id, insert))

    async def compact_snapshots(
        self, project_id: str, *, head_sha: str, size_bytes: int, sha256: str, blob: str
    ) -> list[str]:
        """Replace every snapshot of the project by one full snapshot of ``head_sha``, if
        that is still the chain's head. Blobs kept in the database go in the same
        transaction; returns the other blobs no longer referenced (the caller deletes them).

        Raises:
            SnapshotError: ``conflict`` when the head moved meanwhile.
        """
        now = time.time()

        def replace(conn: Connection) -> list[str]:
            rows = self._rows(conn, project_id)
            if not rows or rows[-1].head_sha != head_sha:
                raise SnapshotError("conflict", "the stored history moved during compaction")
            record = SnapshotRecord(
                project_id, rows[-1].seq + 1, "full", head_sha, None, size_bytes, sha256,
                blob, now,
            )  # fmt: skip
            self._execute(
                conn,
                f"INSERT INTO snapshots ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                attrs.astuple(record),
            )
            self._execute(
                conn, "DELETE FROM snapshots WHERE project_id=? AND seq<?", (project_id, record.seq)
            )
            others = []
            for row in rows:
                if row.blob.startswith(DB_BLOB_PREFIX):
                    self._execute(conn, "DELETE FROM snapshot_parts WHERE blob=?", (row.blob,))
                else:
                    others.append(row.blob)
            return others

        return await self._run(self._project_fenced(project_id, replace))

    async def referenced_snapshot_blobs(self, project_id: str) -> set[str]:
        """Every blob a stored snapshot of the project refers to."""
        query = "SELECT blob FROM snapshots WHERE project_id=?"
        return await self._run(
            lambda c: {str(r[0]) for r in self._execute(c, query, (project_id,)).fetchall()}
        )

    # --- bytes kept in the database ------------------------------------------------------

    async def put_snapshot_part(self, project_id: str, blob: str, part: int, data: bytes) -> None:
        """Store one part of a database blob (one transaction per part)."""
        query = "INSERT INTO snapshot_parts (blob, part, project_id, data) VALUES (?,?,?,?)"
        params = (blob, part, project_id, data)
        await self._run(self._project_fenced(project_id, lambda c: self._execute(c, query, params)))

    async def snapshot_part(self, blob: str, part: int) -> bytes | None:
        """One part of a database blob, None past its end."""
        query = "SELECT data FROM snapshot_parts WHERE blob=? AND part=?"

        def select(conn: Connection) -> bytes | None:
            row = self._execute(conn, query, (blob, part)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(select)

    async def delete_snapshot_blobs(self, project_id: str, keep: set[str]) -> int:
        """Delete the project's database blobs not in ``keep`` (left by an upload that was
        cut or lost a race); returns how many parts went."""

        def delete(conn: Connection) -> int:
            rows = self._execute(
                conn, "SELECT DISTINCT blob FROM snapshot_parts WHERE project_id=?", (project_id,)
            ).fetchall()
            removed = 0
            for (blob,) in rows:
                if blob not in keep:
                    cur = self._execute(conn, "DELETE FROM snapshot_parts WHERE blob=?", (blob,))
                    removed += max(0, cur.rowcount)
            return removed

        return await self._run(delete)
