"""Where the bytes of snapshot bundles live: the store database (:class:`DbBlobs`, the
default) or an S3-compatible bucket (:class:`~.s3.S3Blobs`).

Both move a bundle in parts of ``part_bytes``: :meth:`BlobStore.put` reads a local file a
part at a time, :meth:`BlobStore.read` yields the parts in order. Nothing holds a whole bundle
in memory. A blob is named by a string that says where it is (``db:<id>``, ``s3:<key>``), kept
in the snapshot's record.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol

import trio

from amicable_agent.errors import SnapshotError
from amicable_agent.store import DB_BLOB_PREFIX

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence
    from pathlib import Path

    from amicable_agent.store import SnapshotIndex


class BlobStore(Protocol):
    """Bundle bytes, by blob name. Every method is a checkpoint."""

    async def put(self, project_id: str, source: Path) -> str:
        """Store the file ``source``; returns the new blob's name.

        Raises:
            SnapshotError: ``storage``.
        """
        ...

    def inline_name(self, size: int) -> str | None:
        """A new blob's name when ``size`` bytes can be stored with the record, in its
        transaction (one write per snapshot), else None (then :meth:`put` them)."""
        ...

    def read(self, blob: str, size: int) -> AsyncGenerator[bytes, None]:
        """The blob's parts in order (use with ``aclosing``); raises ``SnapshotError``
        ``storage`` when it is missing or not ``size`` bytes long."""
        ...

    async def discard(self, project_id: str, blobs: Sequence[str]) -> None:
        """Delete blobs no snapshot refers to any more (best effort: logged, not raised)."""
        ...

    async def sweep(self, project_id: str, keep: set[str]) -> None:
        """Delete the project's blobs not in ``keep`` (left by cut uploads)."""
        ...

    async def delete_project(self, project_id: str) -> None:
        """Delete every blob of the project."""
        ...


def read_part(source: Path, index: int, part_bytes: int) -> bytes:
    """Part ``index`` of a local file (b"" past its end). Sync: run in a thread."""
    with source.open("rb") as f:
        f.seek(index * part_bytes)
        return f.read(part_bytes)


class DbBlobs:
    """Bundle bytes in the store database (``snapshot_parts``), a row per part.

    Args:
        index: the store.
        part_bytes: bytes per row.
    """

    def __init__(self, index: SnapshotIndex, part_bytes: int) -> None:
        self._index = index
        self._part_bytes = part_bytes

    async def put(self, project_id: str, source: Path) -> str:
        blob = f"{DB_BLOB_PREFIX}{uuid.uuid4().hex}"
        part = 0
        while True:
            data = await trio.to_thread.run_sync(read_part, source, part, self._part_bytes)
            if not data and part > 0:
                return blob
            await self._index.put_snapshot_part(project_id, blob, part, data)
            part += 1

    def inline_name(self, size: int) -> str | None:
        return f"{DB_BLOB_PREFIX}{uuid.uuid4().hex}" if size <= self._part_bytes else None

    async def read(self, blob: str, size: int) -> AsyncGenerator[bytes, None]:
        if not blob.startswith(DB_BLOB_PREFIX):
            raise SnapshotError("storage", f"{blob} is not kept in the database")
        seen = 0
        part = 0
        while seen < size:
            data = await self._index.snapshot_part(blob, part)
            if data is None or seen + len(data) > size or (not data and size):
                raise SnapshotError("storage", f"snapshot {blob} is damaged or missing")
            seen += len(data)
            part += 1
            yield data

    async def discard(self, project_id: str, blobs: Sequence[str]) -> None:
        if any(b.startswith(DB_BLOB_PREFIX) for b in blobs):
            keep = await self._index.referenced_snapshot_blobs(project_id)
            await self._index.delete_snapshot_blobs(project_id, keep)

    async def sweep(self, project_id: str, keep: set[str]) -> None:
        await self._index.delete_snapshot_blobs(project_id, keep)

    async def delete_project(self, project_id: str) -> None:
        # The rows cascade from the project's; nothing to do before the purge.
        await trio.lowlevel.checkpoint()
