"""Snapshots in an S3-compatible bucket: a real S3-speaking server (moto in server mode, a
subprocess on loopback) through boto3. Bundles go to the bucket in parts, come back through
ranged reads, compaction and project deletion remove their objects; the configuration is read
from ``AMICABLE_SNAPSHOT_URL``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import trio
from amicable_agent.errors import ConfigError, SnapshotError
from amicable_agent.sessions.checkpoints import Checkpoints
from amicable_agent.sessions.snapshots import Snapshots
from amicable_agent.snapshots import S3Location, SnapshotConfig, open_snapshot_store
from amicable_agent.store.sqlite import open_sqlite_store
from amicable_testing.workspace_runtime import WorkspaceRuntime

PID = "project-s3"
BUCKET = "amicable-snapshots"
KEYS = {"access_key_id": "testing", "secret_access_key": "testing"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def s3_url() -> AsyncIterator[str]:
    """``moto_server`` on a free loopback port, with the bucket created."""
    port = _free_port()
    proc = await trio.lowlevel.open_process(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            with trio.fail_after(30):
                while True:
                    try:
                        await client.get(url + "/moto-api/")
                        break
                    except httpx.TransportError:
                        await trio.sleep(0.1)
        await trio.to_thread.run_sync(lambda: _s3(url).create_bucket(Bucket=BUCKET))
        yield url
    finally:
        with trio.CancelScope(shield=True):
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def _s3(url: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def _keys(url: str) -> list[str]:
    listed = _s3(url).list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listed.get("Contents", ()))


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


def template(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "App.tsx").write_text("template\n")
    (root / "package.json").write_text('{"name": "t"}\n')
    return root


async def test_bundles_live_in_the_bucket_and_come_back(tmp_path: Path, s3_url: str) -> None:
    location = S3Location(BUCKET, "amicable/", endpoint_url=s3_url, region="us-east-1", **KEYS)
    # small parts, so bundles span several of them (the sandbox splits, S3 reads ranges)
    config = SnapshotConfig(
        cache_dir=tmp_path / "cache", s3=location, compact_after=2, part_bytes=64 * 1024
    )
    async with (
        open_sqlite_store(tmp_path / "store.db") as db,
        open_snapshot_store(config, db) as store,
    ):
        await db.create_project("App", template_id="vite", project_id=PID)
        snapshots = Snapshots(store)
        runtime = WorkspaceRuntime(template(tmp_path / "one"))
        (runtime.root / "logo.bin").write_bytes(os.urandom(200_000))  # incompressible
        await Checkpoints(runtime).ensure()
        first = await snapshots.take(PID, runtime)
        assert first is not None
        assert first.blob.startswith(f"s3:amicable/{PID}/")
        assert first.size_bytes > 3 * 64 * 1024
        assert await trio.to_thread.run_sync(_keys, s3_url) == [first.blob[3:]]
        for n in range(3):
            (runtime.root / "src" / "App.tsx").write_text(f"v{n}\n")
            await Checkpoints(runtime).create(f"Turn {n}")
            await snapshots.take(PID, runtime)
        chain = await store.chain(PID)
        assert [r.kind for r in chain] == ["full", "incremental"]  # compacted once
        # what compaction replaced is gone from the bucket too
        assert await trio.to_thread.run_sync(_keys, s3_url) == sorted(r.blob[3:] for r in chain)

        fresh = WorkspaceRuntime(template(tmp_path / "two"))
        restored = await snapshots.restore(PID, fresh)
        assert restored is not None
        assert git(fresh.root, "log", "--format=%H %s", "HEAD") == git(
            runtime.root, "log", "--format=%H %s", "HEAD"
        )
        assert (fresh.root / "logo.bin").read_bytes() == (runtime.root / "logo.bin").read_bytes()

        await store.delete_project(PID)
        assert await trio.to_thread.run_sync(_keys, s3_url) == []


async def test_a_damaged_object_fails_the_restore_and_changes_nothing(
    tmp_path: Path, s3_url: str
) -> None:
    location = S3Location(BUCKET, "", endpoint_url=s3_url, region="us-east-1", **KEYS)
    config = SnapshotConfig(cache_dir=tmp_path / "cache", s3=location)
    async with (
        open_sqlite_store(tmp_path / "store.db") as db,
        open_snapshot_store(config, db) as store,
    ):
        await db.create_project("App", template_id="vite", project_id=PID)
        runtime = WorkspaceRuntime(template(tmp_path / "one"))
        await Checkpoints(runtime).ensure()
        made = await Snapshots(store).take(PID, runtime)
        assert made is not None
        data = b"\0" * made.size_bytes  # same length, other bytes
        await trio.to_thread.run_sync(
            lambda: _s3(s3_url).put_object(Bucket=BUCKET, Key=made.blob[3:], Body=data)
        )
        fresh = WorkspaceRuntime(template(tmp_path / "two"))
        with pytest.raises(SnapshotError) as damaged:
            await Snapshots(store).restore(PID, fresh)
        assert damaged.value.code == "storage"
        assert not (fresh.root / ".git").exists()
        assert (fresh.root / "src" / "App.tsx").read_text() == "template\n"


async def test_an_unreachable_bucket_is_refused_at_start(tmp_path: Path) -> None:
    location = S3Location(
        BUCKET, "", endpoint_url=f"http://127.0.0.1:{_free_port()}", region="us-east-1", **KEYS
    )
    config = SnapshotConfig(cache_dir=tmp_path / "cache", s3=location)
    async with open_sqlite_store(tmp_path / "store.db") as db:
        with pytest.raises(SnapshotError) as refused:
            async with open_snapshot_store(config, db):
                pass
    assert refused.value.code == "storage"


def test_the_bucket_comes_from_the_environment(tmp_path: Path) -> None:
    env = {
        "AMICABLE_SNAPSHOT_URL": "s3://bucket/some/prefix/",
        "AMICABLE_SNAPSHOT_S3_ENDPOINT_URL": "http://minio:9000",
        "AWS_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "secret"),
        "AMICABLE_SNAPSHOT_COMPACT_AFTER": "7",
    }
    (tmp_path / "secret").write_text("s3cr3t\n")
    config = SnapshotConfig.from_env(env, data_dir=tmp_path)
    assert config.s3 == S3Location(
        "bucket", "some/prefix/", "http://minio:9000", "eu-central-1", "AKIA", "s3cr3t"
    )
    assert "s3cr3t" not in repr(config)
    assert config.compact_after == 7
    assert config.cache_dir == tmp_path / "snapshot-cache"
    assert SnapshotConfig.from_env({}, data_dir=tmp_path).s3 is None
    for bad in ("http://bucket/x", "s3://", "s3://b?x=1"):
        with pytest.raises(ConfigError):
            SnapshotConfig.from_env({"AMICABLE_SNAPSHOT_URL": bad}, data_dir=tmp_path)
