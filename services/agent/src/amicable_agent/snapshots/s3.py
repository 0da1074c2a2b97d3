"""Bundle bytes in an S3-compatible bucket: the one module that uses ``boto3``.

boto3 is synchronous: every call runs in a worker thread (``trio.to_thread.run_sync``) under
one :class:`trio.CapacityLimiter`, and botocore's errors become
:class:`~amicable_agent.errors.SnapshotError` (``storage``) here, once. Objects are
``<prefix><project id>/<random>.bundle``; uploads use boto3's managed transfer (multipart for
big files, read from the local file), reads are ranged GETs of one part each, each read
capped to the part's size.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions
import trio

from amicable_agent.errors import SnapshotError

from .mirror import safe_name

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
    from pathlib import Path

    from .config import S3Location

log = logging.getLogger(__name__)

PREFIX = "s3:"
_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError)


class S3Blobs:
    """:class:`~.blobs.BlobStore` on a bucket. Create with :func:`open_s3_blobs`.

    Args:
        client: a boto3 S3 client.
        location: bucket and prefix.
        part_bytes: bytes per ranged read.
        limiter: worker threads at once.
    """

    def __init__(
        self, client: Any, location: S3Location, part_bytes: int, limiter: trio.CapacityLimiter
    ) -> None:
        self._client = client
        self._bucket = location.bucket
        self._prefix = location.prefix
        self._part_bytes = part_bytes
        self._limiter = limiter

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            try:
                return fn(*args, **kwargs)
            except _ERRORS as exc:
                raise SnapshotError("storage", f"the snapshot bucket failed: {exc}") from exc

        return await trio.to_thread.run_sync(run, limiter=self._limiter)

    def _project_prefix(self, project_id: str) -> str:
        return f"{self._prefix}{safe_name(project_id)}/"

    async def put(self, project_id: str, source: Path) -> str:
        key = f"{self._project_prefix(project_id)}{uuid.uuid4().hex}.bundle"
        await self._call(self._client.upload_file, str(source), self._bucket, key)
        return PREFIX + key

    def inline_name(self, size: int) -> str | None:
        return None  # bytes always go to the bucket

    def _key(self, blob: str) -> str:
        if not blob.startswith(PREFIX):
            raise SnapshotError("storage", f"{blob} is not kept in the bucket")
        return blob[len(PREFIX) :]

    def _get_range(self, key: str, first: int, last: int) -> bytes:
        answer = self._client.get_object(
            Bucket=self._bucket, Key=key, Range=f"bytes={first}-{last}"
        )
        body = answer["Body"]
        try:
            data: bytes = body.read(last - first + 2)  # one byte more than asked: caught below
        finally:
            body.close()
        return data

    async def read(self, blob: str, size: int) -> AsyncGenerator[bytes, None]:
        key = self._key(blob)
        offset = 0
        while offset < size:
            last = min(offset + self._part_bytes, size) - 1
            data = await self._call(self._get_range, key, offset, last)
            if len(data) != last - offset + 1:
                raise SnapshotError("storage", f"snapshot {key} is damaged (wrong length)")
            offset = last + 1
            yield data

    def _keys(self, project_id: str) -> list[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._project_prefix(project_id)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", ())]

    def _delete_keys(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._client.delete_objects(
                Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}
            )

    async def discard(self, project_id: str, blobs: Sequence[str]) -> None:
        keys = [b[len(PREFIX) :] for b in blobs if b.startswith(PREFIX)]
        if keys:
            try:
                await self._call(self._delete_keys, keys)
            except SnapshotError as exc:  # left for the next sweep
                log.warning("could not delete old snapshots of %s: %s", project_id, exc.detail)

    async def sweep(self, project_id: str, keep: set[str]) -> None:
        keys = await self._call(self._keys, project_id)
        await self.discard(project_id, [PREFIX + k for k in keys if PREFIX + k not in keep])

    async def delete_project(self, project_id: str) -> None:
        keys = await self._call(self._keys, project_id)
        if keys:
            await self._call(self._delete_keys, keys)


def _client(location: S3Location) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=location.access_key_id,
        aws_secret_access_key=location.secret_access_key,
        region_name=location.region,
    )
    config = botocore.config.Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"} if location.endpoint_url else None,
    )
    return session.client("s3", endpoint_url=location.endpoint_url, config=config)


@asynccontextmanager
async def open_s3_blobs(
    location: S3Location, part_bytes: int, *, threads: int = 4
) -> AsyncIterator[S3Blobs]:
    """A bucket's :class:`S3Blobs` for the block (checks that the bucket answers).

    Raises:
        SnapshotError: ``storage``: the bucket cannot be reached or does not exist.

    Cancellation: leaving the block closes the client's connections.
    """
    limiter = trio.CapacityLimiter(threads)
    client = await trio.to_thread.run_sync(_client, location, limiter=limiter)
    blobs = S3Blobs(client, location, part_bytes, limiter)
    try:
        await blobs._call(partial(client.head_bucket, Bucket=location.bucket))
        yield blobs
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(client.close, limiter=limiter)
