"""``status`` and ``pull``: remote head vs. the sandbox baseline; three-way apply."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from amicable_agent.gitsync import CommitMessage, GitSync, NoBaseline
from amicable_testing.fake_gitlab import FakeGitLab

from .conftest import DirWorkspace, make_project
from .test_sync import push_foreign_commit


async def test_status_reports_the_remote_moving_ahead(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, tmp_path
) -> None:
    project = make_project()
    before = await git_sync.status(project, workspace)
    assert before.remote_sha is None
    assert before.baseline_present is False
    assert before.ahead is False
    synced = await git_sync.sync(project, workspace, CommitMessage("first"))
    now = await git_sync.status(project, workspace)
    assert now.remote_sha == now.local_sha == synced.commit_sha
    assert now.ahead is False
    repo = gitlab.by_path("amicable/demo-app")
    foreign = await push_foreign_commit(gitlab, repo, tmp_path, {"README.md": "r\n"})
    later = await git_sync.status(project, workspace)
    assert later.remote_sha == foreign
    assert later.local_sha == synced.commit_sha
    assert later.ahead is True
    assert later.conflicts_pending is False


async def test_pull_applies_clean_changes_and_shadows_conflicts(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, tmp_path
) -> None:
    project = make_project()
    root = workspace.root
    (root / "conflict.txt").write_text("base\n")
    (root / "gone.txt").write_text("delete me\n")
    await git_sync.sync(project, workspace, CommitMessage("first"))
    repo = gitlab.by_path("amicable/demo-app")
    remote = await push_foreign_commit(
        gitlab, repo, tmp_path,
        {"src/App.tsx": "remote app\n", "added.txt": "new\n", "conflict.txt": "theirs\n",
         "gone.txt": None, "package.json": '{"name": "same"}\n', ".env": "X=1\n"},
    )  # fmt: skip
    (root / "conflict.txt").write_text("ours\n")
    (root / "package.json").write_text('{"name": "same"}\n')  # already equal to the remote

    result = await git_sync.pull(project, workspace)
    assert result.updated is True
    assert result.remote_sha == remote
    assert result.added == ("/added.txt",)
    assert result.modified == ("/src/App.tsx",)
    assert result.deleted == ("/gone.txt",)
    shadow = f"/.amicable/git-remote/{remote}/conflict.txt"
    assert result.conflicts == (
        {"path": "/conflict.txt", "remote_shadow_path": shadow, "remote_sha": remote},
    )
    assert (root / "src/App.tsx").read_text() == "remote app\n"
    assert (root / "added.txt").read_text() == "new\n"
    assert not (root / "gone.txt").exists()
    assert (root / "conflict.txt").read_text() == "ours\n"  # never overwritten
    assert (root / shadow.lstrip("/")).read_text() == "theirs\n"
    assert (root / ".env").read_text() == "SECRET=1\n"  # excluded paths are not pulled
    state = json.loads((root / ".amicable/git_state.json").read_text())
    assert state["remote_head_sha"] == remote
    assert len(state["conflicts"]) == 1
    status = await git_sync.status(project, workspace)
    assert status.ahead is False
    assert status.conflicts_pending is True
    body = result.to_json()
    assert body["applied"] == {
        "added": ["/added.txt"], "modified": ["/src/App.tsx"], "deleted": ["/gone.txt"]
    }  # fmt: skip

    # the next sync pushes the sandbox (source of truth) on top and clears the conflicts
    pushed = await git_sync.sync(project, workspace, CommitMessage("resolve"))
    assert pushed.pushed
    assert "M\tconflict.txt" in pushed.name_status
    assert json.loads((root / ".amicable/git_state.json").read_text())["conflicts"] == []


async def test_pull_without_a_baseline_or_without_a_branch(
    git_sync: GitSync, workspace: DirWorkspace
) -> None:
    project = make_project()
    missing = await git_sync.pull(project, workspace)
    assert missing.error == "remote_branch_missing"
    assert missing.to_json()["error"] == "remote_branch_missing"
    synced = await git_sync.sync(project, workspace, CommitMessage("first"))
    (workspace.root / ".amicable/git_state.json").unlink()
    with pytest.raises(NoBaseline) as info:
        await git_sync.pull(project, workspace)
    assert info.value.remote_sha == synced.commit_sha


async def test_a_snapshot_restored_sandbox_keeps_its_newer_files_and_syncs_them(
    git_sync: GitSync, workspace: DirWorkspace, tmp_path: Path
) -> None:
    # GitLab is a mirror now: it missed the last turn (a failed sync), the sandbox was
    # reaped and restored from its snapshot (which has that turn), without a baseline.
    project = make_project()
    synced = await git_sync.sync(project, workspace, CommitMessage("first"))
    fresh_dir = tmp_path / "restored"
    shutil.copytree(workspace.root, fresh_dir, ignore=shutil.ignore_patterns(".amicable"))
    (fresh_dir / "src/App.tsx").write_text("the newest turn\n")
    fresh = DirWorkspace(fresh_dir)
    assert await git_sync.adopt_remote_head(project, fresh) == synced.commit_sha
    # nothing was overwritten with GitLab's older copy; the baseline is GitLab's head
    assert (fresh_dir / "src/App.tsx").read_text() == "the newest turn\n"
    assert await git_sync.restore_if_fresh(project, fresh) is None
    after = await git_sync.sync(project, fresh, CommitMessage("catch up"))
    assert after.pushed
    assert after.name_status == "M\tsrc/App.tsx"
    assert await git_sync.adopt_remote_head(project, fresh) is None  # has a baseline
