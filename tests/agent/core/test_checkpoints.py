"""Checkpoints (a git history inside the sandbox workspace) over the in-process workspace
runtime, with real git; and the checkpoints API of a real agent server."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from amicable_agent.errors import CheckpointError
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sessions._git_scripts import commit_message
from amicable_agent.sessions.checkpoints import (
    BASELINE_TITLE,
    SAVED_TITLE,
    Checkpoints,
    SkippedFile,
    clean_title,
    parse_log,
    valid_sha,
)
from amicable_testing.workspace_runtime import WorkspaceRuntime


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "App.tsx").write_text("v1\n")
    (root / "package.json").write_text('{"name": "demo"}\n')
    (root / ".gitignore").write_text("node_modules\n.env*\n")
    (root / "node_modules" / "react").mkdir(parents=True)
    (root / "node_modules" / "react" / "index.js").write_text("react\n")
    (root / ".amicable").mkdir()
    (root / ".amicable" / "git_state.json").write_text("{}")
    (root / ".env.local").write_text("SECRET=1\n")
    return root


# --- pure logic ------------------------------------------------------------------------


def test_valid_sha_accepts_only_7_to_40_hex_digits() -> None:
    assert valid_sha("ABCDEF0") == "abcdef0"
    assert valid_sha("a" * 40) == "a" * 40
    for bad in ("abc", "a" * 41, "zzzzzzz", "HEAD~1", "abcdef0;rm", "-abcdef", ""):
        assert valid_sha(bad) is None, bad


def test_clean_title_is_one_capped_line() -> None:
    assert clean_title("  Make\nit\tblue  ") == "Make it blue"
    assert clean_title("") == "Update the app"
    long = clean_title("x" * 500)
    assert len(long) == 120
    assert long.endswith("…")


def test_parse_log_reads_counts_skipped_files_and_skips_junk() -> None:
    note = commit_message(
        "First", [SkippedFile("/a b\n.bin", 60_000_000), SkippedFile("/c.zip", 70)], 50
    )
    body = note.split("\n", 1)[1]
    text = (
        "\x1eaaa\x1f100\x1fSecond\x1f\x1d\n\n 1 file changed, 1 insertion(+)\n"
        f"\x1ebbb\x1f90\x1fFirst\x1f{body}\n\x1d\n\n 12 files changed, 3 deletions(-)\n"
        "\x1ebroken line\n"
        "\x1eccc\x1f80\x1fEmpty\x1f\x1d\n"
    )
    found = parse_log(text)
    assert [(c.sha, c.title, c.created_at, c.files_changed) for c in found] == [
        ("aaa", "Second", 100, 1),
        ("bbb", "First", 90, 12),
        ("ccc", "Empty", 80, 0),
    ]
    assert found[1].skipped == (SkippedFile("/a b\n.bin", 60_000_000), SkippedFile("/c.zip", 70))
    assert found[0].skipped == found[2].skipped == ()


# --- over a workspace runtime ------------------------------------------------------------


async def test_history_restore_and_undo(project: Path) -> None:
    cps = Checkpoints(WorkspaceRuntime(project))
    assert await cps.list() == []
    await cps.ensure()
    await cps.ensure()  # idempotent
    [baseline] = await cps.list()
    assert (baseline.title, baseline.files_changed) == (BASELINE_TITLE, 3)
    # Platform state and dependencies are never in a checkpoint; user files don't change.
    tracked = git(project, "ls-files").split()
    assert sorted(tracked) == [".gitignore", "package.json", "src/App.tsx"]
    assert (project / ".gitignore").read_text() == "node_modules\n.env*\n"
    assert ".amicable/" in (project / ".git" / "info" / "exclude").read_text().split()

    assert await cps.create("nothing changed") is None
    (project / "src" / "App.tsx").write_text("v2\n")
    (project / "src" / "Later.tsx").write_text("later\n")
    made = await cps.create("Make it\nversion two")
    assert made is not None
    assert (made.title, made.files_changed) == ("Make it version two", 2)
    assert [c.sha for c in await cps.list()] == [made.sha, baseline.sha]

    result = await cps.restore(baseline.sha[:7].upper())
    assert (project / "src" / "App.tsx").read_text() == "v1\n"
    assert not (project / "src" / "Later.tsx").exists()
    assert (project / "node_modules" / "react" / "index.js").read_text() == "react\n"
    assert (project / ".amicable" / "git_state.json").exists()
    assert (project / ".env.local").read_text() == "SECRET=1\n"
    assert result.target == baseline
    assert result.saved is None
    assert result.checkpoint.title == "Restored to: Project created"
    assert result.checkpoint.files_changed == 2
    assert sorted(result.changed_paths) == ["/src/App.tsx", "/src/Later.tsx"]
    assert result.dependencies == "unchanged"
    listed = await cps.list()
    assert [c.sha for c in listed] == [result.checkpoint.sha, made.sha, baseline.sha]
    assert git(project, "status", "--porcelain") == ""

    # A restore can itself be undone.
    await cps.restore(made.sha)
    assert (project / "src" / "App.tsx").read_text() == "v2\n"
    assert (project / "src" / "Later.tsx").read_text() == "later\n"


async def test_uncommitted_changes_are_saved_before_a_restore(project: Path) -> None:
    cps = Checkpoints(WorkspaceRuntime(project))
    await cps.ensure()
    [baseline] = await cps.list()
    (project / "src" / "App.tsx").write_text("edited by hand\n")
    result = await cps.restore(baseline.sha)
    assert (project / "src" / "App.tsx").read_text() == "v1\n"
    assert result.saved is not None
    assert result.saved.title == SAVED_TITLE
    await cps.restore(result.saved.sha)
    assert (project / "src" / "App.tsx").read_text() == "edited by hand\n"


async def test_changed_dependencies_run_the_install_command(project: Path) -> None:
    runtime = WorkspaceRuntime(project)
    cps = Checkpoints(runtime, install_command="echo ran > .installed.log")
    await cps.ensure()
    [baseline] = await cps.list()
    (project / "package.json").write_text('{"name": "demo", "dependencies": {"x": "1"}}\n')
    await cps.create("add x")
    result = await cps.restore(baseline.sha)
    assert result.dependencies == "installed"
    assert (project / ".installed.log").read_text() == "ran\n"
    assert runtime.exec_log[-1] == "echo ran > .installed.log"
    # Restoring to where the dependencies are the same does not install again.
    (project / ".installed.log").unlink()
    await cps.restore(result.checkpoint.sha)
    assert not (project / ".installed.log").exists()

    failing = Checkpoints(runtime, install_command="exit 3")
    [added] = [c for c in await failing.list() if c.title == "add x"]
    assert (await failing.restore(added.sha)).dependencies == "failed"


async def test_unknown_checkpoint_is_not_found(project: Path) -> None:
    cps = Checkpoints(WorkspaceRuntime(project))
    with pytest.raises(CheckpointError) as before_init:
        await cps.get("abcdef0")
    assert before_init.value.code == "not_found"
    await cps.ensure()
    with pytest.raises(CheckpointError) as unknown:
        await cps.restore("abcdef0")
    assert unknown.value.code == "not_found"
    with pytest.raises(ValueError, match="hex"):
        await cps.restore("HEAD~1")


async def test_without_git_the_error_says_so(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to("/bin/sh")
    monkeypatch.setenv("PATH", str(bin_dir))
    cps = Checkpoints(WorkspaceRuntime(project))
    for call in (cps.list(), cps.create("x"), cps.restore("abcdef0")):
        with pytest.raises(CheckpointError) as info:
            await call
        assert info.value.code == "git_unavailable"
        assert "git" in info.value.detail
    assert not (project / ".git").exists()


# --- the HTTP API ------------------------------------------------------------------------


async def test_checkpoints_api(api: Any) -> None:
    c = api.client
    pid = (await c.post("/api/projects", json={"name": "Shop"})).json()["project_id"]
    base = f"/api/sandbox/{pid}/checkpoints"
    empty = (await c.get(base)).json()
    assert empty == {"checkpoints": [], "history_bytes": 0, "max_history_bytes": 1024**3}
    ws = api.workspaces / sandbox_id_for(pid)
    (ws / "index.html").write_text("one")
    cps = Checkpoints(WorkspaceRuntime(ws))
    await cps.ensure()
    (ws / "index.html").write_text("two")
    await cps.create("Second")

    body = (await c.get(base)).json()
    assert body["history_bytes"] > 0  # the disk the project's .git uses
    listed = body["checkpoints"]
    assert [(e["title"], e["files_changed"]) for e in listed] == [
        ("Second", 1),
        (BASELINE_TITLE, 1),
    ]
    assert set(listed[0]) == {"sha", "title", "created_at", "files_changed", "skipped"}
    assert listed[0]["skipped"] == []
    assert isinstance(listed[0]["created_at"], int)

    for bad in ("xyz", "zzzzzzz", "a" * 41, "HEAD"):
        r = await c.post(f"{base}/{bad}/restore")
        assert (r.status_code, r.json()["error"]) == (400, "invalid_sha"), bad
    r = await c.post(f"{base}/abcdef0/restore")
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = await c.post(f"{base}/{listed[1]['sha']}/restore")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["restored_to"]["sha"] == listed[1]["sha"]
    assert body["checkpoint"]["title"] == f"Restored to: {BASELINE_TITLE}"
    assert (body["saved"], body["changed_paths"], body["dependencies"]) == (
        None,
        ["/index.html"],
        "unchanged",
    )
    assert (ws / "index.html").read_text() == "one"
    assert len((await c.get(base)).json()["checkpoints"]) == 3

    unknown = await c.get(f"/api/sandbox/{uuid.uuid4()}/checkpoints")
    assert unknown.status_code == 404
    foreign = await c.get(base, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403


async def test_checkpoints_api_without_git(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    c = api.client
    pid = (await c.post("/api/projects", json={"name": "Shop"})).json()["project_id"]
    bin_dir = api.workspaces.parent / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to("/bin/sh")
    monkeypatch.setenv("PATH", str(bin_dir))
    r = await c.get(f"/api/sandbox/{pid}/checkpoints")
    assert (r.status_code, r.json()["error"]) == (503, "git_unavailable")
    assert "not installed" in r.json()["detail"]
