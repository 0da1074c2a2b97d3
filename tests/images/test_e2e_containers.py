"""The whole product across containers on one podman network: the agent image (container
backend on a real podman socket) hands the project the spare its warm pool started, the router
image proxies the preview to it, and a turn against the fake model (on the host's bridge
address) changes the app the preview serves."""

from __future__ import annotations

import ipaddress
import uuid
from functools import partial

import httpx
import trio
from amicable_testing import ws_recv_until, ws_send
from amicable_testing.container_backend import cleanup
from amicable_testing.fake_anthropic import FakeAnthropic, Reply, Text, ToolUse
from amicable_testing.podman import (
    agent_args,
    container_ip,
    image_ref,
    logs,
    podman,
    remove,
    run_detached,
)
from amicable_testing.podman import wait_http as wait_http_sync
from trio_websocket import open_websocket_url

RESOLVER_TOKEN = "resolver-token-for-the-test"


async def wait_http(url: str) -> httpx.Response:
    return await trio.to_thread.run_sync(partial(wait_http_sync, url, timeout=180))


async def test_init_preview_and_a_turn_across_containers(
    network: str, unique: str, podman_socket: str
) -> None:
    subnet = podman(
        "network", "inspect", "--format", "{{range .Subnets}}{{.Subnet}}{{end}}", network
    )
    hosts = list(ipaddress.ip_network(subnet).hosts())
    gateway, agent_ip = str(hosts[0]), str(hosts[-2])
    model = FakeAnthropic()
    agent, router = f"amicable-agent-{unique}", f"amicable-router-{unique}"
    args, env = agent_args(podman_socket, network)
    env |= {
        "PUBLIC_BASE_URL": f"http://{agent_ip}:8000",
        "ANTHROPIC_API_KEY": "test-key",
        "AMICABLE_PREVIEW_RESOLVER_TOKEN": RESOLVER_TOKEN,
        "AMICABLE_PREVIEW_PUBLIC_PORT": "8080",
    }
    sandbox_id = ""
    async with trio.open_nursery() as nursery:
        run_detached(
            router, image_ref("preview-router"), network=network,
            env={"AMICABLE_PREVIEW_RESOLVER_URL":
                     f"http://{agent_ip}:8001/internal/preview/resolve",
                 "AMICABLE_PREVIEW_RESOLVER_TOKEN": RESOLVER_TOKEN},
        )  # fmt: skip
        # The router's start brought the bridge (and the host's address on it) up.
        llm_url = await nursery.start(partial(model.serve, host=gateway))
        env["ANTHROPIC_BASE_URL"] = llm_url
        run_detached(agent, image_ref("agent"), "--ip", agent_ip, *args, network=network, env=env)
        try:
            assert (await wait_http(f"http://{agent_ip}:8000/healthz")).status_code == 200
            router_base = f"http://{container_ip(router, network)}:8080"
            await wait_http(f"{router_base}/healthz")
            # The agent's warm pool (AMICABLE_WARM_POOL_SIZE=1 by default) has a spare ready:
            # the init below claims that very container.
            with trio.fail_after(300):
                while "warm pool: spare" not in (agent_log := logs(agent)):
                    await trio.sleep(0.5)
            spare = agent_log.split("warm pool: spare ", 1)[1].split()[0]
            spare_id = podman("inspect", "--format", "{{.Id}}", spare)
            sid = str(uuid.uuid4())
            async with open_websocket_url(f"ws://{agent_ip}:8000/ws") as ws:
                await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
                seen = await ws_recv_until(ws, "init", timeout_s=300)
                stages = [m.data.stage for m in seen if str(m.type) == "sandbox_status"]
                assert stages[-1] == "ready", logs(agent)
                reply = seen[-1].data
                sandbox_id = str(reply.sandbox_id)
                assert podman("inspect", "--format", "{{.Id}}", sandbox_id) == spare_id
                assert "creating" not in stages, "a claimed spare: nothing created"
                host = httpx.URL(str(reply.url)).netloc.decode()
                async with httpx.AsyncClient(timeout=60) as client:
                    page = await client.get(f"{router_base}/", headers={"Host": host})
                    assert page.status_code == 200, logs(router)
                    assert "/@vite/client" in page.text
                    model.add(
                        Reply([Text("Done in a container."), ToolUse("write_file", {
                            "file_path": "/src/App.tsx",
                            "content": "export default () => <h1>From the container</h1>;\n",
                        })]),
                        Reply([Text("Done.")]),
                    )  # fmt: skip
                    await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "go"}})
                    await ws_recv_until(ws, "update_completed", timeout_s=180)
                    module = await client.get(f"{router_base}/src/App.tsx", headers={"Host": host})
                    assert module.status_code == 200
                    assert "From the container" in module.text
            assert model.requests, "the turn went to the fake model"
            assert podman("inspect", "--format", "{{.State.Running}}", sandbox_id) == "true"
        finally:
            # a graceful stop: the agent's backend removes its spares as it closes
            podman("stop", "--time", "30", agent, check=False)
            remove(router, agent)
            # the project's sandbox, any spare a killed agent left, and every volume of ours
            await trio.to_thread.run_sync(partial(cleanup, network, keep_network=True))
            nursery.cancel_scope.cancel()
