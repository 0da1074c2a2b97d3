"""The schema editor's pure parts: draft parsing, planning and flags, introspected defaults,
and the version hash."""

from __future__ import annotations

from typing import Any

import pytest
from amicable_agent.db.introspect import _default, parse_schema, rows_sql
from amicable_agent.db.schema_diff import default_sql, plan, review
from amicable_agent.db.schema_model import (
    ColumnDef,
    InvalidDraft,
    RelationshipDef,
    SchemaDef,
    TableDef,
    parse_draft,
    schema_json,
    schema_version,
)

S = "app_0123456789ab"
ID = ColumnDef("id", "bigserial", nullable=False, is_primary=True)
CURRENT = SchemaDef(
    S,
    (
        TableDef(
            "customers", (ID, ColumnDef("name", "text", False), ColumnDef("score", "integer"))
        ),
        TableDef("orders", (ID, ColumnDef("customer_id", "bigint"))),
    ),
    (RelationshipDef("orders_customer_id_fkey", "orders", "customer_id", "customers", "id"),),
)


def draft() -> dict[str, Any]:
    return schema_json(CURRENT)


def test_an_unchanged_draft_plans_nothing_and_keeps_the_version() -> None:
    assert plan(CURRENT, parse_draft(draft(), CURRENT)) == []
    shuffled = SchemaDef(S, CURRENT.tables[::-1], CURRENT.relationships)
    assert schema_version(shuffled) == schema_version(CURRENT)
    changed = SchemaDef(S, CURRENT.tables[:1], ())
    assert schema_version(changed) != schema_version(CURRENT)


def test_relationship_changes_are_ordered_around_the_tables() -> None:
    d = draft()
    d["tables"].append({"name": "items", "columns": [{"name": "order_id", "type": "bigint"}]})
    d["relationships"] = [{"from_table": "items", "from_column": "order_id", "to_table": "orders",
                           "to_column": "id", "on_delete": "cascade"}]  # fmt: skip
    ops = plan(CURRENT, parse_draft(d, CURRENT))
    assert [op.kind for op in ops] == ["drop_relationship", "create_table", "add_relationship"]
    assert ops[1].sql == (
        f'CREATE TABLE "{S}"."items" ("id" bigserial PRIMARY KEY, "order_id" bigint);'
    )
    assert ops[2].sql.endswith("ON DELETE CASCADE ON UPDATE NO ACTION;")
    assert '"items_order_id_fkey"' in ops[2].sql


@pytest.mark.parametrize(
    ("old", "new", "destructive"),
    [("integer", "bigint", False), ("integer", "text", False), ("bigint", "integer", True),
     ("text", "integer", True), ("integer", "boolean", True), ("integer", "numeric", False)],
)  # fmt: skip
def test_only_widening_type_changes_are_safe(old: str, new: str, destructive: bool) -> None:
    current = SchemaDef(S, (TableDef("t", (ID, ColumnDef("c", old))),))
    d = schema_json(current)
    d["tables"][0]["columns"][1]["type"] = new
    [op] = plan(current, parse_draft(d, current))
    assert (op.kind, op.destructive) == ("alter_column_type", destructive)
    assert op.sql == f'ALTER TABLE "{S}"."t" ALTER COLUMN "c" TYPE {new} USING "c"::{new};'
    assert review([op])["destructive"] is destructive


def test_defaults_become_literals_never_code() -> None:
    assert default_sql("x'); DROP TABLE t; --") == "E'x''); DROP TABLE t; --'"
    assert default_sql("back\\slash") == "E'back\\\\slash'"
    assert default_sql(-3) == "(-3)"
    assert default_sql(True) == "true"
    assert default_sql({"raw": "now()"}) == "now()"
    with pytest.raises(InvalidDraft):
        default_sql({"raw": "pg_sleep(1)"})


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["tables"][0]["columns"].__setitem__(0, {**d["tables"][0]["columns"][0], "is_primary": False}),
        lambda d: d["tables"][0]["columns"].pop(0),
        lambda d: d["tables"][0]["columns"].append({"name": "k", "type": "text", "is_primary": True}),
        lambda d: d["tables"][0]["columns"][2].update(type="serial"),
        lambda d: d["tables"].append({"name": "x", "columns": [{"name": "id", "type": "text"}]}),
    ],
)  # fmt: skip
def test_keys_and_serials_cannot_be_changed(change: Any) -> None:
    d = draft()
    change(d)
    with pytest.raises(InvalidDraft):
        plan(CURRENT, parse_draft(d, CURRENT))


def test_an_unknown_introspected_default_may_be_kept_but_not_written() -> None:
    current = SchemaDef(
        S, (TableDef("t", (ID, ColumnDef("c", "text", default={"raw": "md5('x')"}))),)
    )
    assert plan(current, parse_draft(schema_json(current), current)) == []
    d = schema_json(current)
    d["tables"][0]["columns"].append({"name": "e", "type": "text", "default": {"raw": "md5('x')"}})
    with pytest.raises(InvalidDraft, match="only raw default"):
        parse_draft(d, current)


def test_introspected_defaults_read_as_draft_values() -> None:
    assert _default("nextval('t_id_seq'::regclass)", "bigint") == ("bigserial", None)
    assert _default("nextval('t_id_seq'::regclass)", "integer") == ("serial", None)
    assert _default("'it''s'::text", "text") == ("text", "it's")
    assert _default("'-3'::integer", "integer") == ("integer", -3)
    assert _default("12.25", "numeric") == ("numeric", 12.25)
    assert _default("false", "boolean") == ("boolean", False)
    assert _default("now()", "timestamp with time zone")[1] == {"raw": "now()"}
    assert _default("gen_random_uuid()", "uuid") == ("uuid", {"raw": "gen_random_uuid()"})
    parsed = parse_schema(S, '{"tables": ["t"], "columns": [["t", "id", "bigint", false, '
                          '"nextval(\'x\')"]], "primary_keys": [["t", "id"]], "foreign_keys": []}')  # fmt: skip
    assert parsed.tables == (TableDef("t", (ID,)),)


def test_rows_are_read_in_key_order_with_integer_paging() -> None:
    sql = rows_sql(S, CURRENT.tables[0], 25, 50)
    assert f'FROM "{S}"."customers" ORDER BY "id" LIMIT 25 OFFSET 50' in sql
    keyless = rows_sql(S, TableDef("t", (ColumnDef("c", "text"),)), 1, 0)
    assert "ORDER BY ctid" in keyless
