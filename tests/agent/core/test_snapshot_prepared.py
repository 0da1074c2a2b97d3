"""Snapshots whose bundle is made in the checkpoint commit's own exec (real git, a real
workspace, the SQLite store), and the checks a restore makes on what is stored: a damaged or
swapped bundle is refused with a clear ``storage`` error before the sandbox changes."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from amicable_agent.errors import SnapshotError
from amicable_agent.sessions.checkpoints import Checkpoints
from amicable_agent.sessions.snapshots import Snapshots
from amicable_agent.snapshots import SnapshotConfig, SnapshotStore, open_snapshot_store
from amicable_agent.store.sqlite import open_sqlite_store
from amicable_testing.workspace_runtime import WorkspaceRuntime

PID = "project-1"


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def template(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "App.tsx").write_text("template app\n")
    (root / "package.json").write_text('{"name": "template"}\n')
    (root / ".gitignore").write_text("node_modules\n")
    return root


class ExecCounting(WorkspaceRuntime):
    """Counts the commands run in the sandbox."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.execs: list[str] = []

    async def exec(self, command: str, **kwargs: Any) -> Any:
        self.execs.append(command)
        return await super().exec(command, **kwargs)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SnapshotStore]:
    config = SnapshotConfig(cache_dir=tmp_path / "cache", compact_after=100)
    async with open_sqlite_store(tmp_path / "store.db") as db:
        await db.create_project("App", template_id="vite", project_id=PID)
        async with open_snapshot_store(config, db) as snapshots:
            yield snapshots


async def turn(checkpoints: Checkpoints, runtime: WorkspaceRuntime, n: int) -> None:
    (runtime.root / "src" / "App.tsx").write_text(f"turn {n}\n")
    (runtime.root / "src" / f"part{n}.ts").write_text(f"export const n = {n};\n")
    assert await checkpoints.create(f"Turn {n}") is not None


async def test_the_bundle_made_with_the_checkpoint_is_taken_without_running_git_again(
    tmp_path: Path, store: SnapshotStore
) -> None:
    snapshots = Snapshots(store)
    runtime = ExecCounting(template(tmp_path / "one"))
    checkpoints = Checkpoints(runtime, after_commit=snapshots.preparer(PID))
    await checkpoints.ensure()
    assert await snapshots.take(PID, runtime) is not None  # the baseline, full
    for n in range(3):
        await turn(checkpoints, runtime, n)
        before = len(runtime.execs)
        made = await snapshots.take(PID, runtime)
        assert runtime.execs[before:] == []  # only the file read
        assert made is not None
        assert made.kind == "incremental"
        assert made.head_sha == git(runtime.root, "rev-parse", "HEAD")
    assert await snapshots.take(PID, runtime) is None  # nothing new: git runs to say so
    # Restored elsewhere, byte for byte with the whole history.
    fresh = WorkspaceRuntime(template(tmp_path / "two"))
    restored = await Snapshots(store).restore(PID, fresh)
    assert restored is not None
    assert restored.bundles == 4
    assert git(fresh.root, "log", "--format=%H %s") == git(runtime.root, "log", "--format=%H %s")
    assert (fresh.root / "src" / "part2.ts").read_text() == "export const n = 2;\n"


async def test_a_bundle_prepared_against_a_head_that_moved_is_not_used(
    tmp_path: Path, store: SnapshotStore
) -> None:
    mine, other = Snapshots(store), Snapshots(store)  # another replica shares the store
    runtime = ExecCounting(template(tmp_path / "one"))
    checkpoints = Checkpoints(runtime, after_commit=mine.preparer(PID))
    await checkpoints.ensure()
    assert await mine.take(PID, runtime) is not None
    await turn(checkpoints, runtime, 1)  # prepared against the head stored so far
    taken = await other.take(PID, runtime)  # the other replica got there first
    assert taken is not None
    before = len(runtime.execs)
    assert await mine.take(PID, runtime) is None  # nothing new after the moved head
    assert len(runtime.execs) == before + 1  # it bundled again instead of trusting the old one
    assert [r.head_sha for r in await store.chain(PID)][-1] == taken.head_sha


async def _stored_twice(tmp_path: Path, store: SnapshotStore) -> WorkspaceRuntime:
    snapshots = Snapshots(store)
    runtime = WorkspaceRuntime(template(tmp_path / "one"))
    checkpoints = Checkpoints(runtime, after_commit=snapshots.preparer(PID))
    await checkpoints.ensure()
    await snapshots.take(PID, runtime)
    await turn(checkpoints, runtime, 1)
    await snapshots.take(PID, runtime)
    assert len(await store.chain(PID)) == 2
    return runtime


def _update(db: Path, sql: str, *params: Any) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, params)


