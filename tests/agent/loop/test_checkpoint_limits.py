"""Checkpoints stay small and clean: a big file and build output are left out (the big file
with a note in the checkpoint), a cut ``git add`` leaves no partial pack behind, and the
history's disk use is reported and capped. Over the real sandbox runtime (whose exec kills a
cancelled command's process group) and real git; big files are sparse (``truncate``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.errors import CheckpointError
from amicable_agent.sessions.checkpoint_queue import PENDING_KEY, CheckpointQueue
from amicable_agent.sessions.checkpoints import (
    BASELINE_TITLE,
    CheckpointPolicy,
    Checkpoints,
    SkippedFile,
    format_bytes,
)
from amicable_testing import MemoryStore
from amicable_testing.workspace_runtime import WorkspaceRuntime

BIG = 1536 * 1024 * 1024  # 1.5 GB: git needs ~10 s to hash it, and leaves a partial pack
MB = 1024 * 1024


def sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


def tracked(root: Path) -> list[str]:
    return sorted(git(root, "ls-files").split())


def leftovers(root: Path) -> list[str]:
    """What a killed git leaves: partial packs, loose-object temp files, the index lock."""
    git_dir = root / ".git"
    found = [p.name for p in (git_dir / "objects").rglob("tmp_*")]
    return found + [p.name for p in git_dir.glob("*.lock")]


async def wait_for_partial_pack(root: Path) -> None:
    with trio.fail_after(60):
        while not any((root / ".git" / "objects").rglob("tmp_pack_*")):
            await trio.sleep(0.01)


def test_format_bytes_is_for_people() -> None:
    assert [format_bytes(n) for n in (12, 900_000, 52_428_800, BIG)] == [
        "12 bytes",
        "900 kB",
        "52 MB",
        "1.6 GB",
    ]


async def test_big_files_and_build_output_are_left_out_with_a_note(
    real_runtime: Any, workspace: Path
) -> None:
    sparse(workspace / "old.bin", 60 * MB)  # there before the baseline
    cps = Checkpoints(real_runtime)  # the default policy: files over 50 MB are left out
    await cps.ensure()
    [baseline] = await cps.list()
    assert baseline.title == BASELINE_TITLE
    assert baseline.skipped == (SkippedFile("/old.bin", 60 * MB),)

    sparse(workspace / "media" / "a video.bin", BIG)
    (workspace / "src" / "App.tsx").write_text("changed\n")
    (workspace / "src" / "build").mkdir()
    (workspace / "src" / "build" / "keep.ts").write_text("a source folder named build\n")
    for name in ("dist/assets/index.js", "build/app.js", "coverage/lcov.info", "vite.log"):
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text("generated\n")
    made = await cps.create("Add a video")

    assert made is not None
    assert made.skipped == (SkippedFile("/media/a video.bin", BIG),)
    assert made.files_changed == 2
    assert tracked(workspace) == [
        "AGENTS.md",
        "package.json",
        "src/App.tsx",
        "src/build/keep.ts",
    ]
    history = await cps.history()
    assert [c.skipped for c in history.checkpoints] == [made.skipped, baseline.skipped]
    # Nothing of the 1.5 GB was hashed: the history stays small, and git left nothing behind.
    assert 0 < history.history_bytes < 5 * MB
    assert history.max_history_bytes == CheckpointPolicy().max_history_bytes
    assert leftovers(workspace) == []

    # A tracked file that grows past the limit keeps its last version in the checkpoints.
    (workspace / "package.json").write_text('{"name": "demo", "v": 2}')
    await cps.create("Bump")
    sparse(workspace / "package.json", 70 * MB)
    grown = await cps.create("Grow")
    assert grown is None  # nothing else changed: no checkpoint
    assert '"v": 2' in git(workspace, "show", "HEAD:package.json")


async def test_a_cut_checkpoint_leaves_no_partial_pack(real_runtime: Any, workspace: Path) -> None:
    unlimited = Checkpoints(real_runtime, policy=CheckpointPolicy(max_file_bytes=0))
    await unlimited.ensure()
    sparse(workspace / "video.bin", BIG)

    # Cut while git hashes the file into a partial pack; the next checkpoint cleans up.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(unlimited.create, "Add a video")
        await wait_for_partial_pack(workspace)
        nursery.cancel_scope.cancel()
    (workspace / "src" / "App.tsx").write_text("with a video\n")
    made = await Checkpoints(real_runtime).create("Add a video")
    assert made is not None
    assert made.skipped == (SkippedFile("/video.bin", BIG),)
    assert leftovers(workspace) == []
    assert "video.bin" not in tracked(workspace)

    # Cut again; recover() alone cleans up (what the checkpoint queue does at once).
    sparse(workspace / "other.bin", BIG)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(unlimited.create, "Add another")
        await wait_for_partial_pack(workspace)
        nursery.cancel_scope.cancel()
    await unlimited.recover()
    assert leftovers(workspace) == []


async def test_history_over_its_cap_is_collected_then_refused(workspace: Path) -> None:
    runtime = WorkspaceRuntime(workspace)
    cps = Checkpoints(runtime)
    await cps.ensure()
    for i in range(12):  # loose objects: a few kB of disk each
        (workspace / "src" / f"step{i}.ts").write_text(f"export const step = {i};\n")
        await cps.create(f"step {i}")
    before = (await cps.history()).history_bytes
    assert not list((workspace / ".git" / "objects" / "pack").glob("*.pack"))

    # Over the cap: git gc packs the loose objects, which brings it under; the checkpoint is made.
    capped = Checkpoints(runtime, policy=CheckpointPolicy(max_history_bytes=before - 1))
    (workspace / "src" / "App.tsx").write_text("after gc\n")
    assert await capped.create("after gc") is not None
    assert list((workspace / ".git" / "objects" / "pack").glob("*.pack"))
    assert (await capped.history()).history_bytes < before

    # Still over after collecting: refused with a note saying why; nothing is committed.
    tiny = Checkpoints(runtime, policy=CheckpointPolicy(max_history_bytes=4096))
    (workspace / "src" / "App.tsx").write_text("refused\n")
    with pytest.raises(CheckpointError) as info:
        await tiny.create("refused")
    assert info.value.code == "history_full"
    assert "AMICABLE_CHECKPOINT_MAX_HISTORY_BYTES" in info.value.detail
    assert (await tiny.list())[0].title == "after gc"
    # 0 = no cap.
    uncapped = Checkpoints(runtime, policy=CheckpointPolicy(max_history_bytes=0))
    assert await uncapped.create("no cap") is not None


async def test_a_checkpoint_cut_by_a_closing_session_cleans_up_before_it_returns(
    real_runtime: Any, workspace: Path
) -> None:
    store = MemoryStore()
    sent: list[Any] = []

    async def send(type_: Any, data: Any) -> None:
        await trio.lowlevel.checkpoint()
        sent.append((type_, data))

    # No size limit, so git hashes the whole file into a partial pack.
    policy = CheckpointPolicy(max_file_bytes=0)
    queue = CheckpointQueue("s1", store, lambda: real_runtime, send, policy)
    assert await queue.prepare()
    sparse(workspace / "video.bin", BIG)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.serve)
        await queue.turn_started("Add a video")
        await queue.turn_finished("Add a video", interrupted=False)
        await wait_for_partial_pack(workspace)
        nursery.cancel_scope.cancel()  # the session closes
    # The shielded cleanup ran before serve() returned; the turn is still pending.
    assert leftovers(workspace) == []
    assert await store.load_state("s1", PENDING_KEY) == ["Add a video"]
    assert sent == []
