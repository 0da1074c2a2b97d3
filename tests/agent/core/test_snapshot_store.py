"""The snapshot chain in both stores (SQLite, and PostgreSQL on a real server): conditional
appends, compaction, bytes kept in the database, and deletion with the project."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from amicable_agent.errors import SnapshotError
from amicable_agent.store.base import Store
from amicable_agent.store.postgres import open_postgres_store
from amicable_agent.store.sqlite import open_sqlite_store
from amicable_testing.postgres import PostgresServer

OpenStore = Callable[[], AbstractAsyncContextManager[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    if request.param == "sqlite":
        yield lambda: open_sqlite_store(tmp_path / "store.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield lambda: open_postgres_store(url)


def _fields(head: str, base: str | None, blob: str) -> dict[str, object]:
    return {
        "kind": "incremental" if base else "full",
        "head_sha": head,
        "base_sha": base,
        "size_bytes": 10,
        "sha256": "0" * 64,
        "blob": blob,
    }


async def test_the_chain_only_grows_from_its_head(open_store: OpenStore) -> None:
    async with open_store() as store:
        await store.create_project("App", template_id="vite", project_id="p1")
        assert await store.snapshot_chain("p1") == []
        first = await store.append_snapshot(
            "p1", **_fields("a" * 40, None, "s3:a"), expect_head=None
        )  # type: ignore[arg-type]
        assert (first.seq, first.kind) == (1, "full")
        second = await store.append_snapshot(
            "p1",
            **_fields("b" * 40, "a" * 40, "s3:b"),  # type: ignore[arg-type]
            expect_head="a" * 40,
        )
        assert second.seq == 2
        # a stale writer (or a sandbox with another history) is refused
        with pytest.raises(SnapshotError) as stale:
            await store.append_snapshot(
                "p1",
                **_fields("c" * 40, "a" * 40, "s3:c"),  # type: ignore[arg-type]
                expect_head="a" * 40,
            )
        assert stale.value.code == "conflict"
        with pytest.raises(SnapshotError):  # a fresh full history over the stored one
            await store.append_snapshot("p1", **_fields("d" * 40, None, "s3:d"), expect_head=None)  # type: ignore[arg-type]
        chain = await store.snapshot_chain("p1")
        assert [(r.seq, r.head_sha[0], r.base_sha) for r in chain] == [
            (1, "a", None),
            (2, "b", "a" * 40),
        ]


async def test_compaction_replaces_the_chain_and_parts_go_with_it(open_store: OpenStore) -> None:
    async with open_store() as store:
        await store.create_project("App", template_id="vite", project_id="p1")
        await store.put_snapshot_part("p1", "db:one", 0, b"\x00bundle-1")
        await store.put_snapshot_part("p1", "db:one", 1, b"more")
        await store.append_snapshot("p1", **_fields("a" * 40, None, "db:one"), expect_head=None)  # type: ignore[arg-type]
        await store.append_snapshot(
            "p1",
            **_fields("b" * 40, "a" * 40, "s3:p1/2"),  # type: ignore[arg-type]
            expect_head="a" * 40,
        )
        assert await store.snapshot_part("db:one", 0) == b"\x00bundle-1"
        assert await store.snapshot_part("db:one", 2) is None
        with pytest.raises(SnapshotError):
            await store.compact_snapshots(
                "p1", head_sha="a" * 40, size_bytes=5, sha256="1" * 64, blob="db:full"
            )
        await store.put_snapshot_part("p1", "db:full", 0, b"full")
        others = await store.compact_snapshots(
            "p1", head_sha="b" * 40, size_bytes=4, sha256="1" * 64, blob="db:full"
        )
        assert others == ["s3:p1/2"]  # the caller deletes the bucket's object
        chain = await store.snapshot_chain("p1")
        assert [(r.seq, r.kind, r.head_sha[0], r.blob) for r in chain] == [
            (3, "full", "b", "db:full")
        ]
        assert await store.snapshot_part("db:one", 0) is None
        assert await store.referenced_snapshot_blobs("p1") == {"db:full"}
        # an upload that lost its race leaves parts nobody refers to: swept
        await store.put_snapshot_part("p1", "db:lost", 0, b"x")
        assert await store.delete_snapshot_blobs("p1", {"db:full"}) == 1
        assert await store.snapshot_part("db:full", 0) == b"full"


async def test_snapshots_go_with_the_project(open_store: OpenStore) -> None:
    async with open_store() as store:
        await store.create_project("App", template_id="vite", project_id="p1")
        await store.put_snapshot_part("p1", "db:one", 0, bytes(range(256)) * 100)
        await store.append_snapshot("p1", **_fields("a" * 40, None, "db:one"), expect_head=None)  # type: ignore[arg-type]
    async with open_store() as store:  # survives reopening, bytes intact
        assert await store.snapshot_part("db:one", 0) == bytes(range(256)) * 100
        await store.purge_project("p1")
        assert await store.snapshot_chain("p1") == []
        assert await store.snapshot_part("db:one", 0) is None