async def _refused(tmp_path: Path, store: SnapshotStore) -> SnapshotError:
    fresh = WorkspaceRuntime(template(tmp_path / "two"))
    with pytest.raises(SnapshotError) as refused:
        await Snapshots(store).restore(PID, fresh)
    assert not (fresh.root / ".git").exists()  # nothing was applied
    assert (fresh.root / "src" / "App.tsx").read_text() == "template app\n"
    shutil.rmtree(fresh.root)
    return refused.value


async def test_a_damaged_stored_bundle_is_refused_on_restore(
    tmp_path: Path, store: SnapshotStore
) -> None:
    await _stored_twice(tmp_path, store)
    chain = await store.chain(PID)
    # One byte of the newest bundle's pack flipped in the database.
    with sqlite3.connect(tmp_path / "store.db") as conn:
        (data,) = conn.execute(
            "SELECT data FROM snapshot_parts WHERE blob = ?", (chain[-1].blob,)
        ).fetchone()
    flipped = bytes(data[:-30]) + bytes([data[-30] ^ 0xFF]) + bytes(data[-29:])
    _update(tmp_path / "store.db", "UPDATE snapshot_parts SET data = ? WHERE blob = ?",
            flipped, chain[-1].blob)  # fmt: skip
    error = await _refused(tmp_path, store)
    assert error.code == "storage"
    assert f"snapshot {chain[-1].seq} of {PID} is damaged" in error.detail


async def test_a_stored_bundle_of_another_head_is_refused_on_restore(
    tmp_path: Path, store: SnapshotStore
) -> None:
    # The newest record's bytes (and digest) swapped for the first bundle's: a valid bundle
    # with a consistent digest, but not of the recorded head.
    await _stored_twice(tmp_path, store)
    first, second = await store.chain(PID)
    _update(tmp_path / "store.db", "UPDATE snapshots SET blob = ?, sha256 = ?, size_bytes = ?, "
            "base_sha = NULL WHERE seq = ?", first.blob, first.sha256, first.size_bytes,
            second.seq)  # fmt: skip
    error = await _refused(tmp_path, store)
    assert error.code == "storage"
    assert error.detail == (
        f"snapshot {second.seq} of {PID} holds {first.head_sha}, "
        f"not its recorded head {second.head_sha}"
    )
    # Not a bundle at all: refused by its header, before its digest is even known.
    _update(tmp_path / "store.db", "UPDATE snapshot_parts SET data = ? WHERE blob = ?",
            b"<html>not a bundle</html>", first.blob)  # fmt: skip
    error = await _refused(tmp_path, store)
    assert error.code == "storage"
    assert error.detail == f"snapshot {first.seq} of {PID} is not a usable bundle: not a git bundle"


async def test_a_prepared_bundle_that_is_gone_is_made_again(
    tmp_path: Path, store: SnapshotStore
) -> None:
    # Prepared in a sandbox, then the sandbox lost it (replaced before the take ran).
    snapshots = Snapshots(store)
    runtime = ExecCounting(template(tmp_path / "one"))
    checkpoints = Checkpoints(runtime, after_commit=snapshots.preparer(PID))
    await checkpoints.ensure()
    await snapshots.take(PID, runtime)
    await turn(checkpoints, runtime, 1)
    shutil.rmtree(runtime.root / ".git" / "amicable-snap")
    before = len(runtime.execs)
    made = await snapshots.take(PID, runtime)
    assert made is not None
    assert made.head_sha == git(runtime.root, "rev-parse", "HEAD")
    assert len(runtime.execs) == before + 1


async def test_a_bundle_branching_off_an_older_snapshot_is_refused_as_diverged(
    tmp_path: Path, store: SnapshotStore
) -> None:
    # Every object it needs is in the stored history, but its head does not continue the
    # stored head: a side branch off the first snapshot.
    runtime = await _stored_twice(tmp_path, store)
    first, second = await store.chain(PID)
    root = runtime.root
    git(root, "checkout", "-q", "-b", "side", first.head_sha)
    (root / "src" / "App.tsx").write_text("side\n")
    git(root, "-c", "user.name=x", "-c", "user.email=x@y", "commit", "-qam", "side")
    git(root, "bundle", "create", "-q", str(tmp_path / "side.bundle"), "HEAD", f"^{first.head_sha}")
    with pytest.raises(SnapshotError) as refused:
        await store.add(PID, tmp_path / "side.bundle", base=second.head_sha)
    assert refused.value.code == "diverged"
    assert [r.head_sha for r in await store.chain(PID)] == [first.head_sha, second.head_sha]
    # The history goes on from where it was.
    git(root, "checkout", "-q", "main")
    await turn(Checkpoints(runtime), runtime, 2)
    made = await Snapshots(store).take(PID, runtime)
    assert made is not None
    assert made.base_sha == second.head_sha
