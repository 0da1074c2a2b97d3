"""The optional integrations of the seed guide, wired through the real agent server:
per-app databases through Hasura (§7) and GitLab persistence. Real agent + real runtime +
fake model, a fake Hasura and a fake GitLab speaking their real wire formats (the GitLab
one with real git over smart HTTP)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.db import HasuraConfig, JwtSecret, parse_db_js
from amicable_agent.gitsync import GitSyncConfig
from amicable_agent.server import serve
from amicable_testing import FakeSandboxBackend, ws_recv_until, ws_send
from amicable_testing.fake_anthropic import Reply, Text, ToolUse
from amicable_testing.fake_gitlab import FakeGitLab
from amicable_testing.fake_hasura import FakeHasura
from trio_websocket import open_websocket_url

TOKEN = "loop-test-token-0123456789"  # the real_runtime_url fixture's token
GITLAB_TOKEN = "glpat-e2e-Secret-Token-0123"
ADMIN_SECRET = "admin-secret-for-e2e"
JWT_KEY = b"an-hs256-key-long-enough-for-the-e2e-test"
PREVIEW_PORT = 8123


@attrs.frozen
class Stack:
    http: str
    ws: str
    gitlab: FakeGitLab
    hasura: FakeHasura


@pytest.fixture
async def stack(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: Any, make_engine: Any, real_runtime_url: str
) -> Stack:
    hasura = FakeHasura(admin_secret=ADMIN_SECRET, jwt_key=JWT_KEY)
    hasura_url = await nursery.start(hasura.serve)
    gitlab = FakeGitLab(tmp_path / "gitlab", token=GITLAB_TOKEN)
    gitlab_url = await nursery.start(gitlab.serve)
    _fake, llm_url = fake_llm
    config = AgentConfig(
        host="127.0.0.1", port=0, internal_port=0, data_dir=tmp_path / "data",
        preview_base_domain="preview.localhost", preview_public_port=PREVIEW_PORT,
        hasura=HasuraConfig(
            base_url=hasura_url, admin_secret=ADMIN_SECRET, jwt_secret=JwtSecret(key=JWT_KEY),
            public_base_url="http://agent.test",
        ),
        git_sync=GitSyncConfig(
            enabled=True, token=GITLAB_TOKEN, base_url=gitlab_url,
            cache_dir=tmp_path / "git-cache",
        ),
    )  # fmt: skip
    backend = FakeSandboxBackend(runtime_url=real_runtime_url, runtime_token=TOKEN)
    engine = make_engine(llm_url, qa_enabled=False)

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(config, backend=backend, engine=engine, task_status=task_status)

    ports = await nursery.start(run)
    return Stack(
        f"http://127.0.0.1:{ports.public}", f"ws://127.0.0.1:{ports.public}/", gitlab, hasura
    )


async def _until(predicate: Any, what: str, timeout_s: float = 30) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.05)
    assert predicate(), what


async def _remote_file(gitlab: FakeGitLab, full_path: str, path: str) -> str | None:
    project = gitlab.by_path(full_path)
    if project is None:
        return None
    proc = await trio.run_process(
        ["git", f"--git-dir={gitlab.repo_dir(project)}", "show", f"main:{path}"],
        capture_stdout=True, capture_stderr=True, check=False,
        env={"PATH": os.environ["PATH"], "HOME": os.devnull, "GIT_CONFIG_GLOBAL": os.devnull},
    )  # fmt: skip
    return proc.stdout.decode() if proc.returncode == 0 else None


async def test_a_project_gets_a_database_and_a_repository_and_each_turn_is_pushed(
    stack: Stack, fake_llm: Any, workspace: Path
) -> None:
    (workspace / "index.html").write_text("<html><head></head><body></body></html>\n")
    origin = {"Origin": stack.http}
    async with httpx.AsyncClient(base_url=stack.http, headers=origin) as client:
        created = (await client.post("/api/projects", json={"name": "Todo Board"})).json()
    pid, slug = created["project_id"], created["slug"]
    full_path = f"amicable/{slug}"
    await _until(lambda: stack.gitlab.by_path(full_path) is not None, "repository created")

    fake, _ = fake_llm
    fake.add(
        Reply([ToolUse("write_file", {"file_path": "/src/Todo.tsx", "content": "todo\n"})]),
        Reply([Text("Added the board.")]),
    )  # fmt: skip
    async with open_websocket_url(stack.ws) as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": pid}})
        init = (await ws_recv_until(ws, "init"))[-1].data
        # The database: credentials injected into the sandbox, announced in INIT.
        assert init.db is not None
        assert init.db.graphql_url == f"http://agent.test/db/apps/{pid}/graphql"
        assert init.db_schema
        assert init.db_schema == init.db_role
        db_js = parse_db_js((workspace / "public" / "amicable-db.js").read_text())
        assert db_js is not None
        assert db_js["appId"] == pid
        assert '<script src="/amicable-db.js"></script>' in (workspace / "index.html").read_text()
        # The repository: announced in INIT.
        assert init.git is not None
        assert init.git.path_with_namespace == full_path
        assert init.project.gitlab_path == full_path

        await ws_send(ws, {"type": "user", "data": {"session_id": pid, "text": "add a todo board"}})
        msgs = await ws_recv_until(ws, "update_completed")
        assert msgs[-1].type == "update_completed"
        # The sync follows the turn: progress line, then the push.
        progress = await ws_recv_until(ws, "update_file")
        assert progress[-1].data.text == "Committing changes to GitLab..."

    await _until_async(lambda: _remote_file(stack.gitlab, full_path, "src/Todo.tsx"), "todo\n")
    # The database key never reaches the repository.
    assert await _remote_file(stack.gitlab, full_path, "public/amicable-db.js") is None
    log = await trio.run_process(
        ["git", f"--git-dir={stack.gitlab.repo_dir(stack.gitlab.by_path(full_path))}", "log",
         "--format=%s", "main"],
        capture_stdout=True, env={"PATH": os.environ["PATH"], "HOME": os.devnull},
    )  # fmt: skip
    assert "add a todo board" in log.stdout.decode().splitlines()[0]

    # The preview's GraphQL request goes through the agent's proxy to Hasura with a JWT.
    preview_origin = f"http://{slug}.preview.localhost:{PREVIEW_PORT}"
    body = {"query": "query { __typename }"}
    async with httpx.AsyncClient(base_url=stack.http) as client:
        denied = await client.post(
            f"/db/apps/{pid}/graphql", json=body,
            headers={"Origin": preview_origin, "x-amicable-app-key": "wrong"},
        )  # fmt: skip
        answered = await client.post(
            f"/db/apps/{pid}/graphql", json=body,
            headers={"Origin": preview_origin, "x-amicable-app-key": db_js["appKey"]},
        )  # fmt: skip
        other_origin = await client.post(
            f"/db/apps/{pid}/graphql", json=body,
            headers={"Origin": "http://evil.preview.localhost:8123",
                     "x-amicable-app-key": db_js["appKey"]},
        )  # fmt: skip
    assert denied.status_code == 403
    assert other_origin.status_code == 403
    assert answered.status_code < 500, answered.text
    graphql = [r for r in stack.hasura.requests if r.path == "/v1/graphql"]
    assert len(graphql) == 1
    assert graphql[0].headers["authorization"].startswith("Bearer ")

    # Deleting the project removes its repository and its database.
    async with httpx.AsyncClient(base_url=stack.http, headers=origin) as client:
        assert (await client.delete(f"/api/projects/{pid}")).status_code == 202
    await _until(lambda: stack.gitlab.by_path(full_path) is None, "repository deleted")


async def _until_async(fetch: Any, expected: str, timeout_s: float = 60) -> None:
    with trio.fail_after(timeout_s):
        while (value := await fetch()) != expected:
            await trio.sleep(0.1)
    assert value == expected


def test_amicable_db_js_is_never_committed() -> None:
    config = GitSyncConfig()
    assert "amicable-db.js" in config.effective_excludes
    assert "amicable-db.js" in attrs.evolve(config, excludes=("dist/",)).effective_excludes
    stacks = Path(__file__).parents[3] / "libs" / "templates" / "src" / "amicable_templates"
    gitignore = stacks / "stacks" / "vite" / ".gitignore"
    assert "public/amicable-db.js" in gitignore.read_text().splitlines()
