"""The down record of an applied schema change, without a database: every operation the
planner makes has an undo that survives the trip through a migration file, the rebuilt SQL
is in the app's schema whatever the record says, and a tampered record is refused."""

from __future__ import annotations

import json

import pytest
from amicable_agent.db.schema_diff import plan
from amicable_agent.db.schema_down import NoDown, down_line, down_steps, parse_down
from amicable_agent.db.schema_editor import migration_file
from amicable_agent.db.schema_model import ColumnDef, RelationshipDef, SchemaDef, TableDef
from amicable_agent.http.bodies import HttpError
from amicable_agent.http.restore_schema import (
    SchemaRollback,
    after_rollback,
    rollback_json,
    rollback_note,
    with_returned,
)

S = "app_0123456789ab"
BEFORE = SchemaDef(
    S,
    (
        TableDef(
            "a",
            (
                ColumnDef("id", "bigserial", False, True),
                ColumnDef("n", "integer", True, False, 3),
                ColumnDef("t", "text", False, False, "x"),
                ColumnDef("gone", "text"),
            ),
        ),
        TableDef("b", (ColumnDef("id", "bigserial", False, True), ColumnDef("a_id", "bigint"))),
    ),
    (RelationshipDef("b_a_fkey", "b", "a_id", "a", "id", "CASCADE", "NO ACTION"),),
)
AFTER = SchemaDef(
    S,
    (
        TableDef(
            "a",
            (
                ColumnDef("id", "bigserial", False, True),
                ColumnDef("n", "bigint", False, False, None),
                ColumnDef("t", "text", True, False, "y"),
                ColumnDef("new", "boolean", True, False, True),
            ),
        ),
        TableDef("c", (ColumnDef("id", "bigserial", False, True), ColumnDef("a_id", "bigint"))),
    ),
    (RelationshipDef("c_a_fkey", "c", "a_id", "a", "id"),),
)


def test_every_operation_has_an_undo_that_survives_the_migration_file() -> None:
    operations = plan(BEFORE, AFTER)
    _, text = migration_file(operations, base_version="v", down=down_steps(BEFORE, operations))
    steps = parse_down(text, S)
    assert [s.operation.kind for s in steps] == [
        "drop_relationship", "create_table", "drop_table", "add_column", "drop_column",
        "set_default", "set_not_null", "set_default", "drop_not_null", "alter_type",
        "add_relationship",
    ]  # fmt: skip
    sql = "\n".join(s.operation.sql for s in steps)
    assert f'ALTER TABLE "{S}"."c" DROP CONSTRAINT "c_a_fkey";' in sql
    assert f'CREATE TABLE "{S}"."b" ("id" bigserial, "a_id" bigint, PRIMARY KEY ("id"));' in sql
    assert 'ALTER COLUMN "n" TYPE integer USING "n"::integer' in sql
    assert 'ALTER COLUMN "n" SET DEFAULT 3' in sql
    assert "ALTER COLUMN \"t\" SET DEFAULT E'x'" in sql
    assert 'ADD COLUMN "gone" text;' in sql
    assert f'DROP TABLE "{S}"."c" CASCADE;' in sql
    lost = [s.data_lost for s in steps if s.data_lost]
    assert "table b comes back empty: its rows cannot come back" in lost
    assert any("values of a.new are deleted" in x for x in lost)
    assert f'ALTER TABLE "{S}"."b" ADD CONSTRAINT "b_a_fkey" FOREIGN KEY' in sql


def test_the_relationship_dropped_by_a_change_comes_back() -> None:
    after = SchemaDef(S, BEFORE.tables, ())
    operations = plan(BEFORE, after)
    [step] = parse_down(down_line(down_steps(BEFORE, operations)), S)
    assert step.operation.sql == (
        f'ALTER TABLE "{S}"."b" ADD CONSTRAINT "b_a_fkey" FOREIGN KEY ("a_id") REFERENCES '
        f'"{S}"."a" ("id") ON DELETE CASCADE ON UPDATE NO ACTION;'
    )


@pytest.mark.parametrize(
    "steps",
    [
        [{"op": "drop_table", "table": "a; DROP SCHEMA x"}],
        [{"op": "drop_table", "table": "A"}],
        [{"op": "alter_type", "table": "a", "column": "n", "type": "int); DROP TABLE a; --"}],
        [
            {
                "op": "set_default",
                "table": "a",
                "column": "n",
                "type": "integer",
                "default": {"raw": "pg_sleep(1)"},
            }
        ],
        [
            {
                "op": "add_relationship",
                "name": "r",
                "from_table": "b",
                "table": "b",
                "from_column": "a_id",
                "to_table": "a",
                "to_column": "id",
                "on_delete": "CASCADE; DROP TABLE a",
                "on_update": "NO ACTION",
            }
        ],
        [
            {
                "op": "create_table",
                "table": "t",
                "columns": [{"name": "x", "type": "text", "nullable": "yes", "is_primary": False}],
            }
        ],
        [{"op": "sql", "table": "a", "sql": "DROP TABLE a"}],
        [{"op": "impossible", "what": "Something"}],
        {"op": "drop_table"},
    ],
)
def test_a_tampered_record_is_refused(steps: object) -> None:
    with pytest.raises(NoDown):
        parse_down("-- amicable-down: " + json.dumps(steps), S)


def test_two_records_or_none_are_refused() -> None:
    line = down_line([{"op": "drop_table", "table": "a"}])
    with pytest.raises(NoDown, match="no record"):
        parse_down("ALTER TABLE a ADD COLUMN b text;", S)
    with pytest.raises(NoDown, match="no record"):
        parse_down(f"{line}\n{line}", S)


def test_the_note_says_what_was_rolled_back_and_what_was_lost() -> None:
    steps = tuple(parse_down(down_line([{"op": "drop_table", "table": "c"}]), S))
    done = rollback_json(SchemaRollback(("/db/migrations/1_x.sql",), steps), "rolled_back", None)
    note = rollback_note(done)
    assert "rolled back" in note
    assert "Drop table c" in note
    assert "the rows of c are deleted" in note
    kept = rollback_json(SchemaRollback(("/db/migrations/1_x.sql",)), "skipped", "kept")
    assert "NOT rolled back" in rollback_note(kept)
    assert rollback_note(rollback_json(SchemaRollback(), "none", None)) == ""
    back = with_returned(rollback_json(SchemaRollback(), "none", None),
                         ("/src/App.tsx", "/db/migrations/2_y.sql"))  # fmt: skip
    assert back["not_reapplied"] == ["/db/migrations/2_y.sql"]
    assert "were not applied again" in rollback_note(back)


def test_a_file_restore_that_fails_after_the_rollback_says_the_schema_went_back() -> None:
    steps = tuple(parse_down(down_line([{"op": "drop_table", "table": "c"}]), S))
    done = rollback_json(SchemaRollback(("/db/migrations/1_x.sql",), steps), "rolled_back", None)
    failed = after_rollback(HttpError(507, "history_full", "The history is full."), done)
    assert (failed.status, failed.code) == (507, "history_full")
    assert failed.detail is not None
    assert failed.detail.startswith("The history is full. — the database schema was already")
    assert "Drop table c" in failed.detail
    untouched = HttpError(404, "not_found", "no such checkpoint")
    assert after_rollback(untouched, rollback_json(SchemaRollback(), "none", None)) is untouched
