"""The Database pane in real Chromium against `amicable up`, the fake model and the fake
Hasura backed by a real PostgreSQL: a table the model creates with its DB tool appears in
the pane, a column added through review/apply exists in PostgreSQL (and its migration file
in the project), the owner adds, edits and deletes rows and PostgreSQL holds them, a
destructive change is not applied without confirmation, hostile drafts through the HTTP API
are refused, and restoring the checkpoint before the schema change rolls the column back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from amicable_testing.fake_anthropic import Reply, Text, ToolUse
from amicable_testing.fake_hasura import FakeHasura
from amicable_testing.postgres import PostgresServer, postgres_available
from conftest import PREVIEW_TIMEOUT_MS, AmicableUp, screenshot
from playwright.sync_api import expect

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL not installed"),
]

ADMIN_SECRET = "e2e-admin-secret"
JWT_KEY = b"an-hs256-key-long-enough-for-the-db-e2e"
ORDERS = {
    "table": "orders",
    "columns": [
        {"name": "item", "type": "text", "nullable": False},
        {"name": "qty", "type": "integer", "default": 1},
    ],
}


def respond(body: dict[str, Any]) -> Reply:
    """The scripted model: create the orders table when asked, then say so."""
    content = (body.get("messages") or [{"content": ""}])[-1].get("content", "")
    if isinstance(content, list) and any(b.get("type") == "tool_result" for b in content):
        return Reply([Text("The orders table is ready.")])
    return Reply([Text("Creating the table."), ToolUse("db_create_table", ORDERS)])


class DbStack(AmicableUp):
    """`amicable up` with HASURA_BASE_URL pointing at a fake Hasura on real PostgreSQL."""

    def __init__(self, data_dir: Path, pg_url: str) -> None:
        super().__init__(data_dir, respond, services=self._hasura)
        self.pg_url = pg_url

    async def _hasura(self, nursery: trio.Nursery) -> dict[str, str]:
        hasura = FakeHasura(admin_secret=ADMIN_SECRET, jwt_key=JWT_KEY, postgres_url=self.pg_url)
        return {
            "HASURA_BASE_URL": await nursery.start(hasura.serve),
            "HASURA_GRAPHQL_ADMIN_SECRET": ADMIN_SECRET,
            "HASURA_GRAPHQL_JWT_SECRET": json.dumps({"type": "HS256", "key": JWT_KEY.decode()}),
        }

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            [schema] = conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = %s "
                "AND table_schema LIKE 'app\\_%%'",
                (table,),
            ).fetchone() or [None]
            return conn.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY 1').fetchall()

    def columns(self, table: str) -> list[tuple[str, str]]:
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema LIKE 'app\\_%%' ORDER BY ordinal_position",
                (table,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def db_stack(postgres: PostgresServer, amicable_up: Any, tmp_path: Path) -> DbStack:
    """The stack; it stops (``amicable_up``) before PostgreSQL does (set up first)."""
    stack: DbStack = amicable_up(DbStack(tmp_path / "data", postgres.create_database()))
    return stack


def test_model_table_in_the_pane_and_a_column_applied_in_postgres(
    stack_page: Any, db_stack: DbStack
) -> None:
    origin = db_stack.origin
    page = stack_page(db_stack)
    page.goto("/")
    page.get_by_test_id("new-project-name").fill("Shop")
    page.get_by_test_id("new-project-prompt").fill("Please add an orders table")
    page.get_by_test_id("new-project").click()
    bubble = page.get_by_test_id("assistant-message").first
    expect(bubble).to_contain_text("The orders table is ready.", timeout=PREVIEW_TIMEOUT_MS)
    expect(bubble.locator("[data-tool=db_create_table]")).to_have_attribute("data-status", "ok")
    assert [c for c, _ in db_stack.columns("orders")] == ["id", "item", "qty"]

    # The table the model created is in the pane, with its columns.
    page.get_by_test_id("tab-database").click()
    pane = page.get_by_test_id("db-pane")
    expect(pane.get_by_test_id("db-table-orders")).to_be_visible()
    pane.get_by_test_id("db-table-orders").click()
    expect(pane.get_by_test_id("db-column-item")).to_contain_text("text")
    expect(pane.get_by_test_id("db-column-qty")).to_contain_text("integer")

    # Add a column: review shows the SQL, apply creates it in PostgreSQL.
    pane.get_by_test_id("db-new-column").fill("note")
    pane.get_by_test_id("db-add-column").click()
    pane.get_by_test_id("db-review-btn").click()
    expect(pane.get_by_test_id("db-sql")).to_contain_text('ADD COLUMN "note" text;')
    expect(pane.get_by_test_id("db-destructive")).to_have_count(0)
    screenshot(page, "database-pane-review")
    pane.get_by_test_id("db-apply").click()
    expect(pane.get_by_test_id("db-notice")).to_contain_text("/db/migrations/")
    assert ("note", "text") in db_stack.columns("orders")
    workspace = next(db_stack.data_dir.glob("sandboxes/*/workspace"))
    [migration] = list((workspace / "db" / "migrations").glob("*.sql"))
    assert 'ADD COLUMN "note" text;' in migration.read_text()

    # Rows: the owner (an editor) adds a row, edits a cell and deletes a row; each is in
    # PostgreSQL, and a value of the wrong type gets a readable error.
    pane.get_by_test_id("db-tab-rows").click()
    rows = pane.get_by_test_id("db-rows")
    expect(rows.get_by_test_id("db-rows-range")).to_have_text("No rows")
    form = rows.get_by_test_id("db-new-row")
    for n, (item, qty) in enumerate((("Tea", "3"), ("Cake", "")), start=1):
        form.locator("[data-column=item]").fill(item)
        form.locator("[data-column=qty]").fill(qty)
        rows.get_by_test_id("db-row-add").click()
        expect(rows.get_by_test_id("db-rows-range")).to_have_text(f"Rows 1–{n} of {n}")
    assert db_stack.rows("orders") == [(1, "Tea", 3, None), (2, "Cake", 1, None)]
    rows.locator("[data-testid=db-cell-edit][data-column=item]").first.click()
    rows.get_by_test_id("db-cell-input").fill("Green tea")
    rows.get_by_test_id("db-cell-save").click()
    expect(rows.locator("[data-testid=db-cell-edit][data-column=item]").first).to_have_text(
        "Green tea"
    )
    assert db_stack.rows("orders")[0] == (1, "Green tea", 3, None)
    rows.locator("[data-testid=db-cell-edit][data-column=qty]").first.click()
    rows.get_by_test_id("db-cell-input").fill("lots")
    rows.get_by_test_id("db-cell-save").click()
    expect(rows.get_by_test_id("db-row-error")).to_contain_text("qty needs a whole number")
    screenshot(page, "database-pane-rows")
    rows.get_by_test_id("db-row-delete").nth(1).click()
    dialog = page.get_by_test_id("db-row-delete-confirm")
    expect(dialog).to_contain_text("id = 2")
    dialog.get_by_test_id("dialog-confirm").click()
    expect(rows.get_by_test_id("db-rows-range")).to_have_text("Rows 1–1 of 1")
    assert db_stack.rows("orders") == [(1, "Green tea", 3, None)]
    pane.get_by_role("tab", name="Structure").click()

    # Dropping it is destructive: nothing happens until it is confirmed.
    pane.get_by_test_id("db-column-note").get_by_role("button", name="Drop column note").click()
    pane.get_by_test_id("db-review-btn").click()
    expect(pane.get_by_test_id("db-destructive")).to_contain_text("Drop column orders.note")
    pane.get_by_test_id("db-apply").click()
    expect(pane.get_by_test_id("db-confirm-apply")).to_be_visible()
    assert ("note", "text") in db_stack.columns("orders")
    pid = page.evaluate("() => window.location.pathname")  # /p/<slug>
    assert pid.startswith("/p/")

    # The HTTP API refuses a destructive apply without confirmation, and hostile drafts.
    project_id = page.request.get(f"/api/projects/by-slug/{pid[3:]}").json()["project_id"]
    schema = page.request.get(f"/api/db/{project_id}/schema").json()
    draft = schema["schema"]
    draft["tables"] = [t for t in draft["tables"] if t["name"] != "orders"]
    draft["relationships"] = []
    api = f"/api/db/{project_id}/schema/apply"
    refused = page.request.post(api, data={"draft": draft}, headers={"Origin": origin})
    assert refused.status == 409
    assert refused.json()["error"] == "destructive_confirmation_required"
    hostile = schema["schema"]
    hostile["tables"].append({"name": 'x"; DROP SCHEMA amicable_meta CASCADE; --', "columns": []})
    bad = page.request.post(api, data={"draft": hostile}, headers={"Origin": origin})
    assert bad.status == 400
    assert bad.json()["error"] == "invalid_draft"
    assert ("note", "text") in db_stack.columns("orders")

    # Restoring the checkpoint before the schema change says the schema goes back too,
    # and the note column is gone from PostgreSQL afterwards.
    page.get_by_test_id("history").click()
    history = page.get_by_test_id("history-panel")
    items = history.get_by_test_id("checkpoint")
    expect(items.filter(has_text="Database schema update")).to_have_count(1)
    titles = items.get_by_test_id("checkpoint-title").all_inner_texts()
    at = next(i for i, t in enumerate(titles) if t.startswith("Database schema update"))
    items.nth(at + 1).get_by_test_id("checkpoint-restore").click()
    confirm = page.get_by_test_id("restore-confirm")
    expect(confirm.get_by_test_id("restore-schema-note")).to_contain_text(
        "The database schema is rolled back too: 1 schema change"
    )
    screenshot(page, "restore-schema-confirm")
    confirm.get_by_test_id("dialog-confirm").click()
    expect(history.get_by_test_id("history-message")).to_contain_text(
        "The database schema was rolled back too"
    )
    assert "note" not in [c for c, _ in db_stack.columns("orders")]
    assert not list((workspace / "db" / "migrations").glob("*.sql"))
