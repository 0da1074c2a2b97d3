"""Fixtures: a real agent server (hypercorn on port 0) with a fake sandbox backend."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.sandboxes.base import SandboxHandle
from amicable_agent.sandboxes.local.backend import LocalBackendConfig
from amicable_agent.server import ServerPorts, serve
from amicable_testing import FakeSandboxBackend, unused_runtime_factory
from amicable_testing.postgres import PostgresServer
from amicable_testing.workspace_runtime import WorkspaceRuntime


@attrs.define
class Agent:
    """A running agent for a test."""

    config: AgentConfig
    ports: ServerPorts
    backend: Any
    cancel: trio.CancelScope
    client: Any = None
    workspaces: Any = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ports.public}"

    @property
    def internal(self) -> str:
        return f"http://127.0.0.1:{self.ports.internal}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.ports.public}/"


def make_config(tmp_path: Path, **overrides: Any) -> AgentConfig:
    base = AgentConfig(
        host="127.0.0.1",
        port=0,
        internal_port=0,
        data_dir=tmp_path / "data",
        preview_base_domain="preview.localhost",
        preview_public_port=8123,
    )
    return attrs.evolve(base, **overrides)


@asynccontextmanager
async def run_agent(
    config: AgentConfig,
    *,
    backend: Any = None,
    engine: Any = None,
    runtime_factory: Any = unused_runtime_factory,
) -> AsyncIterator[Agent]:
    backend = backend if backend is not None else FakeSandboxBackend()
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(
            lambda task_status: serve(
                config,
                backend=backend,
                engine=engine,
                runtime_factory=runtime_factory,
                task_status=task_status,
            )
        )
        yield Agent(config, ports, backend, nursery.cancel_scope)
        nursery.cancel_scope.cancel()


@pytest.fixture
def agent_factory(tmp_path: Path) -> Callable[..., Any]:
    def factory(**kwargs: Any) -> Any:
        overrides = kwargs.pop("config", {})
        return run_agent(make_config(tmp_path, **overrides), **kwargs)

    return factory


@pytest.fixture
async def agent(agent_factory: Callable[..., Any]) -> AsyncIterator[Agent]:
    async with agent_factory() as running:
        yield running


REPO = Path(__file__).resolve().parents[3]
RUNTIME = str(Path(sys.executable).parent / "amicable-sandbox-runtime")
NODE_CACHE = REPO / ".cache" / "node_modules"


def backend_config(data_dir: Path, **overrides: Any) -> LocalBackendConfig:
    """A local backend config for tests: the real runtime, no pool or spares by default."""
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "runtime_command": (RUNTIME,),
        "warm_pool_size": 0,
        "spare_workspaces": 0,
        "cache_dir": NODE_CACHE,
    }
    base.update(overrides)
    return LocalBackendConfig(**base)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (PID 1 here does not reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def _works_under(proc: Path, root: Path) -> bool:
    try:
        if "\nState:\tZ" in (proc / "status").read_text():
            return False
        return (
            os.readlink(proc / "cwd").startswith(str(root))
            or str(root).encode() in (proc / "cmdline").read_bytes()
        )
    except OSError:
        return False


async def processes_left_under(root: Path, *, timeout_s: float = 10.0) -> list[bytes]:
    """Command lines of live processes working under ``root`` (cwd or argv), once those
    being killed have had up to ``timeout_s`` to finish exiting (a SIGKILLed process
    lingers briefly, its cmdline already empty, before it becomes a zombie)."""

    def scan() -> list[Path]:
        return [p for p in Path("/proc").iterdir() if p.name.isdigit() and _works_under(p, root)]

    with trio.move_on_after(timeout_s):
        while scan():
            await trio.sleep(0.05)
    left = []
    for proc in scan():
        try:
            left.append((proc / "cmdline").read_bytes())
        except OSError:
            continue
    return left


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (tests take a database each)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
async def api(agent_factory: Any, tmp_path: Path) -> AsyncIterator[Any]:
    """A real agent server on a fake backend whose sandboxes are in-process runtimes over
    ``tmp_path/ws/<sandbox id>``; ``.client`` is an httpx client, ``.workspaces`` the root."""
    workspaces = tmp_path / "ws"

    @asynccontextmanager
    async def factory(handle: SandboxHandle) -> AsyncIterator[WorkspaceRuntime]:
        root = workspaces / handle.sandbox_id
        root.mkdir(parents=True, exist_ok=True)
        await trio.lowlevel.checkpoint()
        yield WorkspaceRuntime(root)

    backend = FakeSandboxBackend(preview_upstream="http://127.0.0.1:41234")
    async with (
        agent_factory(
            backend=backend,
            runtime_factory=factory,
            config={"preview_resolver_token": "sekrit"},
        ) as running,
        httpx.AsyncClient(base_url=running.http, trust_env=False) as client,
    ):
        running.client = client
        running.workspaces = workspaces
        yield running
