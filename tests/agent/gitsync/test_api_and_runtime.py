"""The ``/git`` routes over real HTTP, with a real sandbox runtime and the fake GitLab."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import trio
from amicable_agent.gitsync import GitSync, TurnSummary, open_workspace
from amicable_agent.gitsync.hooks import sync_after_turn
from amicable_agent.http import git as api_git
from amicable_agent.http.bodies import HttpError
from amicable_agent.sandboxes.base import SandboxHandle
from amicable_agent.store.sqlite import open_sqlite_store
from amicable_testing.fake_gitlab import FakeGitLab
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart import Response
from quart_trio import QuartTrio

from .conftest import remote_files


async def test_turn_sync_through_the_real_runtime_archive(
    git_sync: GitSync, gitlab: FakeGitLab, runtime_handle: SandboxHandle, workspace_dir: Path
) -> None:
    project = SimpleNamespace(project_id="p-real", name="Real", slug="real")
    seen: list[str] = []

    async def note(text: str) -> None:
        seen.append(text)

    result = await sync_after_turn(
        git_sync, project, runtime_handle, TurnSummary("Build it", qa="failed", qa_detail="tsc: 1 error"),  # type: ignore[arg-type]
        on_progress=note, on_error=note,
    )  # fmt: skip
    assert result is not None
    assert result.pushed
    assert seen == ["Committing changes to GitLab..."]
    repo = gitlab.by_path("amicable/real")
    assert repo is not None
    files = await remote_files(gitlab, repo)
    assert sorted(files) == [
        "index.html",
        "package.json",
        "scripts/run.sh",
        "src/App.tsx",
        "src/old.ts",
    ]
    state = json.loads((workspace_dir / ".amicable/git_state.json").read_text())
    assert state["remote_head_sha"] == result.commit_sha
    (workspace_dir / "src/old.ts").unlink()
    async with open_workspace(runtime_handle) as ws:
        second = await git_sync.sync_turn(project, ws, TurnSummary("Remove old"))  # type: ignore[arg-type]
    assert second.name_status == "D\tsrc/old.ts"


@pytest.fixture
async def api(
    nursery: trio.Nursery, git_sync: GitSync, runtime_handle: SandboxHandle, tmp_path: Path
) -> AsyncIterator[Any]:
    async with open_sqlite_store(tmp_path / "store.db") as store:
        project = await store.create_project("Api Demo", template_id="vite")

        def opener(_project: Any) -> Any:
            return open_workspace(runtime_handle)

        def make_app(sync: GitSync | None) -> QuartTrio:
            app = QuartTrio("gitsync_test")
            app.config["AMICABLE_STATE"] = SimpleNamespace(store=store)
            api_git.init_app(app, sync, opener)

            @app.errorhandler(HttpError)
            async def http_error(exc: HttpError) -> Response:
                return exc.response()

            return app

        urls = []
        for sync in (git_sync, None):
            config = HypercornConfig()
            config.bind = ["127.0.0.1:0"]
            config.accesslog = None
            binds = await nursery.start(hypercorn_serve, make_app(sync), config)
            urls.append(binds[0])
        async with httpx.AsyncClient(base_url=urls[0], timeout=60) as client:
            yield SimpleNamespace(client=client, disabled_url=urls[1], project=project)


async def test_git_routes_sync_status_pull(api: Any, gitlab: FakeGitLab) -> None:
    pid = api.project.project_id
    client: httpx.AsyncClient = api.client
    status = await client.get(f"/api/projects/{pid}/git/status")
    assert status.status_code == 200
    assert status.json() == {
        "remote_sha": None, "local_sha": None, "ahead": False,
        "baseline_present": False, "conflicts_pending": False,
    }  # fmt: skip
    pull = await client.post(f"/api/projects/{pid}/git/pull", json={})
    assert pull.status_code == 200
    assert pull.json()["error"] == "remote_branch_missing"

    sync = await client.post(
        f"/api/projects/{pid}/git/sync", json={"commit_message": "UI save: /src/App.tsx"}
    )
    assert sync.status_code == 200
    body = sync.json()
    assert body["pushed"] is True
    assert set(body) == {"pushed", "commit_sha", "diff_stat", "name_status"}
    repo = gitlab.by_path("amicable/api-demo")
    assert repo is not None
    default = await client.post(f"/api/projects/{pid}/git/sync")
    assert default.json()["pushed"] is False

    status = await client.get(f"/api/projects/{pid}/git/status")
    assert status.json()["local_sha"] == body["commit_sha"]
    assert status.json()["baseline_present"] is True
    pull = await client.post(f"/api/projects/{pid}/git/pull", json={})
    assert pull.json() == {
        "updated": False, "remote_sha": body["commit_sha"],
        "applied": {"added": [], "modified": [], "deleted": []}, "conflicts": [],
    }  # fmt: skip

    gitlab.push_forbidden = True
    (Path(str(gitlab.root)).parent / "workspace" / "x.txt").write_text("x\n")
    failed = await client.post(f"/api/projects/{pid}/git/sync", json={})
    assert failed.status_code == 200
    assert failed.json()["pushed"] is False
    assert failed.json()["commit_sha"] is None
    assert failed.json()["error"] == "git_sync_failed"
    assert "403" in failed.json()["detail"]


async def test_git_routes_errors(api: Any, gitlab: FakeGitLab) -> None:
    pid = api.project.project_id
    missing = await api.client.post("/api/projects/no-such-project/git/sync", json={})
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    bad = await api.client.post(f"/api/projects/{pid}/git/sync", json={"commit_message": 3})
    assert bad.status_code == 400
    async with httpx.AsyncClient(base_url=api.disabled_url) as other:
        disabled = await other.post(f"/api/projects/{pid}/git/sync", json={})
    assert disabled.status_code == 409
    assert disabled.json()["error"] == "git_sync_disabled"
    await api.client.post(f"/api/projects/{pid}/git/sync", json={})
    (gitlab.root.parent / "workspace" / ".amicable" / "git_state.json").unlink()
    no_base = await api.client.post(f"/api/projects/{pid}/git/pull", json={})
    assert no_base.status_code == 409
    assert no_base.json()["error"] == "git_pull_no_baseline"
    assert no_base.json()["remote_sha"]
    (gitlab.root.parent / "workspace" / "new.txt").write_text("n\n")
    guarded = await api.client.post(f"/api/projects/{pid}/git/sync", json={})
    assert guarded.json()["error"] == "git_sync_failed"
    assert "never synced" in guarded.json()["detail"]
    forced = await api.client.post(f"/api/projects/{pid}/git/sync", json={"force": True})
    assert forced.json()["pushed"] is True
    gitlab.token = "rotated"  # GitLab now refuses our token
    refused = await api.client.get(f"/api/projects/{pid}/git/status")
    assert refused.status_code == 502
    assert refused.json()["error"] == "gitlab_error"


class _Backend:
    """Just enough SandboxBackend for the default opener: ``ensure`` returns the runtime."""

    def __init__(self, handle: SandboxHandle, fail: bool = False) -> None:
        self.handle = handle
        self.fail = fail
        self.ensured: list[str] = []

    async def ensure(self, session_id: str, *, project_id: str, template_id: str) -> SandboxHandle:
        await trio.lowlevel.checkpoint()
        if self.fail:
            from amicable_agent.errors import SandboxProvisionError

            raise SandboxProvisionError("no capacity")
        self.ensured.append(project_id)
        return self.handle


async def test_the_default_opener_provisions_through_the_backend(
    nursery: trio.Nursery, git_sync: GitSync, runtime_handle: SandboxHandle, tmp_path: Path
) -> None:
    async with open_sqlite_store(tmp_path / "store.db") as store:
        project = await store.create_project("Opener", template_id="vite")
        backends = [_Backend(runtime_handle), _Backend(runtime_handle, fail=True)]
        urls = []
        for backend in backends:
            app = QuartTrio("gitsync_default_opener")
            manager = SimpleNamespace(
                get=lambda _pid: None, deps=SimpleNamespace(provision_timeout_s=60)
            )
            app.config["AMICABLE_STATE"] = SimpleNamespace(
                store=store, manager=manager, backend=backend
            )
            api_git.init_app(app, git_sync)

            @app.errorhandler(HttpError)
            async def http_error(exc: HttpError) -> Response:
                return exc.response()

            config = HypercornConfig()
            config.bind = ["127.0.0.1:0"]
            config.accesslog = None
            urls.append((await nursery.start(hypercorn_serve, app, config))[0])
        async with httpx.AsyncClient(timeout=60) as client:
            ok = await client.post(f"{urls[0]}/api/projects/{project.project_id}/git/sync")
            down = await client.post(f"{urls[1]}/api/projects/{project.project_id}/git/sync")
    assert ok.status_code == 200
    assert ok.json()["pushed"] is True
    assert backends[0].ensured == [project.project_id]
    assert down.status_code == 503
    assert down.json()["error"] == "sandbox_unavailable"


async def test_prepare_sandbox_bootstraps_then_restores_a_reset_sandbox(
    git_sync: GitSync, gitlab: FakeGitLab, runtime_handle: SandboxHandle, workspace_dir: Path
) -> None:
    from amicable_agent.gitsync import prepare_sandbox
    from amicable_protocol.messages import ProjectInfo

    project = ProjectInfo("p-init", "Init Demo", "init-demo", "vite", "a demo app")
    await prepare_sandbox(git_sync, project, runtime_handle)
    repo = gitlab.by_path("amicable/init-demo")
    assert repo is not None
    files = await remote_files(gitlab, repo)
    assert files["src/App.tsx"] == (workspace_dir / "src/App.tsx").read_text().strip()
    state = workspace_dir / ".amicable/git_state.json"
    baseline = json.loads(state.read_text())["remote_head_sha"]
    assert baseline

    await prepare_sandbox(git_sync, project, runtime_handle)  # nothing to do
    assert json.loads(state.read_text())["remote_head_sha"] == baseline

    # the pod restarts: template files, no baseline
    state.unlink()
    (workspace_dir / "src/App.tsx").write_text("template\n")
    (workspace_dir / "src/old.ts").unlink()
    await prepare_sandbox(git_sync, project, runtime_handle)
    assert (workspace_dir / "src/App.tsx").read_text() != "template\n"
    assert (workspace_dir / "src/old.ts").exists()
    assert json.loads(state.read_text())["remote_head_sha"] == baseline
    log = await git_out_log(gitlab, repo)
    assert len(log) == 1  # restoring pushed nothing


async def git_out_log(gitlab: FakeGitLab, repo: Any) -> list[str]:
    from .conftest import git_out

    out = await git_out(f"--git-dir={gitlab.repo_dir(repo)}", "log", "--format=%s", "main")
    return out.splitlines()
