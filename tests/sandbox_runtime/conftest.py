"""Fixtures: a real runtime server on loopback (port 0) over a temporary workspace."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from amicable_sandbox_runtime.config import RuntimeConfig
from amicable_sandbox_runtime.server import serve

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parents[2]
NODE_CACHE = REPO / ".cache" / "node_modules"


@attrs.frozen
class Runtime:
    """A running runtime: its base URL, workspace, config and an authenticated client."""

    url: str
    port: int
    workspace: Path
    config: RuntimeConfig
    client: httpx.AsyncClient


StartRuntime = Callable[..., Awaitable[Runtime]]


@pytest.fixture
async def start_runtime(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[StartRuntime]:
    """Factory: ``await start_runtime(**config_overrides)`` starts another runtime."""
    clients: list[httpx.AsyncClient] = []

    async def start(**overrides: Any) -> Runtime:
        workspace = overrides.pop("workspace", None)
        if workspace is None:
            workspace = tmp_path / f"ws{len(clients)}"
            workspace.mkdir()
        fields: dict[str, Any] = {
            "workspace": workspace,
            "token": TOKEN,
            "host": "127.0.0.1",
            "port": 0,
            "preview_cmd": None,
            "exec_timeout_s": 60.0,
        }
        fields.update(overrides)
        config = RuntimeConfig(**fields)
        port = await nursery.start(serve, config)
        url = f"http://127.0.0.1:{port}"
        client = httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60.0)
        clients.append(client)
        return Runtime(url, port, workspace, config, client)

    yield start
    for client in clients:
        await client.aclose()


@pytest.fixture
async def runtime(start_runtime: StartRuntime) -> Runtime:
    """A runtime without a dev server over an empty workspace."""
    return await start_runtime()
