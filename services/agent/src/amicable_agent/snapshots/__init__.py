"""Project snapshots: every checkpoint's new git objects, copied out of the sandbox into
storage the agent owns, so a sandbox that was reaped, paused away or lost is rebuilt with its
files and its whole history.

``config`` (``AMICABLE_SNAPSHOT_*``), ``bundle`` (reading a bundle's header), ``mirror``
(the agent's own copy of each history, where bundles are checked), ``blobs`` (bytes in the
store database) and ``s3`` (bytes in a bucket), ``chain`` (:class:`SnapshotStore`: the
chain, appends, compaction, reads). Taking and restoring snapshots through a sandbox's
runtime is the session's part (``amicable_agent.sessions.snapshots``).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from .blobs import BlobStore, DbBlobs
from .bundle import SNAPSHOT_REF, BundleHeader, parse_header
from .chain import SnapshotStore, remove_spool
from .config import PART_BYTES, S3Location, SnapshotConfig, parse_s3_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from amicable_agent.store import SnapshotIndex

__all__ = [
    "PART_BYTES",
    "SNAPSHOT_REF",
    "BlobStore",
    "BundleHeader",
    "DbBlobs",
    "S3Location",
    "SnapshotConfig",
    "SnapshotStore",
    "open_snapshot_store",
    "parse_header",
    "parse_s3_url",
]


@asynccontextmanager
async def open_snapshot_store(
    config: SnapshotConfig, index: SnapshotIndex
) -> AsyncIterator[SnapshotStore]:
    """The snapshot store ``config`` names for the block: bundles in the bucket of
    ``config.s3``, else in the store database ``index``.

    Raises:
        SnapshotError: ``storage``: the bucket cannot be reached.

    Cancellation: leaving the block closes the bucket's client.
    """
    await trio.to_thread.run_sync(remove_spool, config)
    if config.s3 is None:
        yield SnapshotStore(index, DbBlobs(index, config.part_bytes), config)
        return
    from .s3 import open_s3_blobs  # boto3 is imported only when a bucket is used

    async with open_s3_blobs(config.s3, config.part_bytes) as blobs:
        yield SnapshotStore(index, blobs, config)
