"""Fixtures: a real agent server (hypercorn on port 0) with a fake sandbox backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.server import ServerPorts, serve
from amicable_agent.testing import FakeSandboxBackend, unused_runtime_factory


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
