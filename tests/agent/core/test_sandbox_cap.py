"""The global cap on running sandboxes: at the cap the least recently used idle sandbox (no
socket, no turn) is stopped to make room; only when nothing is idle is the caller refused.

Real agent (port 0), real local backend (isolated as by default), real runtime, real Vite.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from amicable_agent.auth.config import AuthConfig, Quotas
from amicable_agent.config import AgentConfig
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.local.backend import LocalBackend, open_local_backend
from amicable_agent.server import serve
from amicable_testing import ws_recv_until, ws_send
from trio_websocket import WebSocketConnection, open_websocket_url

from .conftest import backend_config

pytestmark = pytest.mark.slow


@attrs.frozen
class Running:
    port: int
    backend: LocalBackend


@pytest.fixture
async def capped(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Running]:
    data = tmp_path / "data"
    config = AgentConfig(
        host="127.0.0.1", port=0, internal_port=0, data_dir=data,
        preview_base_domain="preview.localhost", preview_public_port=8123,
        auth=AuthConfig(quotas=Quotas(running_sandboxes=2)),
    )  # fmt: skip
    async with open_local_backend(backend_config(data)) as backend:

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await serve(config, backend=backend, task_status=task_status)

        ports = await nursery.start(run)
        yield Running(int(ports.public), backend)


async def init(ws: WebSocketConnection, sid: str) -> str:
    """``init``, answered."""
    await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
    return str((await ws_recv_until(ws, "init", timeout_s=300))[-1].type)


async def open_and_leave(port: int, sid: str) -> None:
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        assert await init(ws, sid) == "init"


async def running(backend: LocalBackend, sid: str) -> bool:
    return await backend.lookup(sandbox_id_for(sid)) is not None


async def test_the_least_recently_used_idle_sandbox_makes_room(capped: Running) -> None:
    first, second, third, fourth = (str(uuid.uuid4()) for _ in range(4))
    await open_and_leave(capped.port, first)  # idle since it left
    await open_and_leave(capped.port, second)  # idle, used more recently
    assert await running(capped.backend, first)
    assert await running(capped.backend, second)

    url = f"ws://127.0.0.1:{capped.port}/"
    async with open_websocket_url(url) as ws_third:
        assert await init(ws_third, third) == "init"
        assert not await running(capped.backend, first), "the least recently used stopped"
        assert await running(capped.backend, second)
        async with open_websocket_url(url) as ws_fourth:
            assert await init(ws_fourth, fourth) == "init"
            assert not await running(capped.backend, second)
            # Two sockets attached to the two running sandboxes: nothing is idle.
            async with open_websocket_url(url) as ws_first:
                await ws_send(ws_first, {"type": "init", "data": {"session_id": first}})
                refused = (await ws_recv_until(ws_first, "error", timeout_s=60))[-1]
                assert refused.data.error == "quota_exceeded"
                assert "2 projects are open" in (refused.data.detail or "")
            assert await running(capped.backend, third)
            assert await running(capped.backend, fourth)
