"""The attacks of the isolation issue, run from inside real bubblewrap sandboxes.

A real agent (public + internal port, SQLite store), a real preview router, a real
:class:`LocalBackend` with two sandboxes, and a "host service" listening on every interface.
From sandbox A, through the runtime's exec, every way out must fail: the agent's ports, the
router, B's runtime and dev server, the host service on any of the host's addresses, the
metadata endpoint, the store, B's workspace, the cache, the user's home and the checkout,
other processes, the agent's secrets, writes through anything B or the cache reads. The
same probe must reach what a sandbox should: its own runtime, and (second test) the npm
registry, its preview through the router, and HMR.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import pytest
import trio
from amicable_agent.cli import UpOptions, run_router
from amicable_agent.config import AgentConfig
from amicable_agent.sandboxes.local.backend import LocalBackend, free_port, open_local_backend
from amicable_agent.sandboxes.local.network import read_local_addresses
from amicable_agent.sandboxes.runtime_client import open_runtime_client
from amicable_testing import ws_recv_until, ws_send
from trio_websocket import open_websocket_url, wrap_client_stream

from .conftest import NODE_CACHE, backend_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
ROUTER = str(Path(sys.executable).parent / "amicable-preview-router")
TOKEN = "resolver-token-for-the-isolation-test"
#: Planted in the agent's environment before the backend starts.
SECRETS = {
    "HASURA_GRAPHQL_ADMIN_SECRET": "hasura-admin-7c1f0e",
    "HASURA_GRAPHQL_JWT_SECRET": '{"type":"HS256","key":"jwt-key-2b9d,with-a-comma"}',
    "OPENAI_API_KEY": "sk-openai-9f8e7d6c5b4a",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-1a2b3c4d5e6f",
    "NODE_AUTH_TOKEN": "npm-token-5e4d3c",
    "ANTHROPIC_API_KEY": "sk-ant-isolation-test-0123",
}
#: Tries TCP connections from inside: prints {"host:port": "connected" | error code}.
PROBE = """
const net = require("net");
const targets = JSON.parse(process.argv[2]);
const out = {};
let left = targets.length;
for (const [host, port] of targets) {
  const key = host + ":" + port;
  const sock = net.connect({host, port, timeout: 3000});
  const done = (what) => { if (key in out) return; out[key] = what; sock.destroy();
    if (--left === 0) { console.log(JSON.stringify(out)); } };
  sock.on("connect", () => done("connected"));
  sock.on("timeout", () => done("timeout"));
  sock.on("error", (e) => done(e.code || String(e)));
}
"""


@attrs.define
class Setup:
    agent: Any
    backend: LocalBackend
    router_port: int
    data: Path


async def init(agent: Any, session_id: str) -> Any:
    """``init`` over the agent's WebSocket; the reply's data."""
    async with open_websocket_url(agent.ws) as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": session_id}})
        messages = await ws_recv_until(ws, "init", timeout_s=300)
    return messages[-1].data


@asynccontextmanager
async def running(
    tmp_path: Path, agent_factory: Callable[..., Any], **backend_overrides: Any
) -> AsyncIterator[Setup]:
    """Router, agent and an isolated backend sharing one data directory (as ``amicable up``)."""
    data = tmp_path / "data"
    internal = free_port()
    options = UpOptions(
        config=AgentConfig(host="127.0.0.1", preview_base_domain="preview.localhost"),
        preview_port=0,
        router_command=(ROUTER,),
    )
    async with trio.open_nursery() as nursery:
        router_port, _ = await nursery.start(run_router, options, internal, TOKEN)
        config = backend_config(data, isolation="bwrap", hmr_client_port=router_port)
        config = attrs.evolve(config, **backend_overrides)
        async with (
            open_local_backend(config) as backend,
            agent_factory(
                backend=backend,
                config={
                    "internal_port": internal,
                    "preview_resolver_token": TOKEN,
                    "preview_public_port": router_port,
                },
            ) as agent,
        ):
            yield Setup(agent, backend, router_port, data)
        nursery.cancel_scope.cancel()


async def host_service(
    nursery: trio.Nursery, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """A service of this machine on every interface (as PostgreSQL may be): answers "hi"."""

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"hi")

    listeners = await trio.open_tcp_listeners(0, host="::")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(answer, listeners)


async def test_a_sandbox_reaches_nothing_of_the_host_or_its_neighbours(
    tmp_path: Path, agent_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    async with running(tmp_path, agent_factory) as setup, trio.open_nursery() as nursery:
        service_port = await nursery.start(host_service, nursery)
        a = await init(setup.agent, "iso-a")
        b = await init(setup.agent, "iso-b")
        handle_a = await setup.backend.lookup(a.sandbox_id)
        handle_b = await setup.backend.lookup(b.sandbox_id)
        assert handle_a is not None
        assert handle_b is not None
        b_workspace = setup.data / "sandboxes" / b.sandbox_id / "workspace"
        cache_file = next(NODE_CACHE.glob("vite-*/node_modules/vite/package.json"))
        cache_before = cache_file.read_bytes()

        def port(url: str) -> int:
            return urlsplit(url).port or 80

        forbidden = [
            ("127.0.0.1", setup.agent.ports.public),
            ("127.0.0.1", setup.agent.ports.internal),
            ("127.0.0.1", setup.router_port),
            ("127.0.0.1", port(handle_b.runtime_url)),
            ("127.0.0.1", port(handle_b.preview_upstream)),
            ("127.0.0.1", service_port),
            ("::1", service_port),
            ("169.254.169.254", 80),
        ] + [(address, service_port) for address in read_local_addresses()]
        allowed = [("127.0.0.1", 8888), ("127.0.0.1", 3000)]  # its own runtime and dev server

        async with open_runtime_client(handle_a.runtime_url, handle_a.runtime_token) as rt:

            async def sh(command: str) -> tuple[int, str]:
                result = await rt.exec(command, timeout_s=60)
                return result.exit_code, result.stdout + result.stderr

            await rt.write_file("/probe.cjs", PROBE.encode())
            code, out = await sh(f"node probe.cjs '{json.dumps(forbidden + allowed)}'")
            assert code == 0, out
            results = json.loads(out.strip().splitlines()[-1])
            reached = [t for t, r in results.items() if r == "connected"]
            assert sorted(reached) == ["127.0.0.1:3000", "127.0.0.1:8888"], results

            # the agent's data: store, other workspaces, the cache; the home and checkout
            for path in (
                setup.data / "amicable.db",
                setup.data,
                b_workspace,
                NODE_CACHE,
                REPO / "services" / "agent",
                REPO / ".git",
                REPO / "Makefile",
                Path.home() / ".ssh",
                "/etc/shadow",
                "/amicable.db",
            ):
                code, out = await sh(f"ls -d '{path}' 2>&1")
                assert code != 0, f"{path} is visible in the sandbox: {out}"
            code, out = await sh("head -c 15 ../../../amicable.db")
            assert "SQLite" not in out
            code, out = await sh("cat /etc/passwd")
            assert out.strip().count("\n") == 0, "only the sandbox's own user"

            # other processes: only the sandbox's own PID namespace
            code, out = await sh("readlink /proc/self/ns/pid")
            assert out.strip() != os.readlink("/proc/self/ns/pid"), "its own PID namespace"
            code, out = await sh("ls -d /proc/[0-9]* | wc -l")
            assert int(out) < 50, "only its own processes"
            assert str(os.getpid()) not in (await sh("ls /proc"))[1].split()
            assert "amicable-preview-router" not in out
            code, out = await sh("ls /proc | grep -c '^[0-9]'")
            assert int(out.strip()) < 30

            # secrets: not in the environment of the runtime, its children or the dev server
            code, out = await sh("env; cat /proc/[0-9]*/environ | tr '\\0' '\\n'")
            for value in SECRETS.values():
                assert value not in out
            assert "HASURA" not in out

            # no privileges left, and the routes that keep the host out stay
            code, out = await sh("grep CapEff /proc/self/status")
            assert out.split()[-1] == "0000000000000000"
            ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin") or "/usr/sbin/ip"
            code, out = await sh(f"{ip} route del prohibit 169.254.169.254/32 2>&1")
            assert "Operation not permitted" in out
            assert code != 0

            # writes through anything shared: node_modules, the system, /tmp
            code, out = await sh("echo '// A was here' >> node_modules/vite/package.json")
            assert code == 0, out
            for path in ("/usr/lib/amicable-escape", "/etc/hosts", f"{sys.prefix}/escape"):
                code, _ = await sh(f"echo x >> '{path}'")
                assert code != 0, f"{path} is writable from the sandbox"
            assert (await sh("echo secret > /tmp/from-a"))[0] == 0

        assert cache_file.read_bytes() == cache_before
        assert b"A was here" not in (b_workspace / "node_modules/vite/package.json").read_bytes()
        async with open_runtime_client(handle_b.runtime_url, handle_b.runtime_token) as rt_b:
            assert (await rt_b.exec("test -e /tmp/from-a")).exit_code != 0, "/tmp is private"
        nursery.cancel_scope.cancel()


async def test_what_a_sandbox_may_reach_still_works(
    tmp_path: Path, agent_factory: Callable[..., Any]
) -> None:
    """The registry (npm install), the preview through the router, HMR."""
    async with running(tmp_path, agent_factory) as setup:
        reply = await init(setup.agent, "iso-ok")
        handle = await setup.backend.lookup(reply.sandbox_id)
        assert handle is not None
        async with open_runtime_client(handle.runtime_url, handle.runtime_token) as rt:
            if await _registry_reachable():
                installed = await rt.exec(
                    "npm install --no-audit --no-fund left-pad@1.3.0", timeout_s=300
                )
                assert installed.exit_code == 0, installed.stdout + installed.stderr
                assert (await rt.read_file("/node_modules/left-pad/package.json"))[0]

            host = urlsplit(reply.url).netloc
            base = f"http://127.0.0.1:{setup.router_port}"
            async with httpx.AsyncClient(base_url=base, headers={"Host": host}, timeout=30) as web:
                page = await web.get("/", headers={"Accept": "text/html"})
                assert page.status_code == 200
                assert "/@vite/client" in page.text
                client_js = (await web.get("/@vite/client")).text
                assert (await web.get("/src/App.tsx")).status_code == 200
            token = re.search(r'wsToken\s*=\s*"([^"]+)"', client_js)
            query = f"?token={token.group(1)}" if token else ""
            async with trio.open_nursery() as nursery:
                stream = await trio.open_tcp_stream("127.0.0.1", setup.router_port)
                ws = await wrap_client_stream(nursery, stream, host, f"/{query}",
                                              subprotocols=["vite-hmr"])  # fmt: skip
                with trio.fail_after(60):
                    assert json.loads(await ws.get_message())["type"] == "connected"
                    app = (await rt.read_file("/src/App.tsx"))[0].decode()
                    edited = app.replace("Your app starts here", f"Edited {uuid.uuid4().hex}")
                    await rt.write_file("/src/App.tsx", edited.encode())
                    message: dict[str, Any] = {}
                    while message.get("type") not in ("update", "full-reload"):
                        message = json.loads(await ws.get_message())
                await ws.aclose()
                await stream.aclose()


async def _registry_reachable() -> bool:
    """Whether this machine reaches the npm registry (the sandbox should, then)."""
    registry = "https://registry.npmjs.org/"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            return (await client.get(registry)).status_code < 500
    except httpx.HTTPError:
        return False
