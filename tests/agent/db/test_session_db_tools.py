"""A session exposes its DB tools (``app_db``) exactly when its app database was prepared."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from amicable_agent.db import AppDatabase, app_schema_name, open_app_database
from amicable_agent.loop.api import app_db_of
from amicable_agent.sessions import Attachment, SessionDeps, open_session_manager
from amicable_protocol.messages import InitData
from amicable_testing import FakeSandboxBackend, MemoryStore
from amicable_testing.workspace_runtime import WorkspaceRuntime

from .conftest import Hasura, hasura_config, static_origins

TEMPLATE = Path(__file__).resolve().parents[3] / "libs/templates/src/amicable_templates/stacks/vite"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(TEMPLATE / "index.html", ws / "index.html")
    return ws


async def _session_app_db(db: AppDatabase | None, workspace: Path) -> Any:
    @asynccontextmanager
    async def runtime_factory(handle: Any) -> AsyncIterator[WorkspaceRuntime]:
        yield WorkspaceRuntime(workspace)

    deps = SessionDeps(
        store=MemoryStore(),
        backend=FakeSandboxBackend(),
        runtime_factory=runtime_factory,
        engine=None,
        preview_url=lambda label: f"http://{label}.preview.localhost/",
        db=db,
    )
    async with open_session_manager(deps) as mgr:
        session = await mgr.attach("p1", Attachment())
        reply = await session.init_reply(InitData(session_id="p1"))
        return app_db_of(session), reply


async def test_a_prepared_database_gives_the_session_db_tools(
    hasura: Hasura, workspace: Path
) -> None:
    async with open_app_database(hasura.config, origins=static_origins({})) as db:
        app_db, reply = await _session_app_db(db, workspace)
    assert reply.db_schema == app_schema_name("p1")
    assert app_db is not None
    assert (app_db.app_id, app_db.schema) == ("p1", app_schema_name("p1"))


async def test_no_database_means_no_db_tools(workspace: Path, closed_port_url: str) -> None:
    app_db, reply = await _session_app_db(None, workspace)
    assert (app_db, reply.db) == (None, None)
    down = hasura_config(closed_port_url, timeout_s=5.0)
    async with open_app_database(down, origins=static_origins({})) as db:
        app_db, reply = await _session_app_db(db, workspace)
    assert (app_db, reply.db) == (None, None)
