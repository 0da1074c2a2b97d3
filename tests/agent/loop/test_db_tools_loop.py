"""The DB tools inside real turns: the fake model calls them, the engine runs them against a
fake Hasura, pauses for approval on truncate/drop, and reports failures as tool results."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from amicable_agent.db import AppDatabase, HasuraConfig, JwtSecret, open_app_database
from amicable_agent.db.tools import AppDbTools
from amicable_protocol.messages import HitlDecision, HitlResponse, HitlResponseData, UserData
from amicable_testing.fake_anthropic import Reply, Text, ToolUse
from amicable_testing.fake_hasura import FakeHasura
from amicable_testing.workspace_runtime import WorkspaceRuntime

from .conftest import PROJECT, Host, MemoryStore, error_text

ADMIN_SECRET = "admin-secret-for-loop-tests"
JWT_KEY = b"loop-tests-hs256-key-long-enough-0123"
BASE_TOOLS = ["ls", "read_file", "write_file", "edit_file", "glob", "grep", "execute"]
DB_TOOLS = ["db_create_table", "db_truncate_table", "db_drop_table"]
APP = PROJECT.project_id


@attrs.define
class DbHost(Host):
    """A test host with the optional ``app_db`` member."""

    app_db: AppDbTools | None = None


@attrs.frozen
class Db:
    fake: FakeHasura
    database: AppDatabase
    tools: AppDbTools
    schema: str


def config_for(base_url: str) -> HasuraConfig:
    return HasuraConfig(
        base_url=base_url,
        admin_secret=ADMIN_SECRET,
        jwt_secret=JwtSecret(key=JWT_KEY),
        public_base_url="http://agent.test",
        timeout_s=5.0,
    )


async def _no_origins(app_id: str) -> tuple[str, ...]:
    await trio.lowlevel.checkpoint()
    return ()


@pytest.fixture
async def db(nursery: trio.Nursery, workspace: Path) -> AsyncIterator[Db]:
    """A fake Hasura and the app's database prepared the way a session's INIT does it."""
    fake = FakeHasura(admin_secret=ADMIN_SECRET, jwt_key=JWT_KEY)
    base_url = await nursery.start(fake.serve)
    (workspace / "index.html").write_text("<html><head></head><body></body></html>\n")
    async with open_app_database(config_for(base_url), origins=_no_origins) as database:
        assert database is not None
        info = await database.prepare_session(
            APP, WorkspaceRuntime(workspace), preview_url="http://demo.preview.test/"
        )
        yield Db(fake, database, database.session_tools(APP, info), info.db_schema)


@pytest.fixture
def db_host(workspace: Path, db: Db) -> DbHost:
    return DbHost(runtime=WorkspaceRuntime(workspace), store=MemoryStore(), app_db=db.tools)


def user(text: str) -> UserData:
    return UserData(session_id="sess-1", text=text)


def results_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"]


def statuses(host: Host) -> list[str]:
    return [m.data.text for m in host.of("update_file")]  # type: ignore[union-attr]


CREATE = {"table": "todos", "columns": [{"name": "title", "type": "text", "nullable": False}]}


async def test_without_a_database_the_model_sees_the_seven_tools(
    fake_llm: Any, make_engine: Any, host: Host
) -> None:
    fake, url = fake_llm
    fake.add(Reply([Text("Hello.")]))
    await make_engine(url).run_user_turn(host, user("hi"))
    body = fake.view(0)
    assert [t["name"] for t in body["tools"]] == BASE_TOOLS
    assert "db_create_table" not in body["system"][0]["text"]
    assert "__AMICABLE_DB__" not in body["system"][0]["text"]


async def test_the_model_creates_a_table_and_the_app_can_use_it(
    fake_llm: Any, make_engine: Any, db_host: DbHost, db: Db
) -> None:
    fake, url = fake_llm
    fake.add(
        Reply([Text("Creating the table."), ToolUse("db_create_table", CREATE)]),
        Reply([Text("Done.")]),
    )
    await make_engine(url).run_user_turn(db_host, user("make a todo list"))
    first = fake.view(0)
    assert [t["name"] for t in first["tools"]] == BASE_TOOLS + DB_TOOLS
    system = first["system"][0]["text"]
    assert "db_create_table" in system
    assert "/public/amicable-db.js" in system
    (result,) = results_of(fake.view(1))
    assert result["is_error"] is False
    assert result["content"].startswith("Created table todos with columns: id bigint")
    assert "insert_todos_one" in result["content"]
    assert db.fake.table_names(db.schema) == ["todos"]
    assert db.fake.permissions[(db.schema, "todos", db.schema)] == {
        "select", "insert", "update", "delete"}  # fmt: skip
    assert "Creating table todos" in statuses(db_host)
    (start,) = db_host.traces("tool_start")
    (end,) = db_host.traces("tool_end")
    assert (start.tool_name, end.tool_name) == ("db_create_table", "db_create_table")
    assert start.input == CREATE
    assert db_host.types()[-1] == "update_completed"


async def _insert_row(db: Db) -> None:
    await db.database.client.run_sql(
        f'INSERT INTO "{db.schema}"."todos" (title) VALUES (\'milk\');'
    )


async def _rows(db: Db) -> int:
    rows = await db.database.client.run_sql(
        f'SELECT count(*) FROM "{db.schema}"."todos";', read_only=True
    )
    assert rows is not None
    return int(rows[1][0])


@pytest.mark.parametrize("tool", ["db_truncate_table", "db_drop_table"])
async def test_destructive_db_tools_wait_for_approval(
    fake_llm: Any, make_engine: Any, db_host: DbHost, db: Db, tool: str
) -> None:
    fake, url = fake_llm
    fake.add(
        Reply([Text("Setting up."), ToolUse("db_create_table", CREATE)]),
        Reply([Text("Clearing it."), ToolUse(tool, {"table": "todos"})]),
        Reply([Text("Finished.")]),
    )
    engine = make_engine(url)
    await engine.run_user_turn(db_host, user("reset the todos"))
    await _insert_row(db)
    request = db_host.of("hitl_request")[0].data
    (action,) = request.request.action_requests  # type: ignore[union-attr]
    assert (action.name, action.args) == (tool, {"table": "todos"})
    assert "todos" in action.description
    assert "update_completed" not in db_host.types()
    assert await _rows(db) == 1  # paused: nothing ran

    db_host.sent.clear()
    approve = HitlResponse((HitlDecision(type="approve"),))
    await engine.resume_hitl(
        db_host,
        HitlResponseData("sess-1", request.interrupt_id, approve),  # type: ignore[union-attr]
    )
    (result,) = results_of(fake.view(2))
    assert result["is_error"] is False
    if tool == "db_truncate_table":
        assert await _rows(db) == 0
        assert (db.schema, "todos") in db.fake.tracked
        assert "Emptying table todos" in statuses(db_host)
    else:
        assert db.fake.table_names(db.schema) == []
        assert (db.schema, "todos") not in db.fake.tracked
        assert "Dropping table todos" in statuses(db_host)
    assert db_host.types()[-1] == "update_completed"


@pytest.mark.parametrize("tool", ["db_truncate_table", "db_drop_table"])
async def test_rejected_destructive_db_tools_do_not_run(
    fake_llm: Any, make_engine: Any, db_host: DbHost, db: Db, tool: str
) -> None:
    fake, url = fake_llm
    fake.add(
        Reply([Text("Setting up."), ToolUse("db_create_table", CREATE)]),
        Reply([Text("Clearing it."), ToolUse(tool, {"table": "todos"})]),
        Reply([Text("Kept it.")]),
    )
    engine = make_engine(url)
    await engine.run_user_turn(db_host, user("reset the todos"))
    await _insert_row(db)
    interrupt_id = db_host.of("hitl_request")[0].data.interrupt_id  # type: ignore[union-attr]
    reject = HitlResponse((HitlDecision(type="reject", message="keep my data"),))
    db_host.sent.clear()
    await engine.resume_hitl(db_host, HitlResponseData("sess-1", interrupt_id, reject))
    (result,) = results_of(fake.view(2))
    assert result == {"type": "tool_result", "tool_use_id": result["tool_use_id"],
                      "content": error_text(fake, "User rejected this tool call: keep my data"),
                      "is_error": True}  # fmt: skip
    assert await _rows(db) == 1
    assert (db.schema, "todos") in db.fake.tracked
    assert [t.tool_name for t in db_host.traces("tool_start")] == []
    assert db_host.types()[-1] == "update_completed"


async def test_bypass_mode_runs_a_drop_without_asking(
    fake_llm: Any, make_engine: Any, db_host: DbHost, db: Db
) -> None:
    fake, url = fake_llm
    db_host.permission_mode = "bypass"
    fake.add(
        Reply([Text("Setting up."), ToolUse("db_create_table", CREATE)]),
        Reply([ToolUse("db_drop_table", {"table": "todos"})]),
        Reply([Text("Finished.")]),
    )
    await make_engine(url).run_user_turn(db_host, user("make and drop"))
    assert db_host.of("hitl_request") == []
    assert db.fake.table_names(db.schema) == []


async def test_unreachable_hasura_is_a_tool_error_and_the_turn_goes_on(
    fake_llm: Any, make_engine: Any, workspace: Path, db: Db
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    fake, url = fake_llm
    async with open_app_database(config_for(dead), origins=_no_origins) as down:
        assert down is not None
        tools = attrs.evolve(db.tools, provisioner=down.provisioner, client=down.client)
        host = DbHost(runtime=WorkspaceRuntime(workspace), store=MemoryStore(), app_db=tools)
        fake.add(
            Reply([ToolUse("db_create_table", CREATE)]),
            Reply([Text("The database is down; I will try later.")]),
        )
        await make_engine(url).run_user_turn(host, user("make a todo list"))
    (result,) = results_of(fake.view(1))
    assert result["is_error"] is True
    assert result["content"].startswith("Error: the app database is not reachable right now")
    (error,) = host.traces("tool_error")
    assert error.tool_name == "db_create_table"
    assert ADMIN_SECRET not in str(error.output)
    assert host.of("agent_final")[-1].data.text.endswith(  # type: ignore[union-attr]
        "The database is down; I will try later."
    )
    assert host.types()[-1] == "update_completed"
    assert host.of("error") == []


async def test_without_a_database_a_db_call_is_an_unknown_tool_not_an_approval(
    fake_llm: Any, make_engine: Any, host: Host
) -> None:
    fake, url = fake_llm
    fake.add(Reply([ToolUse("db_drop_table", {"table": "todos"})]), Reply([Text("Sorry.")]))
    await make_engine(url).run_user_turn(host, user("drop todos"))
    assert host.of("hitl_request") == []
    (result,) = results_of(fake.view(1))
    assert result["is_error"]
    assert result["content"].startswith("Error: unknown tool 'db_drop_table'. The tools are: ls,")
    assert host.types()[-1] == "update_completed"
