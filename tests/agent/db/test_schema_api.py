"""The database pane's HTTP API on a real agent, against the fake Hasura backed by a real
PostgreSQL: what ``GET /schema`` reports is what PostgreSQL holds, rows page, review flags
destructive changes, apply changes PostgreSQL and commits a migration file as a checkpoint,
hostile drafts are refused before any SQL, and a viewer reads but cannot change. A schema
intent's model call is metered like a turn's: dropped, retried and timed-out attempts count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.loop.spend import Budgets, Limits
from amicable_testing.logins import ALICE, BOB
from amicable_testing.model_script import Fault, Reply, Text
from amicable_testing.postgres import PostgresServer, postgres_available

from .pg_stack import Project, Stack, open_stack

pytestmark = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL not installed")


async def _schema(project: Project) -> dict[str, Any]:
    got = await project.client.get(project.url("schema"))
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def _draft(body: dict[str, Any]) -> dict[str, Any]:
    draft: dict[str, Any] = json.loads(json.dumps(body["schema"]))
    return draft


def _table(draft: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in draft["tables"] if t["name"] == name)
    return found


async def test_schema_reports_tables_columns_keys_defaults_and_relationships(
    project: Project,
) -> None:
    body = await _schema(project)
    assert body["db_schema"] == body["db_role"] == project.schema
    assert body["read_only"] is False
    assert len(body["version"]) == 16
    schema = body["schema"]
    assert schema["schema_name"] == project.schema
    assert [t["name"] for t in schema["tables"]] == ["customers", "orders"]
    cols = {c["name"]: c for c in _table(schema, "customers")["columns"]}
    assert list(cols) == ["id", "name", "vip", "note", "score", "created_at"]
    assert cols["id"] | {} == {"name": "id", "label": "id", "type": "bigserial",
                               "nullable": False, "is_primary": True, "default": None}  # fmt: skip
    assert (cols["name"]["type"], cols["name"]["nullable"]) == ("text", False)
    assert cols["vip"]["default"] is False
    assert cols["note"]["default"] == "it's new"
    assert cols["score"]["default"] == 7
    assert cols["created_at"] | {} == cols["created_at"] | {
        "type": "timestamp with time zone", "default": {"raw": "now()"}}  # fmt: skip
    assert schema["relationships"] == [{
        "name": "orders_customer_id_fkey", "from_table": "orders", "from_column": "customer_id",
        "to_table": "customers", "to_column": "id", "on_delete": "CASCADE",
        "on_update": "NO ACTION",
    }]  # fmt: skip
    # What GET reports, sent back unchanged, is no change at all.
    review = await project.client.post(project.url("schema/review"), json={
        "base_version": body["version"], "draft": _draft(body)})  # fmt: skip
    assert review.status_code == 200, review.text
    assert (review.json()["operations"], review.json()["destructive"]) == ([], False)


async def test_rows_page_through_a_table(project: Project) -> None:
    url = project.url("tables/customers/rows")
    first = (await project.client.get(url, params={"limit": 3})).json()
    assert (first["total"], first["limit"], first["offset"], first["has_more"]) == (7, 3, 0, True)
    assert [r["name"] for r in first["rows"]] == ["c1", "c2", "c3"]
    assert first["columns"][:2] == ["id", "name"]
    last = (await project.client.get(url, params={"limit": 3, "offset": 6})).json()
    assert ([r["name"] for r in last["rows"]], last["has_more"]) == (["c7"], False)
    for params, code in [({"limit": 0}, "invalid_request"), ({"limit": 201}, "invalid_request"),
                         ({"offset": "-1"}, "invalid_request"), ({"limit": "1;"}, "invalid_request")]:  # fmt: skip
        bad = await project.client.get(url, params=params)
        assert (bad.status_code, bad.json()["error"]) == (400, code)
    missing = await project.client.get(project.url("tables/nope/rows"))
    assert (missing.status_code, missing.json()["error"]) == (404, "unknown_table")
    hostile = await project.client.get(project.url('tables/customers";drop/rows'))
    assert (hostile.status_code, hostile.json()["error"]) == (400, "invalid_table")


async def test_review_flags_drops_and_narrowing_but_not_additions(project: Project) -> None:
    body = await _schema(project)
    draft = _draft(body)
    customers = _table(draft, "customers")
    customers["columns"].append({"name": "email", "type": "text", "nullable": True})
    customers["columns"] = [c for c in customers["columns"] if c["name"] != "note"]
    next(c for c in customers["columns"] if c["name"] == "score")["type"] = "bigint"
    orders = _table(draft, "orders")
    next(c for c in orders["columns"] if c["name"] == "total")["type"] = "integer"
    answer = await project.client.post(project.url("schema/review"), json={"draft": draft})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    kinds = {(op["kind"], op["table"], op["column"]): op["destructive"] for op in got["operations"]}
    assert kinds == {
        ("add_column", "customers", "email"): False,
        ("drop_column", "customers", "note"): True,
        ("alter_column_type", "customers", "score"): False,  # integer -> bigint widens
        ("alter_column_type", "orders", "total"): True,  # numeric -> integer narrows
    }
    assert got["destructive"] is True
    assert got["review"]["destructive"] is True
    assert len(got["destructive_details"]) == 2
    assert (
        f'ALTER TABLE "{project.schema}"."customers" ADD COLUMN "email" text;'
        in (got["sql_preview"])
    )
    assert got["base_version"] == body["version"]
    draft["tables"] = [t for t in draft["tables"] if t["name"] != "orders"]
    draft["relationships"] = []
    dropped = await project.client.post(project.url("schema/review"), json={"draft": draft})
    assert [op["kind"] for op in dropped.json()["operations"] if op["destructive"]] == [
        "drop_column", "drop_table"]  # fmt: skip


async def test_apply_adds_the_column_in_postgres_and_commits_a_migration(
    stack: Stack, project: Project
) -> None:
    body = await _schema(project)
    draft = _draft(body)
    _table(draft, "customers")["columns"].append(
        {"name": "email", "type": "text", "nullable": False, "default": "x'); DROP TABLE y; --"}
    )
    draft["tables"].append({"name": "products", "columns": [
        {"name": "title", "type": "string", "nullable": False},
        {"name": "price", "type": "numeric", "default": 9.5}]})  # fmt: skip
    done = await project.client.post(project.url("schema/apply"), json={
        "base_version": body["version"], "draft": draft})  # fmt: skip
    assert done.status_code == 200, done.text
    got = done.json()
    assert got["applied"] is True
    assert got["new_version"] != body["version"]
    assert stack.sql(
        "SELECT column_name, data_type, is_nullable, column_default FROM "
        f"information_schema.columns WHERE table_schema = '{project.schema}' AND "
        "table_name = 'customers' AND column_name = 'email'"
    ) == [("email", "text", "NO", "'x''); DROP TABLE y; --'::text")]
    assert stack.sql(f"SELECT count(*), min(email) FROM {project.schema}.customers") == [
        (7, "x'); DROP TABLE y; --")]  # fmt: skip
    assert [t["name"] for t in got["schema"]["tables"]] == ["customers", "orders", "products"]
    # The migration file is in the project, committed as a checkpoint.
    [path] = got["migration_files"]
    assert path.startswith("/db/migrations/")
    assert path.endswith(".sql")
    root = next(stack.workspaces.iterdir())
    text = (root / path.lstrip("/")).read_text()
    assert 'ADD COLUMN "email" text NOT NULL DEFAULT' in text
    assert 'CREATE TABLE "' in text
    assert got["checkpoint"]["title"].startswith("Database schema update")
    log = await trio.run_process(["git", "--git-dir", str(root / ".git"), "log", "--format=%s",
                                  "--name-only", "-1"], capture_stdout=True)  # fmt: skip
    assert path.lstrip("/") in log.stdout.decode()
    # An old base version now conflicts.
    again = await project.client.post(project.url("schema/apply"), json={
        "base_version": body["version"], "draft": draft})  # fmt: skip
    assert again.status_code == 409
    assert again.json()["error"] == "version_conflict"
    assert again.json()["current_version"] == got["new_version"]


async def test_destructive_apply_needs_confirmation(stack: Stack, project: Project) -> None:
    draft = _draft(await _schema(project))
    customers = _table(draft, "customers")
    customers["columns"] = [c for c in customers["columns"] if c["name"] != "note"]
    refused = await project.client.post(project.url("schema/apply"), json={"draft": draft})
    assert refused.status_code == 409
    body = refused.json()
    assert body["error"] == "destructive_confirmation_required"
    assert body["destructive"] is True
    assert body["destructive_details"] == ["Drop column customers.note and its data"]
    assert "note" in {c[0] for c in stack.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'customers'")}  # fmt: skip
    done = await project.client.post(project.url("schema/apply"), json={
        "draft": draft, "confirm_destructive": True})  # fmt: skip
    assert done.status_code == 200, done.text
    assert "note" not in {c[0] for c in stack.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'customers'")}  # fmt: skip
    bad = await project.client.post(project.url("schema/apply"), json={
        "draft": draft, "confirm_destructive": "yes"})  # fmt: skip
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")


def _hostile_drafts(draft: dict[str, Any], schema: str) -> list[tuple[str, dict[str, Any]]]:
    out = []

    def variant(why: str, change: Any) -> None:
        copy = json.loads(json.dumps(draft))
        change(copy)
        out.append((why, copy))

    def add_col(**col: Any) -> Any:
        return lambda d: _table(d, "customers")["columns"].append({"type": "text", **col})

    variant("table name", lambda d: d["tables"].append(
        {"name": 'x"; DROP SCHEMA amicable_meta CASCADE; --', "columns": []}))  # fmt: skip
    variant("upper case table", lambda d: d["tables"].append({"name": "Users", "columns": []}))
    variant("column name", add_col(name="a b"))
    variant("column quote", add_col(name='e"mail'))
    variant("type", add_col(name="t", type="text); DROP TABLE customers; --"))
    variant("type varchar", add_col(name="t", type="varchar(10)"))
    variant("raw default", add_col(name="t", default={"raw": "pg_sleep(10)"}))
    variant("raw default now", add_col(name="t", default={"raw": "now()); DROP TABLE x; --"}))
    variant("default object", add_col(name="t", default={"sql": "1"}))
    variant("number default on text", add_col(name="t", default=1))
    variant("schema name", lambda d: d.update(schema_name="amicable_meta"))
    variant("other app schema", lambda d: d.update(schema_name="app_000000000000"))
    variant("extra key", add_col(name="t", check="1=1"))
    variant("rule", lambda d: d["relationships"][0].update(on_delete="CASCADE; DROP TABLE x"))
    variant("relationship name", lambda d: d["relationships"][0].update(name="x y"))
    variant("dangling relationship", lambda d: d["relationships"][0].update(to_table="ghost"))
    variant("not a list", lambda d: d.update(tables="customers"))
    variant("nul", add_col(name="t", default="a\x00b"))
    return out


async def test_hostile_drafts_are_refused_with_400_and_change_nothing(
    stack: Stack, project: Project
) -> None:
    body = await _schema(project)
    for why, draft in _hostile_drafts(_draft(body), project.schema):
        for route in ("schema/review", "schema/apply"):
            got = await project.client.post(project.url(route), json={
                "draft": draft, "confirm_destructive": True})  # fmt: skip
            assert got.status_code == 400, (why, route, got.text)
            assert got.json()["error"] == "invalid_draft", (why, got.json())
            assert got.json()["detail"], why
    assert (await _schema(project))["version"] == body["version"]
    assert stack.sql("SELECT count(*) FROM amicable_meta.canary") == [(0,)]
    infinite = b'{"draft": {"tables": [{"name": "t", "columns": [{"name": "n", "type": "numeric", "default": Infinity}]}]}}'
    for raw in (b"[1,2]", b"{not json", b'{"draft": null}', b'{"base_version": "x"}', infinite):
        got = await project.client.post(
            project.url("schema/review"), content=raw, headers={"content-type": "application/json"}
        )
        assert got.status_code in (400, 409), raw
        assert got.json()["error"] in ("invalid_json", "invalid_draft", "version_conflict")


async def test_a_viewer_reads_schema_and_rows_but_cannot_change(
    stack: Stack, project: Project
) -> None:
    shared = await project.client.post(f"/api/projects/{project.pid}/members",
                                       json={"email": BOB.email, "role": "viewer"})  # fmt: skip
    assert shared.status_code in (200, 201), shared.text
    draft = _draft(await _schema(project))
    _table(draft, "customers")["columns"].append({"name": "email", "type": "text"})
    async with stack.site.signed_in(BOB) as bob:
        seen = (await bob.get(project.url("schema"))).json()
        assert seen["read_only"] is True
        assert (await bob.get(project.url("tables/customers/rows"))).json()["total"] == 7
        for route in ("schema/review", "schema/apply", "schema/intent"):
            got = await bob.post(project.url(route), json={
                "draft": draft, "confirm_destructive": True, "intent_text": "add email"})  # fmt: skip
            assert (got.status_code, got.json()["error"]) == (403, "read_only"), route
    assert "email" not in {c[0] for c in stack.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'customers'")}  # fmt: skip
    async with stack.site.client() as stranger:
        assert (await stranger.get(project.url("schema"))).status_code in (401, 404)


async def test_intent_turns_words_into_a_reviewable_draft(stack: Stack, project: Project) -> None:
    body = await _schema(project)
    proposed = _draft(body)
    _table(proposed, "customers")["columns"].append({"name": "phone", "type": "text"})
    reply = {"assistant_message": "Added a phone column.", "draft": proposed,
             "change_cards": [{"title": "Add phone", "description": "text", "kind": "add_column",
                               "risk": "low"}], "needs_clarification": False}  # fmt: skip
    stack.model.add(Reply([Text("```json\n" + json.dumps(reply) + "\n```")]))
    got = await project.client.post(project.url("schema/intent"), json={
        "base_version": body["version"], "draft": _draft(body),
        "intent_text": "customers need a phone number"})  # fmt: skip
    assert got.status_code == 200, got.text
    answer = got.json()
    assert answer["assistant_message"] == "Added a phone column."
    assert answer["change_cards"][0]["id"] == "card_1"
    assert "phone" in [c["name"] for c in _table(answer["draft"], "customers")["columns"]]
    assert "customers need a phone number" in json.dumps(stack.model.view(0))
    # Nothing is applied by an intent.
    assert (await _schema(project))["version"] == body["version"]
    # A model that proposes something hostile is refused like a person would be.
    _table(proposed, "customers")["columns"].append(
        {"name": "x", "type": "text", "default": {"raw": "pg_sleep(1)"}})  # fmt: skip
    stack.model.add(Reply([Text(json.dumps({**reply, "draft": proposed}))]))
    bad = await project.client.post(project.url("schema/intent"), json={
        "draft": _draft(body), "intent_text": "add x"})  # fmt: skip
    assert (bad.status_code, bad.json()["error"]) == (502, "intent_failed")
    empty = await project.client.post(project.url("schema/intent"), json={"draft": _draft(body)})
    assert (empty.status_code, empty.json()["error"]) == (400, "missing_intent_text")


async def test_intent_counts_in_the_budget_and_stops_when_it_is_spent(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    budgets = Budgets(project=Limits(daily_tokens=1))
    async with (
        open_stack(tmp_path, pg_server.create_database(), budgets=budgets) as stack,
        stack.site.signed_in(ALICE) as alice,
    ):
        pid = (await alice.post("/api/projects", json={"name": "B"})).json()["project_id"]
        url = f"/api/db/{pid}/schema/intent"
        body = {"draft": {"tables": [], "relationships": []}, "intent_text": "a todos table"}
        reply = {"assistant_message": "?", "needs_clarification": True,
                 "clarification_question": "Which columns?",
                 "clarification_options": ["title only", "title and done"]}  # fmt: skip
        stack.model.add(Reply([Text(json.dumps(reply))]))
        first = await alice.post(url, json=body)
        assert first.status_code == 200, first.text
        assert first.json()["needs_clarification"] is True
        assert first.json()["clarification_options"] == [
            {"id": "option_1", "label": "title only"},
            {"id": "option_2", "label": "title and done"},
        ]
        over = await alice.post(url, json=body)
        assert (over.status_code, over.json()["error"]) == (429, "budget_exceeded")
        assert len(stack.model.requests) == 1


_TODOS = {"draft": {"tables": [], "relationships": []}, "intent_text": "a todos table"}


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_an_intent_whose_model_drops_still_records_its_spend(
    tmp_path: Path, pg_server: PostgresServer, provider: str
) -> None:
    """Both attempts of an intent drop mid-stream: the 502 still leaves one usage record of
    the caller with every attempt's input tokens (Messages reports them in
    ``message_start``; Chat Completions only in the last chunk, which never came)."""
    budgets = Budgets(project=Limits(daily_tokens=1000))
    async with (
        open_stack(tmp_path, pg_server.create_database(), provider,
                   budgets=budgets, llm_max_retries=1) as stack,
        stack.site.signed_in(ALICE) as alice,
    ):  # fmt: skip
        pid = (await alice.post("/api/projects", json={"name": "D"})).json()["project_id"]
        url = f"/api/db/{pid}/schema/intent"
        drop = Fault(drop_after_events=6, reply=Reply([Text("{\"assistant_message\": \"Half")],
                                                      input_tokens=700, output_tokens=5))  # fmt: skip
        stack.model.add(drop, drop)
        failed = await alice.post(url, json=_TODOS)
        assert (failed.status_code, failed.json()["error"]) == (502, "intent_failed")
        assert len(stack.model.requests) == 2
        [(who, tokens, cost)] = stack.usage()
        assert who == ALICE.sub
        if provider == "anthropic":
            assert (tokens, cost > 0) == (1400, True)
            # The person notices: the dropped attempts used up the project's budget.
            over = await alice.post(url, json=_TODOS)
            assert (over.status_code, over.json()["error"]) == (429, "budget_exceeded")
            assert len(stack.model.requests) == 2
        else:
            assert (tokens, cost) == (0, 0.0)


async def test_an_intent_that_times_out_still_records_its_spend(
    tmp_path: Path, pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The intent's deadline cancels a model call that never finishes: what the provider
    reported before the cancel (the input tokens of ``message_start``) is recorded."""
    from amicable_agent.http import dbschema

    monkeypatch.setattr(dbschema, "INTENT_TIMEOUT_S", 1.0)
    never = trio.Event()
    async with (
        open_stack(tmp_path, pg_server.create_database()) as stack,
        stack.site.signed_in(ALICE) as alice,
    ):
        pid = (await alice.post("/api/projects", json={"name": "T"})).json()["project_id"]
        stack.model.add(Reply([Text('{"assistant_message": ')], input_tokens=900, hold=never))
        late = await alice.post(f"/api/db/{pid}/schema/intent", json=_TODOS)
        assert (late.status_code, late.json()["error"]) == (502, "intent_failed")
        assert late.json()["detail"] == "timed out"
        [(who, tokens, cost)] = stack.usage()
        assert (who, tokens, cost > 0) == (ALICE.sub, 900, True)
        never.set()


async def test_an_agent_without_a_model_answers_intents_503(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    async with (
        open_stack(tmp_path, pg_server.create_database(), model=False) as stack,
        stack.site.signed_in(ALICE) as alice,
    ):
        pid = (await alice.post("/api/projects", json={"name": "N"})).json()["project_id"]
        got = await alice.post(f"/api/db/{pid}/schema/intent", json=_TODOS)
        assert (got.status_code, got.json()["error"]) == (503, "model_unavailable")
        assert (await alice.get(f"/api/db/{pid}/schema")).status_code == 200
        assert stack.model.requests == []
