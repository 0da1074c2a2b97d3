"""Where project snapshots go and how big they may be (``AMICABLE_SNAPSHOT_*``), read once
from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import attrs
from amicable_settings import errors_as, integer, secret, string

from amicable_agent.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Bytes of one transfer part (sandbox file API, database row, ranged read): well under
#: the runtime's default 20 MiB file limit, small enough to hold in memory.
PART_BYTES = 4 * 1024 * 1024
#: Default of ``AMICABLE_SNAPSHOT_MAX_BUNDLE_BYTES`` (the default checkpoint history cap).
DEFAULT_MAX_BUNDLE_BYTES = 1024 * 1024 * 1024
#: Default of ``AMICABLE_SNAPSHOT_COMPACT_AFTER``.
DEFAULT_COMPACT_AFTER = 50


@attrs.frozen
class S3Location:
    """An S3-compatible bucket (``s3://bucket/prefix``) and how to reach it.

    Attributes:
        bucket: the bucket.
        prefix: key prefix of every object (``""`` or ending in ``/``).
        endpoint_url: a non-AWS endpoint (MinIO, Ceph, moto), or None for AWS.
        region: the region (``AWS_REGION``/``AWS_DEFAULT_REGION``).
        access_key_id / secret_access_key: static credentials, or None to let the AWS
            credential chain find them (IRSA, instance profile).
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = attrs.field(default=None, repr=False)
    secret_access_key: str | None = attrs.field(default=None, repr=False)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")``.

    Raises:
        ConfigError: not an ``s3://`` URL with a bucket.
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            "AMICABLE_SNAPSHOT_URL must be s3://bucket[/prefix] (or unset: the store database)"
        )
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


@attrs.frozen
class SnapshotConfig:
    """Configuration of project snapshots (see :meth:`from_env` for the names).

    Attributes:
        s3: the bucket (``AMICABLE_SNAPSHOT_URL=s3://…``), or None: bundles are kept in the
            store database (SQLite, or PostgreSQL shared by the replicas).
        max_bundle_bytes: the largest bundle taken out of a sandbox or restored
            (``AMICABLE_SNAPSHOT_MAX_BUNDLE_BYTES``).
        compact_after: incremental snapshots after which the chain is compacted into one
            full bundle (``AMICABLE_SNAPSHOT_COMPACT_AFTER``).
        cache_dir: the agent's own copies of the histories, used to verify each bundle
            before it is stored (``AMICABLE_SNAPSHOT_CACHE_DIR``; rebuilt from the store
            when missing).
        part_bytes: bytes of one transfer part.
        git_executable: the agent's git.
        timeout_s: deadline of one snapshot, and of one restore step.
    """

    cache_dir: Path
    s3: S3Location | None = None
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    compact_after: int = DEFAULT_COMPACT_AFTER
    part_bytes: int = PART_BYTES
    git_executable: str = "git"
    timeout_s: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, data_dir: Path) -> SnapshotConfig:
        """Read the configuration (unset = default).

        Raises:
            ConfigError: a variable has a value snapshots cannot use.
        """
        with errors_as(ConfigError):
            url = string(env, "AMICABLE_SNAPSHOT_URL", None)
            s3 = None
            if url is not None:
                bucket, prefix = parse_s3_url(url)
                region = string(env, "AWS_REGION", None) or string(env, "AWS_DEFAULT_REGION", None)
                s3 = S3Location(
                    bucket=bucket,
                    prefix=prefix,
                    endpoint_url=string(env, "AMICABLE_SNAPSHOT_S3_ENDPOINT_URL", None),
                    region=region,
                    access_key_id=secret(env, "AWS_ACCESS_KEY_ID"),
                    secret_access_key=secret(env, "AWS_SECRET_ACCESS_KEY"),
                )
            cache = string(env, "AMICABLE_SNAPSHOT_CACHE_DIR", None)
            return cls(
                cache_dir=Path(cache) if cache else data_dir / "snapshot-cache",
                s3=s3,
                max_bundle_bytes=integer(
                    env,
                    "AMICABLE_SNAPSHOT_MAX_BUNDLE_BYTES",
                    DEFAULT_MAX_BUNDLE_BYTES,
                    minimum=PART_BYTES,
                ),
                compact_after=integer(
                    env, "AMICABLE_SNAPSHOT_COMPACT_AFTER", DEFAULT_COMPACT_AFTER, minimum=1
                ),
            )
