"""The snapshot store: each project's chain of git bundles, checked, kept and read back.

What is stored where:

* the chain (which bundles, in which order, their heads, sizes and digests) is always in the
  store database (:class:`~amicable_agent.store.SnapshotIndex`), where appends are
  conditional on the chain's head;
* the bundles' bytes are in the database too, or in an S3-compatible bucket
  (:mod:`.blobs`, :mod:`.s3`);
* the agent keeps its own copy of each history (:class:`~.mirror.Mirror`, a cache) to check
  every bundle before storing it and to write compacted full bundles.

:meth:`SnapshotStore.add` stores one bundle a sandbox produced: size cap, header (exactly the
snapshot ref, at the head the sandbox named), a strict ``index-pack`` of its pack into the
mirror and a fast-forward check, then the bytes, then the record. After ``compact_after`` incremental
bundles the chain is replaced by one full bundle written from the mirror. :meth:`SnapshotStore.
read` yields a stored bundle's parts and checks its digest at the end.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING

import trio

from amicable_agent.errors import SnapshotError

from .bundle import MAX_HEADER_BYTES, check_snapshot_header, parse_header
from .mirror import Mirror, safe_name

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator
    from pathlib import Path

    from amicable_agent.store import SnapshotIndex, SnapshotRecord

    from .blobs import BlobStore
    from .config import SnapshotConfig

log = logging.getLogger(__name__)


def _size_and_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()


def _head_bytes(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(MAX_HEADER_BYTES)


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


class SnapshotStore:
    """Project snapshots: the chain in ``index``, the bytes in ``blobs``.

    Args:
        index: the store database's snapshot queries.
        blobs: where the bytes go.
        config: caps, compaction, the cache directory.

    Cancellation: every method may be cancelled. A bundle whose record was not written
    leaves bytes no record names; they are swept at the project's next compaction. The
    mirror may then be ahead of the chain; it is rebuilt when next used.
    """

    def __init__(self, index: SnapshotIndex, blobs: BlobStore, config: SnapshotConfig) -> None:
        self._index = index
        self._blobs = blobs
        self.config = config
        self._locks: dict[str, trio.Lock] = {}
        self._heads: dict[str, str] = {}  # the mirror's head, where known
        self._stats = {"added": 0, "compacted": 0, "rebuilt": 0, "refused": 0}
        self._spool_made = False

    def statistics(self) -> dict[str, int]:
        """Counts since start: bundles added, compactions, mirrors rebuilt, bundles refused."""
        return dict(self._stats)

    @asynccontextmanager
    async def _locked(self, project_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(project_id, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            stats = lock.statistics()
            if not stats.locked and stats.tasks_waiting == 0:
                self._locks.pop(project_id, None)

    @asynccontextmanager
    async def spool(self) -> AsyncIterator[Path]:
        """A fresh path for a temporary bundle, removed after the block."""
        tmp = self.config.cache_dir / "tmp"
        if not self._spool_made:
            await trio.to_thread.run_sync(lambda: tmp.mkdir(parents=True, exist_ok=True))
            self._spool_made = True
        path = tmp / f"{secrets.token_hex(8)}.bundle"
        try:
            yield path
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

    def _mirror(self, project_id: str) -> Mirror:
        return Mirror(
            self.config.cache_dir / "mirrors" / f"{safe_name(project_id)}.git",
            git_executable=self.config.git_executable,
            timeout_s=self.config.timeout_s,
        )

    async def chain(self, project_id: str) -> list[SnapshotRecord]:
        """The project's chain, oldest first ([] when nothing was snapshotted)."""
        try:
            return await self._index.snapshot_chain(project_id)
        except SnapshotError:
            raise
        except Exception as exc:  # the database: StoreUnavailable, driver errors
            raise SnapshotError("storage", f"cannot read the snapshot chain: {exc}") from exc

    async def head(self, project_id: str) -> str | None:
        """The chain's head: what this replica stored last, else read from the store. (A
        stale answer only makes :meth:`add` refuse with ``conflict``.)"""
        known = self._heads.get(project_id)
        if known is not None:
            await trio.lowlevel.checkpoint()
            return known
        chain = await self.chain(project_id)
        return chain[-1].head_sha if chain else None

    async def _synced_mirror(self, project_id: str, chain: list[SnapshotRecord]) -> Mirror:
        """The project's mirror holding exactly ``chain`` (rebuilt from it when not)."""
        mirror = self._mirror(project_id)
        want = chain[-1].head_sha if chain else None
        have = self._heads.get(project_id) or await mirror.head()
        if want is not None and have == want:
            return mirror
        self._heads.pop(project_id, None)
        await mirror.reset()
        for record in chain:
            async with self.spool() as path:
                async with aclosing(self.read(record)) as parts:
                    async for part in parts:
                        await trio.to_thread.run_sync(_append, path, part)
                header = parse_header(await trio.to_thread.run_sync(_head_bytes, path))
                _, head = check_snapshot_header(header, base=record.base_sha)
                await mirror.apply(path, head=head, base=record.base_sha)
        if chain:
            self._stats["rebuilt"] += 1
            self._heads[project_id] = chain[-1].head_sha
        return mirror

    async def add(
        self, project_id: str, bundle: Path, *, base: str | None, data: bytes | None = None
    ) -> SnapshotRecord:
        """Check the bundle a sandbox made (the commits after ``base``; its one ref names the
        new head) and append it to the project's chain. ``data``: the file's bytes, when the
        caller holds them (a small bundle: no reading it back).

        Raises:
            SnapshotError: ``too_large``, ``invalid_bundle`` (refused: nothing stored),
                ``conflict`` (the chain's head is not ``base``), ``storage``.
        """
        async with self._locked(project_id):
            if data is not None:
                size, digest = len(data), hashlib.sha256(data).hexdigest()
                start = data[:MAX_HEADER_BYTES]
            else:
                size, digest = await trio.to_thread.run_sync(_size_and_digest, bundle)
                start = await trio.to_thread.run_sync(_head_bytes, bundle)
            try:
                if size > self.config.max_bundle_bytes:
                    raise SnapshotError(
                        "too_large", f"{size} bytes, over {self.config.max_bundle_bytes}"
                    )
                header = parse_header(start)
                _, head = check_snapshot_header(header, base=base)
                chain = await self.chain(project_id)
                stored = chain[-1].head_sha if chain else None
                if stored != base:
                    raise SnapshotError("conflict", f"the stored history is at {stored}")
                mirror = await self._synced_mirror(project_id, chain)
                self._heads.pop(project_id, None)  # until the record is written
                await mirror.apply(bundle, head=head, base=base)
            except SnapshotError as exc:
                if exc.code in ("too_large", "invalid_bundle"):
                    self._stats["refused"] += 1
                raise
            inline = self._blobs.inline_name(size)
            parts: tuple[bytes, ...] = ()
            if inline is not None:  # small: its bytes go in the record's transaction
                blob = inline
                parts = (
                    data if data is not None else await trio.to_thread.run_sync(bundle.read_bytes),
                )
            else:
                blob = await self._blobs.put(project_id, bundle)
            try:
                record = await self._index.append_snapshot(
                    project_id,
                    kind="full" if base is None else "incremental",
                    head_sha=head, base_sha=base, size_bytes=size, sha256=digest,
                    blob=blob, expect_head=stored, parts=parts,
                )  # fmt: skip
            except BaseException:
                if inline is None:
                    with trio.CancelScope(shield=True), trio.move_on_after(30):
                        await self._blobs.discard(project_id, [blob])
                raise
            self._heads[project_id] = head
            self._stats["added"] += 1
            incrementals = len(chain)  # chain[0] is the full bundle, the rest incrementals
        if incrementals >= self.config.compact_after:
            try:
                await self.compact(project_id)
            except SnapshotError as exc:  # the chain is intact; try again next time
                log.warning("compacting the snapshots of %s failed: %s", project_id, exc)
        return record

    async def compact(self, project_id: str) -> SnapshotRecord | None:
        """Replace the chain by one full bundle of its head (written from the mirror) and
        delete what it replaced; None when there was nothing to compact.

        Raises:
            SnapshotError: ``conflict`` (the chain moved), ``storage``, ``failed``.
        """
        async with self._locked(project_id):
            chain = await self.chain(project_id)
            if len(chain) <= 1:
                return None
            mirror = await self._synced_mirror(project_id, chain)
            async with self.spool() as path:
                await mirror.write_full(path)
                size, digest = await trio.to_thread.run_sync(_size_and_digest, path)
                blob = await self._blobs.put(project_id, path)
            head = chain[-1].head_sha
            try:
                others = await self._index.compact_snapshots(
                    project_id, head_sha=head, size_bytes=size, sha256=digest, blob=blob
                )
            except BaseException:
                with trio.CancelScope(shield=True), trio.move_on_after(30):
                    await self._blobs.discard(project_id, [blob])
                raise
            await self._blobs.discard(project_id, others)
            await self._blobs.sweep(
                project_id, await self._index.referenced_snapshot_blobs(project_id)
            )
            self._stats["compacted"] += 1
            log.info(
                "compacted %d snapshots of %s into one of %d bytes", len(chain), project_id, size
            )
            return (await self.chain(project_id))[-1]

    async def read(self, record: SnapshotRecord) -> AsyncGenerator[bytes, None]:
        """The bundle's bytes in parts (use with ``aclosing``); its digest is checked after
        the last part.

        Raises:
            SnapshotError: ``storage``: missing, or not the bytes that were stored.
        """
        digest = hashlib.sha256()
        async with aclosing(self._blobs.read(record.blob, record.size_bytes)) as parts:
            async for part in parts:
                digest.update(part)
                yield part
        if digest.hexdigest() != record.sha256:
            raise SnapshotError(
                "storage", f"snapshot {record.seq} of {record.project_id} is damaged"
            )

    async def delete_project(self, project_id: str) -> None:
        """Delete the project's bundles and its mirror (the records go with the project's row).

        Raises:
            SnapshotError: ``storage``.
        """
        async with self._locked(project_id):
            self._heads.pop(project_id, None)
            await self._blobs.delete_project(project_id)
            await self._mirror(project_id).remove()


def remove_spool(config: SnapshotConfig) -> None:
    """Remove temporary bundles a stopped agent left behind (sync; at start)."""
    shutil.rmtree(config.cache_dir / "tmp", ignore_errors=True)
