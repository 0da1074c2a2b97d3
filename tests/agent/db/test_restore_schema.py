"""Restoring a checkpoint takes the database schema back with the files, on the fake Hasura
backed by a real PostgreSQL: a column and a table added through review/apply are gone from
PostgreSQL after restoring the checkpoint before them; a dropped column comes back empty and
the answer says its data is lost; a rollback PostgreSQL refuses, a migration without an undo
record and a tampered undo record are refused clearly and change nothing (files included)
until the caller asks to keep the schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from amicable_testing.postgres import postgres_available

from .pg_stack import Project, Stack

pytestmark = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL not installed")


async def _apply(project: Project, change: Any, *, confirm: bool = False) -> dict[str, Any]:
    body = (await project.client.get(project.url("schema"))).json()
    draft: dict[str, Any] = json.loads(json.dumps(body["schema"]))
    change(draft)
    done = await project.client.post(project.url("schema/apply"), json={
        "draft": draft, "confirm_destructive": confirm})  # fmt: skip
    assert done.status_code == 200, done.text
    assert done.json()["checkpoint"] is not None
    result: dict[str, Any] = done.json()
    return result


def _customers(draft: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in draft["tables"] if t["name"] == "customers")
    return found


def _columns(stack: Stack, table: str) -> list[str]:
    return [r[0] for r in stack.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = "
        f"'{table}' AND table_schema LIKE 'app_%' ORDER BY ordinal_position")]  # fmt: skip


def _tables(stack: Stack, project: Project) -> list[str]:
    return [r[0] for r in stack.sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = "
        f"'{project.schema}' ORDER BY 1")]  # fmt: skip


async def _restore(project: Project, sha: str, **body: Any) -> Any:
    return await project.client.post(
        f"/api/sandbox/{project.pid}/checkpoints/{sha}/restore", json=body
    )


async def _baseline(project: Project) -> str:
    got = await project.client.get(f"/api/sandbox/{project.pid}/checkpoints")
    sha: str = got.json()["checkpoints"][-1]["sha"]
    return sha


async def test_restore_before_applied_changes_removes_the_column_and_the_table(
    stack: Stack, project: Project
) -> None:
    def add_email(d: dict[str, Any]) -> None:
        _customers(d)["columns"].append({"name": "email", "type": "text"})

    def add_table(d: dict[str, Any]) -> None:
        d["tables"].append({"name": "products", "columns": [{"name": "title", "type": "text"}]})

    first = await _apply(project, add_email)
    second = await _apply(project, add_table)
    assert "email" in _columns(stack, "customers")
    assert "products" in _tables(stack, project)
    stack.sql(f"INSERT INTO {project.schema}.products (title) VALUES ('kept?')")
    restored = await _restore(project, await _baseline(project))
    assert restored.status_code == 200, restored.text
    schema = restored.json()["schema_rollback"]
    assert schema["status"] == "rolled_back"
    assert schema["migrations"] == [second["migration_files"][0], first["migration_files"][0]]
    assert schema["steps"] == ["Drop table products", "Drop column customers.email"]
    assert any("rows of products" in lost for lost in schema["data_lost"])
    assert "email" not in _columns(stack, "customers")
    assert _tables(stack, project) == ["customers", "orders"]
    root = next(stack.workspaces.iterdir())
    assert not list((root / "db" / "migrations").glob("*.sql"))
    # The pane sees the old schema.
    after = (await project.client.get(project.url("schema"))).json()
    assert [t["name"] for t in after["schema"]["tables"]] == ["customers", "orders"]
    # Restoring again removes no migration: nothing to roll back.
    again = await _restore(project, await _baseline(project))
    assert again.json()["schema_rollback"]["status"] == "none"
    # Restoring forward brings the files back but does not re-apply them, and says so.
    forward = await _restore(project, second["checkpoint"]["sha"])
    assert forward.status_code == 200, forward.text
    back = forward.json()["schema_rollback"]
    assert (back["status"], sorted(back["not_reapplied"])) == (
        "none", sorted([*first["migration_files"], *second["migration_files"]]))  # fmt: skip
    assert "email" not in _columns(stack, "customers")


async def test_a_dropped_column_comes_back_empty_and_the_loss_is_reported(
    stack: Stack, project: Project
) -> None:
    def drop_note(d: dict[str, Any]) -> None:
        _customers(d)["columns"] = [c for c in _customers(d)["columns"] if c["name"] != "note"]

    await _apply(project, drop_note, confirm=True)
    assert "note" not in _columns(stack, "customers")
    restored = await _restore(project, await _baseline(project))
    assert restored.status_code == 200, restored.text
    schema = restored.json()["schema_rollback"]
    assert schema["steps"] == ["Recreate column customers.note"]
    assert schema["data_lost"] == [
        "column customers.note comes back empty: its values cannot come back"]  # fmt: skip
    # The column and its default are back; the old values are not.
    assert stack.sql(f"SELECT count(*), min(note) FROM {project.schema}.customers") == [
        (7, "it's new")]  # fmt: skip


async def test_a_rollback_postgres_refuses_changes_nothing_until_skipped(
    stack: Stack, project: Project
) -> None:
    def name_optional(d: dict[str, Any]) -> None:
        next(c for c in _customers(d)["columns"] if c["name"] == "name")["nullable"] = True

    applied = await _apply(project, name_optional)
    stack.sql(f"INSERT INTO {project.schema}.customers (name) VALUES (NULL)")
    root = next(stack.workspaces.iterdir())
    migration = root / applied["migration_files"][0].lstrip("/")
    refused = await _restore(project, await _baseline(project))
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["error"] == "schema_rollback_failed"
    assert "nothing was changed" in body["detail"]
    assert "skip_schema_rollback" in body["detail"]
    assert body["schema_rollback"]["steps"] == ["Require a value in customers.name again"]
    assert migration.exists()  # the files were not restored either
    assert stack.sql(
        "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'customers' "
        "AND column_name = 'name'") == [("YES",)]  # fmt: skip
    kept = await _restore(project, await _baseline(project), skip_schema_rollback=True)
    assert kept.status_code == 200, kept.text
    assert kept.json()["schema_rollback"]["status"] == "skipped"
    assert not migration.exists()
    bad = await _restore(project, await _baseline(project), skip_schema_rollback="yes")
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ("", "no record of how to undo it"),
        (
            '-- amicable-down: [{"op":"drop_table","table":"x\\"; DROP SCHEMA amicable_meta '
            'CASCADE; --"}]',
            "not a valid name",
        ),
        (
            '-- amicable-down: [{"op":"set_default","table":"customers","column":"note",'
            '"type":"text","default":{"raw":"pg_sleep(5)"}}]',
            'only raw default allowed is "now()"',
        ),
        ("-- amicable-down: {not json", "not valid JSON"),
    ],
)
async def test_a_migration_without_a_valid_undo_record_is_refused_clearly(
    stack: Stack, project: Project, record: str, why: str
) -> None:
    def add_email(d: dict[str, Any]) -> None:
        _customers(d)["columns"].append({"name": "email", "type": "text"})

    target = (await _apply(project, add_email))["checkpoint"]["sha"]
    path = "/db/migrations/20200101000000_by_hand.sql"
    text = f"ALTER TABLE x ADD COLUMN y text;\n{record}\n"
    wrote = await project.client.put(f"/api/sandbox/{project.pid}/write",
                                     json={"path": path, "content": text})  # fmt: skip
    assert wrote.status_code in (200, 201), wrote.text
    refused = await _restore(project, target)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["error"] == "schema_rollback_impossible"
    assert path in body["detail"]
    assert why in body["detail"]
    assert body["schema_rollback"]["migrations"] == [path]
    root = next(stack.workspaces.iterdir())
    assert (root / path.lstrip("/")).exists()
    assert stack.sql("SELECT count(*) FROM amicable_meta.canary") == [(0,)]
    assert _tables(stack, project) == ["customers", "orders"]
