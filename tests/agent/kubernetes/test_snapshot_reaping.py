"""Durability on Kubernetes, end to end: the reaper deletes an idle claim on the fake API
server, its pod (and the workspace in it) is gone, and the next ``init`` gets a new claim
whose sandbox is restored from the project's snapshots, files and history byte for byte.

The agent runs as ``amicable-agent`` does (config from the environment, the real
``kubernetes`` client against the fake API server), with the LLM loop on the fake model; a
real ``amicable-sandbox-runtime --no-preview`` on loopback stands for the sandbox pod.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.loop.engine import Engine
from amicable_agent.loop.llm import LlmClient
from amicable_agent.loop.settings import LoopSettings
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.kubernetes.backend import (
    KubernetesBackendConfig,
    derive_runtime_token,
)
from amicable_agent.sandboxes.kubernetes.objects import format_time
from amicable_agent.server import serve
from amicable_testing import ws_recv_until, ws_send
from amicable_testing.fake_anthropic import FakeAnthropic, Reply, Text, ToolUse
from amicable_testing.fake_kube import CLAIMS, FakeKube
from trio_websocket import open_websocket_url

from .test_server_integration import NS, SECRET, TEMPLATE, real_runtime, write_kubeconfig


@pytest.fixture(autouse=True)
def _outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


def lay_template(workspace: Path) -> None:
    """What the sandbox image puts in a new pod's workspace (emptied in place: the runtime
    standing for the pod keeps the directory open)."""
    workspace.mkdir(exist_ok=True)
    for entry in workspace.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "App.tsx").write_text("export default () => <h1>Template</h1>;\n")
    (workspace / "src" / "App.css").write_text("h1 { color: gray }\n")
    (workspace / "package.json").write_text('{"name": "app", "private": true}\n')
    (workspace / "index.html").write_text("<div id=root></div>\n")


def project_files(root: Path) -> dict[str, bytes]:
    skip = (".git/", "node_modules/", ".amicable/")
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith(skip)
    }


@attrs.frozen
class Agent:
    port: int
    config: AgentConfig


@asynccontextmanager
async def kube_agent_with_model(
    tmp_path: Path, fake: FakeKube, runtime_port: int, llm_url: str
) -> AsyncIterator[Agent]:
    env = {
        "AMICABLE_SANDBOX_BACKEND": "kubernetes",
        "AMICABLE_DATA_DIR": str(tmp_path / "data"),
        "AMICABLE_PREVIEW_RESOLVER_TOKEN": "resolver-token",
        "AMICABLE_SANDBOX_IDLE_TTL_S": "600",
        "AMICABLE_SANDBOX_REAP_INTERVAL_S": "0.2",
        "AMICABLE_RUNTIME_TOKEN_SECRET": SECRET,
        "AMICABLE_K8S_SERVICE_HOST_TEMPLATE": "127.0.0.1",
        "K8S_SANDBOX_NAMESPACE": NS,
        "K8S_SANDBOX_TEMPLATE_NAME": TEMPLATE,
        "K8S_SANDBOX_READY_TIMEOUT": "30",
        "SANDBOX_RUNTIME_PORT": str(runtime_port),
        "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", fake.url)),
        "HOSTNAME": "agent-0",
    }
    config = attrs.evolve(AgentConfig.from_env(env), port=0, internal_port=0)
    settings = LoopSettings(
        api_key="sk-ant-test-key-123456", base_url=llm_url, llm_retry_base_s=0.01,
        llm_retry_max_s=0.05, partial_interval_s=0.0, qa_enabled=False,
    )  # fmt: skip
    engine = Engine(settings, llm=LlmClient(settings))
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(
            lambda task_status: serve(
                config,
                kube_config=KubernetesBackendConfig.from_env(env),
                engine=engine,
                task_status=task_status,
            )
        )
        yield Agent(ports.public, config)
        nursery.cancel_scope.cancel()


async def turn(ws: Any, sid: str, text: str) -> None:
    await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": text}})
    await ws_recv_until(ws, "update_completed", timeout_s=60)
    while (await ws_recv_until(ws, "trace_event", timeout_s=60))[-1].data.tool_name != "checkpoint":
        pass


def write(path: str, content: str) -> ToolUse:
    return ToolUse("write_file", {"file_path": path, "content": content})


def stored_heads(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [str(r[0]) for r in conn.execute("SELECT head_sha FROM snapshots")]


async def test_a_reaped_sandbox_is_restored_with_its_history(
    fake: FakeKube, tmp_path: Path, nursery: trio.Nursery
) -> None:
    model = FakeAnthropic()
    llm_url = await nursery.start(model.serve)
    sid = str(uuid.uuid4())
    name = sandbox_id_for(sid)
    workspace = tmp_path / "workspace"
    lay_template(workspace)
    async with (
        real_runtime(tmp_path, derive_runtime_token(SECRET, name)) as runtime_port,
        kube_agent_with_model(tmp_path, fake, runtime_port, llm_url) as agent,
        httpx.AsyncClient(timeout=10) as client,
    ):
        async with open_websocket_url(f"ws://127.0.0.1:{agent.port}/") as ws:
            await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
            await ws_recv_until(ws, "init")
            model.add(
                Reply(
                    [Text("Blue."), write("/src/App.tsx", "export default () => <h1>Blue</h1>;\n")]
                ),
                Reply([Text("Done.")]),
            )
            await turn(ws, sid, "Make it blue")
            model.add(
                Reply([
                    Text("Pages."),
                    write("/src/pages/About.tsx", "export const About = () => <p>ä</p>;\n"),
                    write("/src/App.css", ""),
                ]),
                Reply([Text("Done.")]),
            )  # fmt: skip
            await turn(ws, sid, "Add an about page, empty the css")
            head = git(workspace, "rev-parse", "HEAD").strip()
            db = agent.config.data_dir / "amicable.db"
            with trio.fail_after(30):  # the snapshot is taken in the background
                while head not in await trio.to_thread.run_sync(stored_heads, db):
                    await trio.sleep(0.05)
        want_files = project_files(workspace)
        want_log = git(workspace, "log", "--format=%H %at %ct %s", "HEAD")
        assert len(want_log.splitlines()) == 3
        assert want_files["src/App.css"] == b""

        # Nobody used the project for longer than the idle TTL: the reaper deletes the claim.
        claim_url = f"{fake.url}/apis/extensions.agents.x-k8s.io/v1alpha1/namespaces/{NS}/sandboxclaims/{name}"
        stale = {"metadata": {"annotations": {"amicable.dev/last-active": format_time(1.0)}}}
        patched = await client.patch(
            claim_url, json=stale, headers={"Content-Type": "application/merge-patch+json"}
        )
        assert patched.status_code == 200, patched.text
        with trio.fail_after(10):
            while fake.get(CLAIMS, NS, name) is not None:
                await trio.sleep(0.05)
        # ... and its pod with it: a new one starts from the sandbox image's template.
        lay_template(workspace)
        async with open_websocket_url(f"ws://127.0.0.1:{agent.port}/") as ws:
            await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
            seen = await ws_recv_until(ws, "init")
        stages = [m.data.stage for m in seen if str(m.type) == "sandbox_status"]
        assert stages == ["queued", "creating", "starting_runtime", "restoring", "ready"]
        assert seen[-1].data.exists is False
        assert project_files(workspace) == want_files
        assert git(workspace, "log", "--format=%H %at %ct %s", "HEAD") == want_log
        assert git(workspace, "status", "--porcelain") == ""
