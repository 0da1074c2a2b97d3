"""Repository lifecycle through the REST client: create, fallback paths, rename, delete."""

from __future__ import annotations

import attrs
import pytest
from amicable_agent.gitsync import (
    CommitMessage,
    GitLabApiError,
    GitSync,
    GitSyncConfig,
    GitSyncError,
)
from amicable_agent.gitsync.gitlab import open_gitlab_client
from amicable_agent.gitsync.records import REPO_STATE_KEY
from amicable_testing.fake_gitlab import FakeGitLab

from .conftest import DirWorkspace, MemoryStateStore, git_out, make_project, remote_files


async def test_a_taken_slug_falls_back_to_a_suffixed_path_and_never_adopts_a_foreign_repo(
    git_sync: GitSync, gitlab: FakeGitLab, state_store: MemoryStateStore, workspace: DirWorkspace
) -> None:
    foreign = await gitlab.add_project("demo-app", name="Demo App", description="someone else")
    project = make_project()
    record = await git_sync.project_created(project)
    assert record.gitlab_path == "amicable/demo-app-0f1e"
    created = gitlab.by_path("amicable/demo-app-0f1e")
    assert created is not None
    assert created.name == "Demo App (demo-app-0f1e)"  # names are unique per group too
    assert created.visibility == "internal"

    result = await git_sync.sync(project, workspace, CommitMessage("first"))
    assert result.pushed
    # the foreign repo stays untouched (still empty)
    assert await git_out(f"--git-dir={gitlab.repo_dir(foreign)}", "for-each-ref") == ""
    assert "package.json" in await remote_files(gitlab, created)

    # the record is lost (e.g. restored database): the repo is found again by its marker
    await state_store.save_state(project.project_id, REPO_STATE_KEY, None)
    again = await git_sync.ensure_repo(project)
    assert again.gitlab_project_id == created.id
    assert len(gitlab.projects) == 2


async def test_rename_moves_the_repository_and_later_syncs_follow(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace
) -> None:
    project = make_project()
    await git_sync.sync(project, workspace, CommitMessage("first"))
    renamed = attrs.evolve(project, name="Better Name", slug="better-name")
    record = await git_sync.project_renamed(renamed)
    assert record.gitlab_path == "amicable/better-name"
    assert gitlab.by_path("amicable/demo-app") is None
    moved = gitlab.by_path("amicable/better-name")
    assert moved is not None
    assert moved.name == "Better Name"
    (workspace.root / "new.txt").write_text("n\n")
    result = await git_sync.sync(renamed, workspace, CommitMessage("after rename"))
    assert result.pushed
    assert "new.txt" in await remote_files(gitlab, moved)


async def test_delete_removes_the_repo_and_the_clone_and_is_idempotent(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, sync_config: GitSyncConfig
) -> None:
    project = make_project()
    await git_sync.sync(project, workspace, CommitMessage("first"))
    assert any(sync_config.cache_dir.glob("*.git"))
    assert await git_sync.project_deleted(project.project_id) is True
    assert gitlab.projects == {}
    assert not any(sync_config.cache_dir.glob("*.git"))
    assert await git_sync.repo_record(project.project_id) is None
    assert await git_sync.project_deleted(project.project_id) is False


async def test_delete_of_a_repo_already_gone_on_gitlab_is_fine(
    git_sync: GitSync, gitlab: FakeGitLab
) -> None:
    project = make_project()
    record = await git_sync.project_created(project)
    async with open_gitlab_client(git_sync.config) as client:
        assert await client.delete_project(record.gitlab_project_id) is True
        assert await client.delete_project(record.gitlab_project_id) is False  # 404 ok
    assert await git_sync.project_deleted(project.project_id) is False


async def test_a_wrong_token_is_refused_by_the_api(
    gitlab: FakeGitLab, sync_config: GitSyncConfig
) -> None:
    bad = attrs.evolve(sync_config, token="wrong")
    async with open_gitlab_client(bad) as client:
        with pytest.raises(GitLabApiError) as info:
            await client.namespace_id()
    assert info.value.status == 401
    assert info.value.code == "gitlab_error"
    with pytest.raises(GitLabApiError) as missing:
        async with open_gitlab_client(attrs.evolve(sync_config, group_path="nope")) as client:
            await client.namespace_id()
    assert missing.value.status == 404


async def test_a_wrong_token_is_refused_by_git(
    git_sync: GitSync, gitlab: FakeGitLab, workspace: DirWorkspace, sync_config: GitSyncConfig
) -> None:
    project = make_project()
    await git_sync.project_created(project)  # the repo exists; now git itself must refuse
    gitlab.token = "rotated"
    async with open_gitlab_client(attrs.evolve(sync_config, token="rotated")) as client:
        bad_sync = GitSync(attrs.evolve(sync_config, token="stale"), client, git_sync._store)
        with pytest.raises(GitSyncError) as info:
            await bad_sync.sync(project, workspace, CommitMessage("x"))
    assert info.value.code == "git_remote_refused"
    assert "401" in str(info.value)
