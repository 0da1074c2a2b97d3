"""Project snapshots with real git: taken out of a workspace after checkpoints, kept in the
SQLite store, restored into a fresh workspace byte for byte (files and every commit);
refusals of diverged histories and of bundles that do not verify; compaction."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.errors import SnapshotError
from amicable_agent.sessions.checkpoints import Checkpoints
from amicable_agent.sessions.snapshots import Snapshots
from amicable_agent.snapshots import (
    SnapshotConfig,
    SnapshotStore,
    open_snapshot_store,
    parse_header,
)
from amicable_agent.store.sqlite import open_sqlite_store
from amicable_testing.workspace_runtime import WorkspaceRuntime

PID = "project-1"


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


def template(root: Path) -> Path:
    """A workspace as a new sandbox has it: the template, node_modules, no history."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "App.tsx").write_text("template app\n")
    (root / "src" / "old.css").write_text("body {}\n")
    (root / "package.json").write_text('{"name": "template"}\n')
    (root / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    (root / ".gitignore").write_text("node_modules\n.env*\n")
    (root / "node_modules" / "react").mkdir(parents=True)
    (root / "node_modules" / "react" / "index.js").write_text("react\n")
    return root


def tracked(root: Path) -> dict[str, bytes]:
    """Every file outside .git and the ignored dependencies, with its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith((".git/", "node_modules/")):
            out[rel] = path.read_bytes()
    return out


class CountingRuntime(WorkspaceRuntime):
    """Counts installs (the dependency rule of a restore)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.installs = 0

    async def exec(self, command: str, **kwargs: Any) -> Any:
        if command.startswith("npm install"):
            self.installs += 1
            await trio.lowlevel.checkpoint()
            from amicable_protocol.runtime import ExecResult

            return ExecResult(0, "", "", False, False, 1)
        return await super().exec(command, **kwargs)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SnapshotStore]:
    config = SnapshotConfig(cache_dir=tmp_path / "cache", compact_after=3)
    async with open_sqlite_store(tmp_path / "store.db") as db:
        await db.create_project("App", template_id="vite", project_id=PID)
        async with open_snapshot_store(config, db) as snapshots:
            yield snapshots


