"""The sync engine against the fake GitLab: real HTTP, real git push/fetch."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import trio
from amicable_agent.gitsync import CommitMessage, GitSync, GitSyncError, TurnSummary
from amicable_agent.gitsync.config import basic_credentials
from amicable_agent.gitsync.hooks import sync_after_turn
from amicable_testing.fake_gitlab import FakeGitLab

from .conftest import TOKEN, DirWorkspace, git_out, make_project, remote_files

EXCLUDED = ("node_modules/react/index.js", "dist/bundle.js", ".env", "src/.env.local",
            ".cache/x", ".git/HEAD", ".amicable/notes")  # fmt: skip


async def test_first_sync_creates_the_repo_and_the_first_commit(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, workspace_dir: Path
) -> None:
    project = make_project()
    turn = TurnSummary("Add a   greeting\nto the page", "Done: added a greeting.", "passed")
    result = await git_sync.sync_turn(project, workspace, turn)

    assert result.pushed
    repo = gitlab.by_path("amicable/demo-app")
    assert repo is not None
    assert repo.description.endswith(project.project_id)
    files = await remote_files(gitlab, repo)
    assert sorted(files) == [
        "index.html",
        "package.json",
        "scripts/run.sh",
        "src/App.tsx",
        "src/old.ts",
    ]
    for excluded in EXCLUDED:
        assert excluded not in files
    head = await git_out(f"--git-dir={gitlab.repo_dir(repo)}", "rev-parse", "main")
    assert head == result.commit_sha
    mode = await git_out(f"--git-dir={gitlab.repo_dir(repo)}", "ls-tree", "main", "scripts/run.sh")
    assert mode.startswith("100755")
    message = await git_out(
        f"--git-dir={gitlab.repo_dir(repo)}", "log", "-1", "--format=%B", "main"
    )
    assert message.splitlines()[0] == "Add a greeting to the page"
    assert "QA: passed" in message
    assert "Changes:" in message
    assert "A\tsrc/App.tsx" in message
    state = json.loads((workspace_dir / ".amicable/git_state.json").read_text())
    assert state["branch"] == "main"
    assert state["remote_head_sha"] == result.commit_sha
    assert state["conflicts"] == []
    record = await git_sync.repo_record(project.project_id)
    assert record is not None
    assert record.gitlab_path == "amicable/demo-app"
    assert record.git_info()["web_url"] == f"{gitlab.base_url}/amicable/demo-app"


async def test_unchanged_tree_is_not_committed_and_deletions_reach_the_repo(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, workspace_dir: Path
) -> None:
    project = make_project()
    first = await git_sync.sync(project, workspace, CommitMessage("first"))
    again = await git_sync.sync(project, workspace, CommitMessage("nothing"))
    assert again.pushed is False
    assert again.commit_sha == first.commit_sha

    (workspace_dir / "src/old.ts").unlink()
    (workspace_dir / "src/App.tsx").write_text("export default 2;\n")
    third = await git_sync.sync(project, workspace, CommitMessage("edit"))
    assert third.pushed
    assert third.name_status.splitlines() == ["M\tsrc/App.tsx", "D\tsrc/old.ts"]
    repo = gitlab.by_path("amicable/demo-app")
    assert repo is not None
    files = await remote_files(gitlab, repo)
    assert "src/old.ts" not in files
    assert files["src/App.tsx"] == "export default 2;"
    parents = await git_out(f"--git-dir={gitlab.repo_dir(repo)}", "log", "--format=%H", "main")
    assert parents.splitlines() == [third.commit_sha, first.commit_sha]


async def test_the_token_never_appears_in_argv_config_logs_or_urls(
    git_sync: GitSync,
    gitlab: FakeGitLab,
    workspace: DirWorkspace,
    argv_log: Path,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    project = make_project()
    await git_sync.sync(project, workspace, CommitMessage("first"))
    (workspace.root / "new.txt").write_text("x\n")
    await git_sync.sync(project, workspace, CommitMessage("second"))
    await git_sync.status(project, workspace)

    secrets = (TOKEN, basic_credentials(TOKEN))
    argv = argv_log.read_text()
    assert "push" in argv
    assert "ls-remote" in argv
    cache_files = [p for p in (tmp_path / "git-cache").rglob("*") if p.is_file()]
    assert any(p.name == "config" for p in cache_files)
    for secret in secrets:
        assert secret not in argv
        assert secret not in caplog.text
        for path in cache_files:
            assert secret.encode() not in path.read_bytes(), path
        for req in gitlab.requests:
            assert secret not in req.target
    git_requests = [r for r in gitlab.requests if ".git/" in r.target]
    assert git_requests
    assert all(r.headers.get("Authorization") for r in git_requests)


async def test_a_forbidden_push_is_a_clear_error_and_never_fails_the_turn(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, runtime_handle: object
) -> None:
    gitlab.push_forbidden = True
    project = make_project()
    with pytest.raises(GitSyncError) as info:
        await git_sync.sync(project, workspace, CommitMessage("x"))
    assert info.value.code == "git_remote_refused"
    assert "403" in info.value.detail
    assert TOKEN not in str(info.value)

    progress: list[str] = []
    errors: list[str] = []

    async def on_progress(text: str) -> None:
        progress.append(text)

    async def on_error(text: str) -> None:
        errors.append(text)

    result = await sync_after_turn(
        git_sync, project, runtime_handle, TurnSummary("hi"),  # type: ignore[arg-type]
        on_progress=on_progress, on_error=on_error,
    )  # fmt: skip
    assert result is None
    assert progress == ["Committing changes to GitLab..."]
    assert len(errors) == 1
    assert errors[0].startswith("git_sync_failed: ")
    assert "403" in errors[0]


async def test_concurrent_syncs_of_one_project_are_serialised(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, tmp_path: Path
) -> None:
    project = make_project()
    await git_sync.sync(project, workspace, CommitMessage("base"))
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    (other_dir / "only.txt").write_text("other\n")
    other = DirWorkspace(other_dir)
    (workspace.root / "extra.txt").write_text("extra\n")
    results = []

    async def run(ws: DirWorkspace, subject: str) -> None:
        # force: ``other`` has no baseline (it never synced) and would be refused
        results.append(await git_sync.sync(project, ws, CommitMessage(subject), force=True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, workspace, "a")
        nursery.start_soon(run, other, "b")
    assert [r.pushed for r in results] == [True, True]
    assert gitlab.max_concurrent_pushes == 1
    repo = gitlab.by_path("amicable/demo-app")
    assert repo is not None
    log = await git_out(f"--git-dir={gitlab.repo_dir(repo)}", "log", "--format=%H %s", "main")
    shas = [line.split()[0] for line in log.splitlines()]
    assert shas[:2] == [results[1].commit_sha, results[0].commit_sha]  # linear, in order
    assert len(shas) == 3
    assert git_sync.statistics()["locks"] == 0


async def test_a_commit_pushed_by_someone_else_stays_in_history(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, tmp_path: Path
) -> None:
    project = make_project()
    first = await git_sync.sync(project, workspace, CommitMessage("first"))
    repo = gitlab.by_path("amicable/demo-app")
    assert repo is not None
    foreign = await push_foreign_commit(gitlab, repo, tmp_path, {"README.md": "hello\n"})
    (workspace.root / "src/App.tsx").write_text("changed\n")
    second = await git_sync.sync(project, workspace, CommitMessage("second"))
    assert second.pushed
    log = await git_out(f"--git-dir={gitlab.repo_dir(repo)}", "log", "--format=%H", "main")
    assert log.splitlines() == [second.commit_sha, foreign, first.commit_sha]
    # the sandbox is the source of truth: a file it does not have is removed
    assert "D\tREADME.md" in second.name_status


async def push_foreign_commit(
    gitlab: FakeGitLab, repo: object, tmp_path: Path, changes: dict[str, str | None]
) -> str:
    """Commit ``changes`` (None = delete) on main directly in the bare repo; its sha."""
    clone = tmp_path / "foreign"
    bare = str(gitlab.repo_dir(repo))  # type: ignore[arg-type]
    if clone.exists():
        await git_out("-C", str(clone), "pull", "-q", bare, "main")
    else:
        await git_out("clone", "-q", bare, str(clone))
    for rel, text in changes.items():
        target = clone / rel
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    await git_out("-C", str(clone), "add", "-A")
    await git_out(
        "-C", str(clone), "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "foreign"
    )
    await git_out("-C", str(clone), "push", "-q", bare, "HEAD:main")
    return await git_out("-C", str(clone), "rev-parse", "HEAD")


async def test_bootstrap_pushes_a_baseline_only_into_an_empty_repository(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace
) -> None:
    project = make_project()
    first = await git_sync.bootstrap_if_empty(project, workspace)
    assert first is not None
    assert first.pushed
    assert await git_sync.bootstrap_if_empty(project, workspace) is None
    repo = gitlab.by_path("amicable/demo-app")
    assert repo is not None
    message = await git_out(
        f"--git-dir={gitlab.repo_dir(repo)}", "log", "-1", "--format=%B", "main"
    )
    assert message.startswith("Bootstrap sandbox template\n\nProject Name: Demo App\n")
    assert "About: make a demo" in message
    record = await git_sync.repo_record(project.project_id)
    assert record is not None
    info = record.to_git_info()
    assert info.path_with_namespace == "amicable/demo-app"
    assert info.http_url_to_repo == f"{gitlab.base_url}/amicable/demo-app.git"
    assert record.project_fields()["gitlab_project_id"] == repo.id


async def test_symlinks_inside_the_tree_are_kept_and_escaping_ones_skipped(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace
) -> None:
    (workspace.root / "src/link.tsx").symlink_to("App.tsx")
    (workspace.root / "passwd").symlink_to("/etc/passwd")
    (workspace.root / "up").symlink_to("../../..")
    project = make_project()
    result = await git_sync.sync(project, workspace, CommitMessage("links"))
    assert result.pushed
    repo = gitlab.by_path("amicable/demo-app")
    assert repo is not None
    tree = await git_out(f"--git-dir={gitlab.repo_dir(repo)}", "ls-tree", "-r", "main")
    assert "120000 blob" in tree
    assert "src/link.tsx" in tree
    assert "passwd" not in tree
    assert "\tup" not in tree


async def test_a_push_rejected_because_the_branch_moved_is_retried_on_top(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, tmp_path: Path
) -> None:
    project = make_project()
    first = await git_sync.sync(project, workspace, CommitMessage("first"))
    repo = gitlab.by_path("amicable/demo-app")
    assert repo is not None
    foreign: list[str] = []

    async def race(_: object) -> None:
        foreign.append(await push_foreign_commit(gitlab, repo, tmp_path, {"RACE.md": "r\n"}))

    gitlab.before_push.append(race)
    (workspace.root / "src/App.tsx").write_text("mine\n")
    second = await git_sync.sync(project, workspace, CommitMessage("second"))
    assert second.pushed
    assert foreign  # the race really happened
    pushes = [r for r in gitlab.requests if r.target.endswith("service=git-receive-pack")]
    assert len(pushes) == 3  # first sync, rejected attempt, retry
    log = await git_out(f"--git-dir={gitlab.repo_dir(repo)}", "log", "--format=%H", "main")
    assert log.splitlines() == [second.commit_sha, foreign[0], first.commit_sha]
    files = await remote_files(gitlab, repo)
    assert files["src/App.tsx"] == "mine"


async def test_a_fresh_sandbox_is_restored_from_gitlab_instead_of_pushed_over_it(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, tmp_path: Path
) -> None:
    project = make_project()
    (workspace.root / ".gitignore").write_text("*.log\n")
    (workspace.root / "src/Work.tsx").write_text("the user's work\n")
    synced = await git_sync.sync(project, workspace, CommitMessage("work"))
    repo = gitlab.by_path("amicable/demo-app")
    assert repo is not None

    # the sandbox is replaced by the template (a restarted pod, a new claim)
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    (fresh_dir / "src").mkdir()
    (fresh_dir / "src/App.tsx").write_text("template app\n")
    (fresh_dir / "src/Template.tsx").write_text("template only\n")
    (fresh_dir / "debug.log").write_text("ignored by .gitignore\n")
    (fresh_dir / "node_modules").mkdir()
    (fresh_dir / "node_modules/x.js").write_text("deps\n")
    fresh = DirWorkspace(fresh_dir)

    with pytest.raises(GitSyncError) as info:
        await git_sync.sync(project, fresh, CommitMessage("would clobber"))
    assert info.value.code == "git_sync_no_baseline"
    assert "src/Work.tsx" in await remote_files(gitlab, repo)  # nothing was pushed

    restored = await git_sync.restore_if_fresh(project, fresh)
    assert restored is not None
    assert restored.remote_sha == synced.commit_sha
    assert "/src/Work.tsx" in restored.added
    assert restored.modified == ("/src/App.tsx",)
    assert restored.deleted == ("/src/Template.tsx",)
    assert (fresh_dir / "src/Work.tsx").read_text() == "the user's work\n"
    assert (fresh_dir / "src/App.tsx").read_text() == (workspace.root / "src/App.tsx").read_text()
    assert (fresh_dir / "debug.log").exists()  # ignored files stay
    assert (fresh_dir / "node_modules/x.js").exists()  # excluded files stay
    assert await git_sync.restore_if_fresh(project, fresh) is None  # it has a baseline now
    again = await git_sync.sync(project, fresh, CommitMessage("after restore"))
    # identical content; only the executable bit is lost (the runtime's file API writes
    # new files 0644 and has no chmod), so the next sync records that mode change
    assert again.name_status == "M\tscripts/run.sh"
    assert "0 insertions(+), 0 deletions(-)" in again.diff_stat


async def test_a_cancelled_sync_leaves_nothing_that_blocks_the_next_one(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, sync_config: object
) -> None:
    project = make_project()
    await git_sync.sync(project, workspace, CommitMessage("first"))
    (workspace.root / "src/App.tsx").write_text("changed\n")
    pushing = trio.Event()

    async def hang(_: object) -> None:
        pushing.set()
        await trio.sleep_forever()

    gitlab.before_push.append(hang)
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def run() -> None:
            with scope:
                await git_sync.sync(project, workspace, CommitMessage("cancelled"))

        nursery.start_soon(run)
        await pushing.wait()  # git push is in flight, the project lock held
        scope.cancel()
    assert git_sync.statistics()["locks"] == 0
    # a git killed mid-write leaves its lock file behind; the next sync must cope
    git_dir = next(sync_config.cache_dir.glob("*.git"))  # type: ignore[attr-defined]
    (git_dir / "index.lock").write_text("")
    (git_dir / "refs/heads/main.lock").write_text("")
    result = await git_sync.sync(project, workspace, CommitMessage("after cancel"))
    assert result.pushed
    assert "M\tsrc/App.tsx" in result.name_status
