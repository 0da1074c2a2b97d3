"""The agent on the fake Hasura backed by a real PostgreSQL, for the database pane's API
tests: :func:`open_stack` and the ``stack`` / ``project`` fixtures (``conftest.py``)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import psycopg
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.loop.engine import Engine
from amicable_agent.loop.llm import LlmClient
from amicable_agent.loop.settings import LoopSettings
from amicable_agent.sandboxes.base import SandboxHandle
from amicable_agent.server import serve
from amicable_testing import FakeSandboxBackend, StubEngine
from amicable_testing.fake_anthropic import FakeAnthropic
from amicable_testing.fake_hasura import FakeHasura
from amicable_testing.fake_oidc import open_fake_oidc
from amicable_testing.fake_openai import FakeOpenAI
from amicable_testing.logins import ALICE, BOB, CLIENT_ID, CLIENT_SECRET, Site, oidc_config
from amicable_testing.model_script import ScriptedServer
from amicable_testing.workspace_runtime import WorkspaceRuntime

from .conftest import ADMIN_SECRET, JWT_KEY, hasura_config


@attrs.define
class Stack:
    site: Site
    pg_url: str
    workspaces: Path
    model: ScriptedServer
    store_path: Path

    def usage(self) -> list[tuple[str, int, float]]:
        """The agent's usage records of schema intents: ``(user, input tokens, cost)``."""
        with sqlite3.connect(self.store_path) as conn:
            rows = conn.execute(
                "SELECT user_sub, input_tokens, cost_usd FROM usage_records "
                "WHERE turn_id LIKE 'schema-intent-%' ORDER BY seq"
            ).fetchall()
        conn.close()
        return [(str(r[0]), int(r[1]), float(r[2])) for r in rows]

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            cur = conn.execute(query.encode())
            while cur.nextset():
                pass
            return cur.fetchall() if cur.description is not None else []


@asynccontextmanager
async def open_stack(
    tmp_path: Path, pg_url: str, provider: str = "anthropic", *, model: bool = True, **loop: Any
) -> AsyncIterator[Stack]:
    workspaces = tmp_path / "ws"

    @asynccontextmanager
    async def runtimes(handle: SandboxHandle) -> AsyncIterator[WorkspaceRuntime]:
        root = workspaces / handle.sandbox_id
        root.mkdir(parents=True, exist_ok=True)
        await trio.lowlevel.checkpoint()
        yield WorkspaceRuntime(root)

    async with trio.open_nursery() as nursery:
        fake: ScriptedServer = FakeAnthropic() if provider == "anthropic" else FakeOpenAI()
        model_url = await nursery.start(fake.serve)
        name = "claude-sonnet-5-5" if provider == "anthropic" else "gpt-4.1"
        settings = LoopSettings(provider=provider, model=name,
                                api_key="sk-ant-test-key-123456", base_url=model_url,
                                llm_retry_base_s=0.01, llm_retry_max_s=0.05, qa_enabled=False,
                                **loop)  # fmt: skip
        engine = Engine(settings, llm=LlmClient(settings)) if model else StubEngine()
        hasura = FakeHasura(admin_secret=ADMIN_SECRET, jwt_key=JWT_KEY, postgres_url=pg_url)
        hasura_url = await nursery.start(hasura.serve)
        async with open_fake_oidc(
            clients={CLIENT_ID: (CLIENT_SECRET, [])}, users=[ALICE, BOB]
        ) as oidc:
            config = AgentConfig(
                host="127.0.0.1", port=0, internal_port=0, data_dir=tmp_path / "data",
                preview_base_domain="preview.localhost", preview_public_port=8123,
                hasura=hasura_config(hasura_url), auth=oidc_config(oidc.issuer),
            )  # fmt: skip
            ports = await nursery.start(
                lambda task_status: serve(config, backend=FakeSandboxBackend(), engine=engine,
                                          runtime_factory=runtimes, task_status=task_status)
            )  # fmt: skip
            http = f"http://localhost:{ports.public}"
            oidc.register_client(CLIENT_ID, CLIENT_SECRET, [f"{http}/auth/callback"])
            yield Stack(Site(http, oidc), pg_url, workspaces, fake, config.sqlite_path)
            nursery.cancel_scope.cancel()
        if isinstance(engine, Engine):
            await engine.aclose()


@attrs.define
class Project:
    pid: str
    schema: str
    client: httpx.AsyncClient

    def url(self, tail: str) -> str:
        return f"/api/db/{self.pid}/{tail}"