async def _turn(runtime: WorkspaceRuntime, title: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = runtime.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    await Checkpoints(runtime).create(title)


async def test_a_deleted_workspace_comes_back_byte_for_byte(
    tmp_path: Path, store: SnapshotStore
) -> None:
    snapshots = Snapshots(store)
    first = CountingRuntime(template(tmp_path / "one"))
    await Checkpoints(first).ensure()
    made = await snapshots.take(PID, first)
    assert made is not None
    assert (made.kind, made.base_sha) == ("full", None)
    assert await snapshots.take(PID, first) is None  # nothing new
    await _turn(first, "Make it blue", {"src/App.tsx": "blue app\n"})
    (first.root / "src" / "old.css").unlink()
    (first.root / "src" / "logo.bin").write_bytes(bytes(range(256)) * 50)
    await Checkpoints(first).create("Add a logo")
    second = await snapshots.take(PID, first)
    assert second is not None
    assert (second.kind, second.base_sha) == ("incremental", made.head_sha)
    (first.root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (first.root / "script.sh").chmod(0o755)
    await Checkpoints(first).create("Add a script")
    await snapshots.take(PID, first)
    want_files = tracked(first.root)
    want_log = git(first.root, "log", "--format=%H %ct %s", "HEAD")
    assert len(want_log.splitlines()) == 4

    # the sandbox is gone; a new one starts from the template
    shutil.rmtree(first.root)
    fresh = CountingRuntime(template(tmp_path / "two"))
    stages: list[str] = []

    async def on_stage(stage: str, message: str) -> None:
        stages.append(stage)

    restored = await snapshots.restore(PID, fresh, on_stage)  # type: ignore[arg-type]
    assert restored is not None
    assert (restored.bundles, restored.dependencies) == (3, "unchanged")
    assert stages == ["restoring"]
    assert tracked(fresh.root) == want_files  # the template's old.css is gone again
    assert git(fresh.root, "log", "--format=%H %ct %s", "HEAD") == want_log
    assert git(fresh.root, "status", "--porcelain") == ""
    assert (fresh.root / "script.sh").stat().st_mode & 0o111
    assert (fresh.root / "node_modules" / "react" / "index.js").exists()
    assert not (fresh.root / ".amicable" / "restore").exists()
    assert fresh.installs == 0  # the lockfile is the template's
    # a current sandbox is left alone, and the next turn continues the chain
    assert await snapshots.restore(PID, fresh) is None
    await _turn(fresh, "After the restore", {"src/App.tsx": "after\n"})
    after = await snapshots.take(PID, fresh)
    assert after is not None
    assert after.base_sha == restored.head


async def test_a_changed_lockfile_reinstalls_dependencies(
    tmp_path: Path, store: SnapshotStore
) -> None:
    snapshots = Snapshots(store)
    first = CountingRuntime(template(tmp_path / "one"))
    await Checkpoints(first).ensure()
    await _turn(
        first, "Add a dependency", {"package.json": '{"name": "t", "dependencies": {"x": "1"}}\n'}
    )
    await snapshots.take(PID, first)
    fresh = CountingRuntime(template(tmp_path / "two"))
    restored = await snapshots.restore(PID, fresh)
    assert restored is not None
    assert restored.dependencies == "installed"
    assert fresh.installs == 1


async def test_a_sandbox_that_started_over_is_never_stored_over_the_history(
    tmp_path: Path, store: SnapshotStore
) -> None:
    snapshots = Snapshots(store)
    first = CountingRuntime(template(tmp_path / "one"))
    await Checkpoints(first).ensure()
    await _turn(first, "Real work", {"src/App.tsx": "precious\n"})
    made = await snapshots.take(PID, first)
    assert made is not None
    # a template sandbox that made its own baseline (nobody restored it)
    stray = CountingRuntime(template(tmp_path / "two"))
    await Checkpoints(stray).ensure()
    with pytest.raises(SnapshotError) as refused:
        await snapshots.take(PID, stray)
    assert refused.value.code == "diverged"
    assert [r.head_sha for r in await store.chain(PID)] == [made.head_sha]
    # restoring it keeps its own history under a ref and its untracked files
    (stray.root / "notes.txt").write_text("mine\n")
    restored = await snapshots.restore(PID, stray)
    assert restored is not None
    assert (stray.root / "src" / "App.tsx").read_text() == "precious\n"
    assert (stray.root / "notes.txt").read_text() == "mine\n"
    assert git(stray.root, "rev-parse", "refs/amicable/replaced").strip()


class TamperingRuntime(WorkspaceRuntime):
    """Hands over a bundle other than the one it made (an untrusted sandbox)."""

    def __init__(self, root: Path, replace: bytes) -> None:
        super().__init__(root)
        self.replace = replace

    async def read_file(self, path: str, *, max_bytes: int | None = None) -> tuple[bytes, str]:
        if "/amicable-snap/" in path:
            await trio.lowlevel.checkpoint()
            return self.replace, ""
        return await super().read_file(path, max_bytes=max_bytes)


@pytest.mark.parametrize(
    "payload",
    [
        b"not a bundle at all",
        b"# v2 git bundle\n" + b"a" * 40 + b" refs/heads/main\n\nPACK",
        b"# v2 git bundle\n" + b"b" * 40 + b" refs/amicable/snapshot\n\nPACKgarbage",
    ],
)
async def test_a_bundle_that_does_not_verify_is_refused(
    tmp_path: Path, store: SnapshotStore, payload: bytes
) -> None:
    runtime = TamperingRuntime(template(tmp_path / "one"), payload)
    await Checkpoints(runtime).ensure()
    with pytest.raises(SnapshotError) as refused:
        await Snapshots(store).take(PID, runtime)
    assert refused.value.code == "invalid_bundle"
    assert await store.chain(PID) == []
    assert store.statistics()["refused"] == 1


async def test_a_forged_history_on_top_is_refused(tmp_path: Path, store: SnapshotStore) -> None:
    # Once a history is stored, the sandbox hands over valid bundles of another history.
    runtime = CountingRuntime(template(tmp_path / "one"))
    await Checkpoints(runtime).ensure()
    assert await Snapshots(store).take(PID, runtime) is not None
    await _turn(runtime, "Real work", {"src/App.tsx": "real\n"})
    other = CountingRuntime(template(tmp_path / "other"))
    (other.root / "evil.js").write_text("steal()\n")
    await Checkpoints(other).ensure()
    await _turn(other, "Forged", {"src/App.tsx": "forged\n"})
    git(other.root, "bundle", "create", str(tmp_path / "incremental"), "HEAD", "^HEAD~1")
    git(other.root, "bundle", "create", str(tmp_path / "full"), "HEAD")
    for forged in ("incremental", "full"):
        tampering = TamperingRuntime(runtime.root, (tmp_path / forged).read_bytes())
        with pytest.raises(SnapshotError) as refused:
            await Snapshots(store).take(PID, tampering)
        assert refused.value.code == "invalid_bundle", forged
    assert len(await store.chain(PID)) == 1


async def test_bundles_over_the_cap_are_refused(tmp_path: Path) -> None:
    config = SnapshotConfig(cache_dir=tmp_path / "cache", max_bundle_bytes=4 * 1024 * 1024)
    async with open_sqlite_store(tmp_path / "store.db") as db:
        await db.create_project("App", template_id="vite", project_id=PID)
        async with open_snapshot_store(config, db) as store:
            runtime = CountingRuntime(template(tmp_path / "one"))
            # incompressible, bigger than the cap
            (runtime.root / "big.bin").write_bytes(os.urandom(5_000_000))
            await Checkpoints(runtime).ensure()
            with pytest.raises(SnapshotError) as refused:
                await Snapshots(store).take(PID, runtime)
            assert refused.value.code == "too_large"
            assert await store.chain(PID) == []


async def test_the_chain_is_compacted_and_still_restores(
    tmp_path: Path, store: SnapshotStore
) -> None:
    snapshots = Snapshots(store)
    runtime = CountingRuntime(template(tmp_path / "one"))
    await Checkpoints(runtime).ensure()
    await snapshots.take(PID, runtime)
    for n in range(4):
        await _turn(runtime, f"Turn {n}", {"src/App.tsx": f"v{n}\n"})
        await snapshots.take(PID, runtime)
    chain = await store.chain(PID)
    assert store.statistics()["compacted"] == 1
    # compacted after 3 incrementals into one full bundle; one incremental since
    assert [r.kind for r in chain] == ["full", "incremental"]
    header = parse_header(b"".join([p async for p in store.read(chain[0])]))
    assert header.prerequisites == frozenset()
    want = git(runtime.root, "log", "--format=%H", "HEAD")
    fresh = CountingRuntime(template(tmp_path / "two"))
    await snapshots.restore(PID, fresh)
    assert git(fresh.root, "log", "--format=%H", "HEAD") == want
    assert (fresh.root / "src" / "App.tsx").read_text() == "v3\n"


async def test_a_lost_mirror_is_rebuilt_from_the_store(
    tmp_path: Path, store: SnapshotStore
) -> None:
    snapshots = Snapshots(store)
    runtime = CountingRuntime(template(tmp_path / "one"))
    await Checkpoints(runtime).ensure()
    await snapshots.take(PID, runtime)
    shutil.rmtree(tmp_path / "cache" / "mirrors")
    # another agent process: nothing cached in memory either
    again = Snapshots(SnapshotStore(store._index, store._blobs, store.config))  # type: ignore[attr-defined]
    await _turn(runtime, "Next", {"src/App.tsx": "next\n"})
    made = await again.take(PID, runtime)
    assert made is not None
    assert made.kind == "incremental"
    assert again.store.statistics()["rebuilt"] == 1
