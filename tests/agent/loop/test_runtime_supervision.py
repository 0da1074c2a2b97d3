"""Supervision of a sandbox while an editor is attached: its runtime is killed (-9) during a
turn; the agent restarts it, the socket sees the ``sandbox_status`` stages (no reload, no
new ``init``), the tool the model called meanwhile works, and the file API and the preview
answer again.

Real agent (port 0), real LLM loop against the fake model, real local backend (isolated
as by default: bubblewrap + pasta), real runtime, real Vite.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.local.backend import (
    LocalBackend,
    LocalBackendConfig,
    open_local_backend,
)
from amicable_agent.server import serve
from amicable_testing import ws_recv_until, ws_send
from amicable_testing.fake_anthropic import Reply, Text, ToolUse
from amicable_testing.processes import process_alive
from trio_websocket import open_websocket_url

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
RUNTIME = str(Path(__import__("sys").executable).parent / "amicable-sandbox-runtime")


@attrs.frozen
class Running:
    port: int
    backend: LocalBackend
    data: Path


@pytest.fixture
async def agent(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: Any, make_engine: Any
) -> AsyncIterator[Running]:
    _fake, llm_url = fake_llm
    data = tmp_path / "data"
    config = AgentConfig(
        host="127.0.0.1", port=0, internal_port=0, data_dir=data,
        preview_base_domain="preview.localhost", preview_public_port=8123,
    )  # fmt: skip
    local = LocalBackendConfig(
        data_dir=data, runtime_command=(RUNTIME,), warm_pool_size=0, spare_workspaces=0,
        cache_dir=REPO / ".cache" / "node_modules",
    )  # fmt: skip
    async with open_local_backend(local) as backend:
        engine = make_engine(llm_url, qa_enabled=False)

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await serve(config, backend=backend, engine=engine, task_status=task_status)

        ports = await nursery.start(run)
        yield Running(int(ports.public), backend, data)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def runtime_pid(backend: LocalBackend, sandbox_id: str) -> int:
    """The host pid of the sandbox's ``amicable-sandbox-runtime`` (inside bubblewrap when
    isolated): the deepest process below the sandbox's first one that runs it."""
    top = backend.process_ids(sandbox_id)[0]
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[1])

    def depth(pid: int) -> int | None:
        hops = 0
        while pid != top:
            if pid not in parents or hops > 50:
                return None
            pid, hops = parents[pid], hops + 1
        return hops

    found = [
        (d, pid)
        for pid in parents
        if (d := depth(pid)) is not None
        and any(a.endswith("amicable-sandbox-runtime") for a in _cmdline(pid)[:2])
        and not _cmdline(pid)[0].endswith(("bwrap", "sh"))
    ]
    assert found, "no runtime process found"
    return max(found)[1]


@pytest.mark.parametrize("provider", ["anthropic"])
async def test_a_runtime_killed_while_attached_is_restarted_without_a_reload(
    agent: Running, fake_llm: Any
) -> None:
    fake, _ = fake_llm
    sid = str(uuid.uuid4())
    sandbox_id = sandbox_id_for(sid)
    workspace = agent.data / "sandboxes" / sandbox_id / "workspace"
    async with open_websocket_url(f"ws://127.0.0.1:{agent.port}/") as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        await ws_recv_until(ws, "init", timeout_s=300)
        victim = runtime_pid(agent.backend, sandbox_id)

        def kill_then_write(_body: dict[str, Any]) -> Reply:
            os.kill(victim, signal.SIGKILL)  # the tool call below meets a dead runtime
            return Reply(
                [
                    Text("Writing."),
                    ToolUse("write_file", {"file_path": "/src/after.txt", "content": "kept\n"}),
                ]
            )

        fake.add(kill_then_write, Reply([Text("Done.")]))
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "Go"}})
        msgs = await ws_recv_until(ws, "update_completed", timeout_s=300)
        if not [m for m in msgs if str(m.type) == "sandbox_status" and m.data.stage == "ready"]:
            msgs += await ws_recv_until(ws, "sandbox_status", timeout_s=300)
        stages = [m.data.stage for m in msgs if str(m.type) == "sandbox_status"]
        assert "starting_runtime" in stages, stages
        assert "ready" in stages[stages.index("starting_runtime") :], stages
        assert "failed" not in stages
        assert not [m for m in msgs if str(m.type) in ("init", "error")], "no reload"
        assert not process_alive(victim)

        results = [
            block
            for message in fake.view(1)["messages"]
            for block in (message["content"] if isinstance(message["content"], list) else [])
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]
        assert results, "the tool ran"
        assert not results[-1].get("is_error"), results[-1]
        assert (workspace / "src" / "after.txt").read_text() == "kept\n"
        assert runtime_pid(agent.backend, sandbox_id) != victim

        handle = await agent.backend.lookup(sandbox_id)
        assert handle is not None
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            read = await client.get(
                f"http://127.0.0.1:{agent.port}/api/sandbox/{sid}/read",
                params={"path": "src/after.txt"},
            )
            assert read.status_code == 200, read.text
            assert read.json()["content"] == "kept\n"
            page = await client.get(handle.preview_upstream + "/")
            assert page.status_code == 200
            assert "/@vite/client" in page.text


@pytest.mark.parametrize("provider", ["anthropic"])
async def test_the_file_api_never_gets_a_dead_runtime(agent: Running) -> None:
    sid = str(uuid.uuid4())
    sandbox_id = sandbox_id_for(sid)
    async with open_websocket_url(f"ws://127.0.0.1:{agent.port}/") as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        await ws_recv_until(ws, "init", timeout_s=300)
    victim = runtime_pid(agent.backend, sandbox_id)  # its session lives on, unattended
    os.kill(victim, signal.SIGKILL)
    async with httpx.AsyncClient(trust_env=False, timeout=120) as client:
        wrote = await client.put(
            f"http://127.0.0.1:{agent.port}/api/sandbox/{sid}/write",
            json={"path": "/src/late.txt", "content": "after the crash"},
        )
        assert wrote.status_code == 200, wrote.text
    assert not process_alive(victim)
    assert runtime_pid(agent.backend, sandbox_id) != victim
