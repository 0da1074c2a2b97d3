"""The model's DB tools: validation, and create/truncate/drop against the fake Hasura with the
result used through the ``/db/apps/<id>/graphql`` proxy with the app's JWT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.db import AppDatabase, AppDbInfo, app_schema_name, open_app_database
from amicable_agent.db.sql import quote_ident, valid_ident
from amicable_agent.db.tools import (
    AppDbTools,
    Column,
    DbToolInputError,
    create_table_sql,
    parse_create_args,
    root_fields,
)
from amicable_agent.loop.safety import describe_action, needs_approval
from amicable_agent.loop.tools import run_tool, status_line, tool_definitions
from amicable_testing.workspace_runtime import WorkspaceRuntime

from .conftest import Hasura, hasura_config, static_origins
from .test_proxy import run_proxy


def create(table: Any, *columns: dict[str, Any]) -> tuple[str, tuple[Column, ...]]:
    return parse_create_args({"table": table, "columns": list(columns)})


# --- validation ---------------------------------------------------------------------


def test_a_valid_table_becomes_safe_sql() -> None:
    table, cols = create(
        "todos",
        {"name": "title", "type": "text", "nullable": False, "default": "it's"},
        {"name": "done", "type": "boolean", "default": False},
        {"name": "n", "type": "INT", "default": -3},
        {"name": "score", "type": "double  precision", "default": 1.5},
        {"name": "at", "type": "timestamptz", "default": {"raw": "now()"}},
        {"name": "meta", "type": "jsonb"},
    )
    assert create_table_sql("app_abc", table, cols) == (
        'CREATE TABLE IF NOT EXISTS "app_abc"."todos" ("id" bigserial PRIMARY KEY, '
        "\"title\" text NOT NULL DEFAULT E'it''s', \"done\" boolean DEFAULT false, "
        '"n" integer DEFAULT (-3), "score" double precision DEFAULT 1.5, '
        '"at" timestamptz DEFAULT now(), "meta" jsonb);'
    )


@pytest.mark.parametrize(
    "table",
    ["", "Todos", "1todos", "_todos", "to-dos", "todos;drop", 'todos"', "todos\n", "t" * 64,
     "tödos", None, 3, ["todos"]],
)  # fmt: skip
def test_bad_table_names_are_refused(table: Any) -> None:
    with pytest.raises(DbToolInputError, match="invalid table name"):
        create(table)


@pytest.mark.parametrize(
    "column",
    [
        {"name": "Title", "type": "text"},
        {"name": 'a"; DROP SCHEMA amicable_meta CASCADE; --', "type": "text"},
        {"name": "title\n", "type": "text"},
        {"name": "title", "type": "varchar(10)"},
        {"name": "title", "type": "text; DROP TABLE x"},
        {"name": "title", "type": None},
        {"name": "title", "type": "text", "nullable": "no"},
        {"name": "title", "type": "text", "nulable": False},
        "title text",
    ],
)
def test_bad_columns_are_refused(column: Any) -> None:
    with pytest.raises(DbToolInputError):
        create("todos", column)


def test_id_is_reserved_and_duplicates_are_refused() -> None:
    with pytest.raises(DbToolInputError, match="id is reserved"):
        create("todos", {"name": "id", "type": "bigint"})
    with pytest.raises(DbToolInputError, match="duplicate columns: a"):
        create("todos", {"name": "a", "type": "text"}, {"name": "a", "type": "date"})
    with pytest.raises(DbToolInputError, match="columns must be a list"):
        parse_create_args({"table": "todos", "columns": "title text"})


@pytest.mark.parametrize(
    ("type_", "default", "message"),
    [
        ("timestamptz", {"raw": "now()); DROP SCHEMA amicable_meta CASCADE; --"}, "only raw"),
        ("timestamptz", {"raw": "clock_timestamp()"}, "only raw"),
        ("timestamptz", {"raw": "now()", "extra": 1}, "a default must be"),
        ("text", {"raw": "now()"}, "now\\(\\) needs"),
        ("text", ["a"], "a default must be"),
        ("text", True, "boolean default"),
        ("text", 3, "number default"),
        ("numeric", float("nan"), "finite"),
        ("numeric", float("inf"), "finite"),
        ("text", "nul\x00byte", "NUL"),
    ],
)
def test_bad_defaults_are_refused(type_: str, default: Any, message: str) -> None:
    with pytest.raises(DbToolInputError, match=message):
        create("todos", {"name": "c", "type": type_, "default": default})


def test_string_defaults_are_quoted_whatever_they_contain() -> None:
    evil = "x'); DROP SCHEMA amicable_meta CASCADE; --\\"
    _, (col,) = create("todos", {"name": "c", "type": "text", "default": evil})
    assert col.default_sql == "E'x''); DROP SCHEMA amicable_meta CASCADE; --\\\\'"


def test_identifiers_with_a_trailing_newline_are_not_safe() -> None:
    assert not valid_ident("todos\n")
    with pytest.raises(ValueError):
        quote_ident("todos\n")


def test_destructive_db_tools_need_approval_unless_bypass() -> None:
    for name in ("db_truncate_table", "db_drop_table"):
        assert needs_approval(name, {"table": "t"}, "default", frozenset())
        assert needs_approval(name, {"table": "t"}, "accept_edits", frozenset())
        assert not needs_approval(name, {"table": "t"}, "bypass", frozenset())
        assert not needs_approval(name, {"table": "t"}, "default", frozenset(), with_db=False)
    assert not needs_approval("db_create_table", {"table": "t"}, "default", frozenset())
    assert "Drop database table todos" in describe_action("db_drop_table", {"table": "todos"})
    assert "every row of database table todos" in describe_action(
        "db_truncate_table", {"table": "todos"}
    )


def test_tool_list_and_status_lines() -> None:
    base = [t["name"] for t in tool_definitions()]
    assert base == ["ls", "read_file", "write_file", "edit_file", "glob", "grep", "execute"]
    with_db = [t["name"] for t in tool_definitions(with_db=True)]
    assert with_db == [*base, "db_create_table", "db_truncate_table", "db_drop_table"]
    assert status_line("db_create_table", {"table": "todos"}) == "Creating table todos"
    assert status_line("db_truncate_table", {"table": "todos"}) == "Emptying table todos"
    assert status_line("db_drop_table", {"table": "todos"}) == "Dropping table todos"


# --- against the fake Hasura ----------------------------------------------------------


def tools_for(db: AppDatabase, app_id: str) -> AppDbTools:
    schema = app_schema_name(app_id)
    return db.session_tools(app_id, AppDbInfo(f"/db/apps/{app_id}/graphql", schema, schema))


TODOS = {
    "table": "todos",
    "columns": [
        {"name": "title", "type": "text", "nullable": False},
        {"name": "note", "type": "text", "default": "x'); DROP TABLE todos; --"},
    ],
}


async def test_create_table_is_usable_through_the_proxy_with_the_apps_jwt(
    hasura: Hasura,
) -> None:
    async with run_proxy(hasura.config) as proxy:
        assert proxy.db is not None
        creds = await proxy.db.provisioner.ensure_app("p1")
        tools = tools_for(proxy.db, "p1")
        schema = app_schema_name("p1")
        result = await tools.run("db_create_table", TODOS)
        assert not result.is_error, result.content
        assert result.content.startswith("Created table todos with columns: id bigint")
        for field in root_fields("todos"):
            assert field in result.content
        assert hasura.fake.table_names(schema) == ["todos"]
        assert (schema, "todos") in hasura.fake.tracked
        assert hasura.fake.permissions[(schema, "todos", schema)] == {
            "select", "insert", "update", "delete"}  # fmt: skip

        add = await proxy.post(
            "p1",
            {"query": 'mutation { insert_todos_one(object: {title: "milk"}) { id title note } }'},
            key=creds.app_key,
        )
        assert add.json() == {
            "data": {"insert_todos_one": {"id": 1, "title": "milk",
                                          "note": "x'); DROP TABLE todos; --"}}
        }  # fmt: skip
        read = await proxy.post("p1", {"query": "{ todos { id title } }"}, key=creds.app_key)
        assert read.json() == {"data": {"todos": [{"id": 1, "title": "milk"}]}}

        # Creating it again changes nothing and says so; the rows stay.
        again = await tools.run("db_create_table", {"table": "todos", "columns": []})
        assert not again.is_error
        assert again.content.startswith("Table todos already existed")
        read = await proxy.post("p1", {"query": "{ todos { title } }"}, key=creds.app_key)
        assert read.json() == {"data": {"todos": [{"title": "milk"}]}}

        # Truncate keeps the table, drop removes it and its GraphQL fields.
        emptied = await tools.run("db_truncate_table", {"table": "todos"})
        assert emptied.content == "Emptied table todos: all its rows were deleted."
        read = await proxy.post("p1", {"query": "{ todos { title } }"}, key=creds.app_key)
        assert read.json() == {"data": {"todos": []}}
        dropped = await tools.run("db_drop_table", {"table": "todos"})
        assert dropped.content == "Dropped table todos and its data."
        assert hasura.fake.table_names(schema) == []
        assert (schema, "todos") not in hasura.fake.tracked
        gone = await proxy.post("p1", {"query": "{ todos { title } }"}, key=creds.app_key)
        assert "not found in type" in gone.json()["errors"][0]["message"]
        # The admin secret only ever went to the admin endpoints.
        assert all(
            "x-hasura-admin-secret" not in r.headers
            for r in hasura.fake.requests
            if r.path == "/v1/graphql"
        )


async def test_drop_and_truncate_of_a_missing_table(hasura: Hasura) -> None:
    async with open_app_database(hasura.config, origins=static_origins({})) as db:
        assert db is not None
        await db.provisioner.ensure_app("p1")
        tools = tools_for(db, "p1")
        missing = await tools.run("db_truncate_table", {"table": "nope"})
        assert missing.is_error
        assert missing.content == "Error: table nope does not exist"
        dropped = await tools.run("db_drop_table", {"table": "nope"})
        assert not dropped.is_error
        assert dropped.content == "Table nope did not exist; nothing to drop."


async def test_invalid_input_never_reaches_hasura(hasura: Hasura) -> None:
    async with open_app_database(hasura.config, origins=static_origins({})) as db:
        assert db is not None
        tools = tools_for(db, "p1")
        before = len(hasura.fake.requests)
        for name, args in [
            ("db_create_table", {"table": "x; DROP SCHEMA amicable_meta", "columns": []}),
            ("db_create_table", {"table": "t", "columns": [{"name": "id", "type": "text"}]}),
            ("db_drop_table", {"table": 'a"."b'}),
            ("db_truncate_table", {}),
        ]:
            result = await tools.run(name, args)
            assert result.is_error
            assert result.content.startswith(f"Error: invalid input for {name}: ")
        assert len(hasura.fake.requests) == before


async def test_unreachable_hasura_is_an_error_result(closed_port_url: str) -> None:
    config = hasura_config(closed_port_url, timeout_s=5.0)
    async with open_app_database(config, origins=static_origins({})) as db:
        assert db is not None
        result = await tools_for(db, "p1").run("db_create_table", TODOS)
    assert result.is_error
    assert result.content.startswith("Error: the app database is not reachable right now")


async def test_a_hasura_refusal_is_an_error_result(hasura: Hasura) -> None:
    async with open_app_database(hasura.config, origins=static_origins({})) as db:
        assert db is not None
        # No ensure_app: the schema was never created, so Postgres (the fake) refuses.
        result = await tools_for(db, "never-provisioned").run("db_create_table", TODOS)
    assert result.is_error
    assert result.content.startswith("Error: the database refused this (postgres-error")


async def test_a_call_that_cannot_finish_in_time_is_an_error_result(
    closed_port_url: str, autojump_clock: Any
) -> None:
    config = hasura_config(closed_port_url, timeout_s=5.0)
    async with open_app_database(config, origins=static_origins({})) as db:
        assert db is not None
        tools = tools_for(db, "p1")
        release = trio.Event()

        async def other_sessions_ddl(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            async with tools.lock:
                task_status.started()
                await release.wait()

        async with trio.open_nursery() as nursery:
            await nursery.start(other_sessions_ddl)
            result = await tools.run("db_drop_table", {"table": "todos"})
            release.set()
    assert result.is_error
    assert result.content.startswith("Error: db_drop_table did not finish within 15s")


async def test_db_tools_without_a_database_are_unknown(tmp_path: Path) -> None:
    outcome = await run_tool(
        WorkspaceRuntime(tmp_path), "db_create_table", TODOS, mode="default", app_db=None
    )
    assert outcome.is_error
    assert outcome.content == "Error: unknown tool 'db_create_table'"
