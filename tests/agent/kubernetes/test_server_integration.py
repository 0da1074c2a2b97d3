"""The Kubernetes backend through the real agent server.

The agent is configured exactly as ``amicable-agent`` does it (``AgentConfig.from_env`` and
``KubernetesBackendConfig.from_env`` from one environment, ``serve(config, kube_config=…)``),
with a kubeconfig file pointing the real ``kubernetes`` client at the fake API server, and the
service-host template pointing the runtime probe at a real ``amicable-sandbox-runtime
--no-preview`` process on loopback that expects the claim's derived token.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import yaml
from amicable_agent.config import AgentConfig
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.kubernetes.backend import (
    KubernetesBackendConfig,
    derive_runtime_token,
)
from amicable_agent.sandboxes.kubernetes.objects import parse_time
from amicable_agent.server import ServerPorts, serve
from amicable_testing import ws_expect_close, ws_recv, ws_recv_until, ws_send
from amicable_testing.fake_kube import CLAIMS, SANDBOXES, FakeKube
from trio_websocket import open_websocket_url

NS = "sandboxes"
TEMPLATE = "amicable-sandbox-vite"
SECRET = "integration-secret"
RESOLVER_TOKEN = "resolver-token"
IDLE_TTL_S = 900


@attrs.frozen
class KubeAgent:
    """A running agent on the Kubernetes backend."""

    config: AgentConfig
    kube_config: KubernetesBackendConfig
    ports: ServerPorts

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ports.public}"

    @property
    def internal(self) -> str:
        return f"http://127.0.0.1:{self.ports.internal}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.ports.public}/"


def editor_init(session_id: str) -> dict[str, object]:
    return {"type": "init", "data": {"session_id": session_id, "permission_mode": "default"}}


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig whose current context is the fake API server (no credentials)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "fake", "user": {}}],
                "contexts": [
                    {"name": "fake", "context": {"cluster": "fake", "user": "fake"}},
                ],
                "current-context": "fake",
            }
        )
    )
    return path


@asynccontextmanager
async def real_runtime(tmp_path: Path, token: str) -> AsyncIterator[int]:
    """``amicable-sandbox-runtime --no-preview`` on a free loopback port; yields the port."""
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    ready = tmp_path / "runtime-ready.json"
    exe = str(Path(sys.executable).parent / "amicable-sandbox-runtime")
    env = {**os.environ, "AMICABLE_RUNTIME_TOKEN": token, "AMICABLE_RUNTIME_HOST": "127.0.0.1"}
    proc = await trio.lowlevel.open_process(
        [exe, "--no-preview", "--port", "0", "--ready-file", str(ready),
         "--workspace", str(workspace)],
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        with trio.fail_after(30):
            while not ready.exists():
                assert proc.poll() is None, "the runtime exited before listening"
                await trio.sleep(0.05)
        yield int(json.loads(ready.read_text())["port"])
    finally:
        with trio.CancelScope(shield=True):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@asynccontextmanager
async def kube_agent(
    tmp_path: Path, fake: FakeKube, runtime_port: int, **env_overrides: str
) -> AsyncIterator[KubeAgent]:
    """The agent configured from env (as ``__main__`` does) on the fake cluster."""
    env = {
        "AMICABLE_SANDBOX_BACKEND": "kubernetes",
        "AMICABLE_DATA_DIR": str(tmp_path / "data"),
        "AMICABLE_PREVIEW_RESOLVER_TOKEN": RESOLVER_TOKEN,
        "AMICABLE_SANDBOX_IDLE_TTL_S": str(IDLE_TTL_S),
        "AMICABLE_RUNTIME_TOKEN_SECRET": SECRET,
        "AMICABLE_K8S_SERVICE_HOST_TEMPLATE": "127.0.0.1",
        "K8S_SANDBOX_NAMESPACE": NS,
        "K8S_SANDBOX_TEMPLATE_NAME": TEMPLATE,
        "K8S_SANDBOX_READY_TIMEOUT": "30",
        "SANDBOX_RUNTIME_PORT": str(runtime_port),
        "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", fake.url)),
        "HOSTNAME": "agent-0",
        **env_overrides,
    }
    config = attrs.evolve(AgentConfig.from_env(env), port=0, internal_port=0)
    kube_config = KubernetesBackendConfig.from_env(env)
    assert config.sandbox_backend == "kubernetes"
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(
            lambda task_status: serve(config, kube_config=kube_config, task_status=task_status)
        )
        yield KubeAgent(config, kube_config, ports)
        nursery.cancel_scope.cancel()


@pytest.fixture(autouse=True)
def _outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    # The adapter tries the in-cluster config first; make sure the kubeconfig is used.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


def stages(messages: list[Any]) -> list[str]:
    """The ``sandbox_status`` stages in order (each one once: the session frames provisioning
    with ``queued``/``ready``, the backend reports only what is between)."""
    return [m.data.stage for m in messages if str(m.type) == "sandbox_status"]


async def resolve(client: httpx.AsyncClient, agent: KubeAgent, host: str) -> httpx.Response:
    return await client.get(
        agent.internal + "/internal/preview/resolve",
        params={"host": host},
        headers={"X-Amicable-Preview-Token": RESOLVER_TOKEN},
    )


async def test_init_provisions_a_claim_resolves_the_preview_and_delete_removes_it(
    fake: FakeKube, tmp_path: Path
) -> None:
    sid = str(uuid.uuid4())
    name = sandbox_id_for(sid)
    token = derive_runtime_token(SECRET, name)
    async with (
        real_runtime(tmp_path, token) as runtime_port,
        kube_agent(tmp_path, fake, runtime_port) as agent,
        httpx.AsyncClient(timeout=10) as client,
    ):
        before = time.time()
        async with open_websocket_url(agent.ws) as ws:
            await ws_send(ws, editor_init(sid))
            msgs = await ws_recv_until(ws, "init")
            assert stages(msgs) == ["queued", "creating", "starting_runtime", "ready"]
            assert {m.data.sandbox_id for m in msgs if str(m.type) == "sandbox_status"} == {name}
            init = msgs[-1].data
            assert init.sandbox_id == name
            assert init.exists is False
            assert init.url == f"http://{init.project.slug}.preview.localhost/"
            await ws_send(ws, {"type": "ping", "data": {}})
            assert str((await ws_recv(ws)).type) == "pong"

        claim = fake.get(CLAIMS, NS, name)
        assert claim is not None
        assert claim["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "amicable",
            "amicable.dev/project-id": sid,
        }
        assert claim["metadata"]["annotations"]["amicable.dev/session-id"] == sid
        assert claim["spec"]["sandboxTemplateRef"] == {"name": TEMPLATE}
        assert claim["spec"]["env"] == [{"name": "AMICABLE_RUNTIME_TOKEN", "value": token}]
        shutdown = parse_time(claim["spec"]["lifecycle"]["shutdownTime"])
        assert shutdown is not None
        assert before + IDLE_TTL_S - 5 <= shutdown <= time.time() + IDLE_TTL_S + 5

        # the preview router's resolver answers the project's host with the claim's upstream
        resolved = await resolve(client, agent, f"{init.project.slug}.preview.localhost:8080")
        assert resolved.status_code == 200, resolved.text
        assert resolved.json() == {"sandbox_id": name, "upstream": "http://127.0.0.1:3000"}
        assert resolved.headers["X-Amicable-Sandbox-Id"] == name
        by_id = await resolve(client, agent, f"{name}.preview.localhost")
        assert by_id.json()["upstream"] == "http://127.0.0.1:3000"
        assert (await resolve(client, agent, "nobody.preview.localhost")).status_code == 404

        # the sandbox file API reaches the real runtime with the claim's derived token
        base = f"{agent.http}/api/sandbox/{sid}"
        created = await client.post(
            base + "/create", json={"path": "/hello.txt", "kind": "file", "content": "hi"}
        )
        assert created.status_code == 200, created.text
        read = await client.get(base + "/read", params={"path": "/hello.txt"})
        assert read.json()["content"] == "hi"

        deleted = await client.delete(f"{agent.http}/api/projects/{sid}")
        assert (deleted.status_code, deleted.json()) == (202, {"status": "deleting"})
        with trio.fail_after(10):
            while fake.get(CLAIMS, NS, name) is not None:
                await trio.sleep(0.02)
        assert fake.get(SANDBOXES, NS, name) is None
        assert (
            "DELETE",
            f"/apis/extensions.agents.x-k8s.io/v1alpha1/namespaces/{NS}/sandboxclaims/{name}",
        ) in [(m, t.split("?")[0]) for m, t in fake.requests]
        assert (await resolve(client, agent, f"{name}.preview.localhost")).status_code == 404


async def test_resolver_answers_the_cluster_service_name_by_default(
    fake: FakeKube, tmp_path: Path
) -> None:
    async with (
        kube_agent(tmp_path, fake, 1, AMICABLE_K8S_SERVICE_HOST_TEMPLATE="") as agent,
        httpx.AsyncClient(timeout=10) as client,
    ):
        project = (await client.post(agent.http + "/api/projects", json={"name": "Shop"})).json()
        name = sandbox_id_for(project["project_id"])
        # a claim bound by the controller (as left by an earlier agent process)
        fake.put(
            CLAIMS,
            "v1alpha1",
            NS,
            {
                "metadata": {
                    "name": name,
                    "labels": {"app.kubernetes.io/managed-by": "amicable"},
                },
                "spec": {"sandboxTemplateRef": {"name": TEMPLATE}},
            },
        )
        with trio.fail_after(10):
            while not (fake.get(CLAIMS, NS, name) or {}).get("status", {}).get("sandbox"):
                await trio.sleep(0.02)
        resolved = await resolve(client, agent, f"{project['slug']}.preview.localhost")
        assert resolved.status_code == 200, resolved.text
        assert resolved.json() == {
            "sandbox_id": name,
            "upstream": f"http://{name}.{NS}.svc.cluster.local:3000",
        }


async def test_ready_timeout_reports_failed_then_a_new_init_reconnects(
    fake: FakeKube, tmp_path: Path
) -> None:
    fake.ready_delay_s = None  # the controller never marks the Sandbox Ready
    sid = str(uuid.uuid4())
    name = sandbox_id_for(sid)
    async with (
        real_runtime(tmp_path, derive_runtime_token(SECRET, name)) as runtime_port,
        kube_agent(tmp_path, fake, runtime_port, K8S_SANDBOX_READY_TIMEOUT="3") as agent,
    ):
        async with open_websocket_url(agent.ws) as ws:
            await ws_send(ws, editor_init(sid))
            msgs = await ws_recv_until(ws, "error")
            assert stages(msgs) == ["queued", "creating", "failed"]
            failed = msgs[-2].data
            assert failed.stage == "failed"
            assert "Timed out after 3 s" in failed.message
            assert f"claim={name}" in failed.message
            assert "Ready=False (DependenciesNotReady): Pod is not ready" in failed.message
            error = msgs[-1].data
            assert error.error == "sandbox_failed"
            assert error.detail == failed.message
            # upstream semantics: a failed INIT ends with close 1011 (terminal for the editor)
            assert await ws_expect_close(ws) == 1011

        # the agent is still serving, and once the controller catches up a new INIT
        # reconnects to the claim the first attempt left behind
        fake.mark_ready(NS, name)
        async with open_websocket_url(agent.ws) as ws:
            await ws_send(ws, {"type": "ping", "data": {}})
            assert str((await ws_recv(ws)).type) == "pong"
            await ws_send(ws, editor_init(sid))
            msgs = await ws_recv_until(ws, "init")
            assert stages(msgs) == ["queued", "starting_runtime", "ready"]
            assert msgs[-1].data.sandbox_id == name
            assert msgs[-1].data.exists is True
        assert len(fake.objects(CLAIMS, NS)) == 1


async def test_a_reaped_claim_comes_back_on_the_next_init(fake: FakeKube, tmp_path: Path) -> None:
    sid = str(uuid.uuid4())
    name = sandbox_id_for(sid)
    claim_url = (
        f"{fake.url}/apis/extensions.agents.x-k8s.io/v1alpha1/namespaces/{NS}/sandboxclaims/{name}"
    )
    async with (
        real_runtime(tmp_path, derive_runtime_token(SECRET, name)) as runtime_port,
        kube_agent(tmp_path, fake, runtime_port) as agent,
        httpx.AsyncClient(timeout=10) as client,
    ):
        async with open_websocket_url(agent.ws) as ws:
            await ws_send(ws, editor_init(sid))
            await ws_recv_until(ws, "init")
        first_uid = fake.get(CLAIMS, NS, name)["metadata"]["uid"]  # type: ignore[index]
        # the idle TTL ran out while nobody was connected: the claim is deleted in the cluster
        gone = await client.request("DELETE", claim_url, json={"propagationPolicy": "Foreground"})
        assert gone.status_code == 200, gone.text
        with trio.fail_after(10):
            while fake.get(CLAIMS, NS, name) is not None:
                await trio.sleep(0.02)

        async with open_websocket_url(agent.ws) as ws:
            await ws_send(ws, editor_init(sid))
            msgs = await ws_recv_until(ws, "init")
        assert stages(msgs) == ["queued", "creating", "starting_runtime", "ready"]
        assert msgs[-1].data.sandbox_id == name
        claim = fake.get(CLAIMS, NS, name)
        assert claim is not None
        assert claim["metadata"]["uid"] != first_uid


async def test_a_live_session_survives_kubernetes_api_errors(
    fake: FakeKube, tmp_path: Path
) -> None:
    sid = str(uuid.uuid4())
    name = sandbox_id_for(sid)
    async with (
        real_runtime(tmp_path, derive_runtime_token(SECRET, name)) as runtime_port,
        kube_agent(tmp_path, fake, runtime_port) as agent,
        httpx.AsyncClient(timeout=10) as client,
    ):
        async with open_websocket_url(agent.ws) as ws:
            await ws_send(ws, editor_init(sid))
            slug = (await ws_recv_until(ws, "init"))[-1].data.project.slug
        # the API server now refuses reads and renewals (an outage, an RBAC change)
        fake.forbidden |= {(*CLAIMS, "get"), (*CLAIMS, "patch")}
        refused = len(fake.requests)

        resolved = await resolve(client, agent, f"{slug}.preview.localhost")
        assert resolved.status_code == 200, resolved.text
        assert resolved.json() == {"sandbox_id": name, "upstream": "http://127.0.0.1:3000"}
        async with open_websocket_url(agent.ws) as ws:  # an editor reload re-sends INIT
            await ws_send(ws, editor_init(sid))
            init = (await ws_recv_until(ws, "init"))[-1].data
            assert (init.sandbox_id, init.exists) == (name, True)
            await ws_send(ws, {"type": "ping", "data": {}})
            assert str((await ws_recv(ws)).type) == "pong"
        assert any(m == "GET" for m, _ in fake.requests[refused:]), "the API was asked"
