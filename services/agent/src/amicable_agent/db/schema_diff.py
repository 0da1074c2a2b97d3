"""From the current schema and a validated draft to the operations and SQL that make one
the other, with the destructive ones flagged.

Every statement is built from identifiers that :func:`~.schema_model.parse_draft` checked,
quoted again by :func:`~.sql.quote_ident`, SQL types from a fixed table and defaults from
:func:`default_sql`; nothing else reaches the text. Destructive: dropping a table or a
column, and changing a column's type in any way but a widening (e.g. ``integer`` ->
``bigint``, anything -> ``text``).
"""

from __future__ import annotations

from typing import Any

import attrs

from .schema_model import ColumnDef, InvalidDraft, RelationshipDef, SchemaDef, TableDef
from .sql import quote_ident, quote_literal

#: Type changes that keep every value (besides anything -> text).
WIDENINGS = frozenset({
    ("integer", "bigint"), ("integer", "numeric"), ("integer", "double precision"),
    ("bigint", "numeric"), ("real", "double precision"), ("real", "numeric"),
    ("serial", "integer"), ("serial", "bigint"), ("bigserial", "bigint"),
    ("date", "timestamp with time zone"),
})  # fmt: skip
_SERIALS = frozenset({"serial", "bigserial"})


@attrs.frozen
class Operation:
    """One step of a schema change.

    Attributes:
        kind: ``create_table``, ``drop_table``, ``add_column``, ``drop_column``,
            ``alter_column_type``, ``set_not_null``, ``drop_not_null``, ``set_default``,
            ``drop_default``, ``add_relationship``, ``drop_relationship``.
        table: the table it changes.
        sql: the statement.
        summary: one line for people.
        column: the column, where there is one.
        destructive: it may lose data.
    """

    kind: str
    table: str
    sql: str
    summary: str
    column: str | None = None
    destructive: bool = False

    def json(self) -> dict[str, Any]:
        """The wire form."""
        return attrs.asdict(self)


def default_sql(value: Any) -> str:
    """The SQL of a validated default (see :func:`~.schema_model.check_default`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = str(value) if isinstance(value, int) else repr(value)
        return f"({text})" if text.startswith("-") else text
    if isinstance(value, str):
        return quote_literal(value)
    if value == {"raw": "now()"}:
        return "now()"
    raise InvalidDraft(f"default {repr(value)[:80]} cannot be written as SQL")


def _qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def column_ddl(column: ColumnDef) -> str:
    """A column's definition in ``CREATE TABLE`` / ``ADD COLUMN``."""
    parts = [quote_ident(column.name), column.type]
    if not column.nullable and column.type not in _SERIALS:
        parts.append("NOT NULL")
    if column.default is not None:
        parts.append(f"DEFAULT {default_sql(column.default)}")
    return " ".join(parts)


def _create_table(schema: str, table: TableDef) -> Operation:
    defs = [column_ddl(c) for c in table.columns]
    keys = [quote_ident(c.name) for c in table.columns if c.is_primary]
    if not keys:
        if table.column("id") is not None:
            raise InvalidDraft(f"table {table.name}: column id must be the primary key")
        defs.insert(0, f"{quote_ident('id')} bigserial PRIMARY KEY")
    else:
        defs.append(f"PRIMARY KEY ({', '.join(keys)})")
    return Operation(
        "create_table", table.name,
        f"CREATE TABLE {_qualified(schema, table.name)} ({', '.join(defs)});",
        f"Create table {table.name} ({len(table.columns)} columns)",
    )  # fmt: skip


def _alter(schema: str, table: str, clause: str) -> str:
    return f"ALTER TABLE {_qualified(schema, table)} {clause};"


def _type_change(schema: str, table: str, old: ColumnDef, new: ColumnDef) -> Operation:
    if new.type in _SERIALS:
        raise InvalidDraft(
            f"column {table}.{new.name}: an existing column cannot become {new.type}"
        )
    widening = new.type == "text" or (old.type, new.type) in WIDENINGS
    col = quote_ident(new.name)
    return Operation(
        "alter_column_type", table,
        _alter(schema, table, f"ALTER COLUMN {col} TYPE {new.type} USING {col}::{new.type}"),
        f"Change {table}.{new.name} from {old.type} to {new.type}"
        + ("" if widening else " (values that do not fit are lost or the change fails)"),
        new.name, destructive=not widening,
    )  # fmt: skip


def _column_changes(schema: str, table: str, old: ColumnDef, new: ColumnDef) -> list[Operation]:
    ops: list[Operation] = []
    col = quote_ident(new.name)
    if old.is_primary != new.is_primary:
        raise InvalidDraft(f"column {table}.{new.name}: the primary key cannot be changed")
    if old.type != new.type:
        ops.append(_type_change(schema, table, old, new))
    if old.nullable and not new.nullable:
        ops.append(Operation("set_not_null", table,
                             _alter(schema, table, f"ALTER COLUMN {col} SET NOT NULL"),
                             f"Require a value in {table}.{new.name}", new.name))  # fmt: skip
    elif new.nullable and not old.nullable:
        ops.append(Operation("drop_not_null", table,
                             _alter(schema, table, f"ALTER COLUMN {col} DROP NOT NULL"),
                             f"Allow empty {table}.{new.name}", new.name))  # fmt: skip
    if old.default != new.default:
        if new.default is None:
            ops.append(Operation("drop_default", table,
                                 _alter(schema, table, f"ALTER COLUMN {col} DROP DEFAULT"),
                                 f"Remove the default of {table}.{new.name}", new.name))  # fmt: skip
        else:
            clause = f"ALTER COLUMN {col} SET DEFAULT {default_sql(new.default)}"
            ops.append(Operation("set_default", table, _alter(schema, table, clause),
                                 f"Set the default of {table}.{new.name}", new.name))  # fmt: skip
    return ops


def _table_changes(schema: str, old: TableDef, new: TableDef) -> list[Operation]:
    ops: list[Operation] = []
    for column in new.columns:
        before = old.column(column.name)
        if before is None:
            if column.is_primary:
                raise InvalidDraft(f"column {new.name}.{column.name}: cannot add a primary key")
            ops.append(Operation("add_column", new.name,
                                 _alter(schema, new.name, f"ADD COLUMN {column_ddl(column)}"),
                                 f"Add column {new.name}.{column.name} ({column.type})",
                                 column.name))  # fmt: skip
        else:
            ops += _column_changes(schema, new.name, before, column)
    for column in old.columns:
        if new.column(column.name) is None:
            if column.is_primary:
                raise InvalidDraft(f"column {new.name}.{column.name}: the key cannot be dropped")
            ops.append(Operation("drop_column", new.name,
                                 _alter(schema, new.name, f"DROP COLUMN {quote_ident(column.name)}"),
                                 f"Drop column {new.name}.{column.name} and its data",
                                 column.name, destructive=True))  # fmt: skip
    return ops


def _relationship_sql(schema: str, rel: RelationshipDef) -> str:
    return _alter(
        schema, rel.from_table,
        f"ADD CONSTRAINT {quote_ident(rel.name)} FOREIGN KEY ({quote_ident(rel.from_column)}) "
        f"REFERENCES {_qualified(schema, rel.to_table)} ({quote_ident(rel.to_column)}) "
        f"ON DELETE {rel.on_delete} ON UPDATE {rel.on_update}",
    )  # fmt: skip


def plan(current: SchemaDef, draft: SchemaDef) -> list[Operation]:
    """The operations that turn ``current`` into ``draft``, in an order PostgreSQL accepts:
    old relationships go first, new ones last.

    Raises:
        InvalidDraft: a change the editor does not make (primary keys, serial columns).
    """
    schema = current.schema_name
    old_rels = {r.name: r for r in current.relationships}
    new_rels = {r.name: r for r in draft.relationships}
    ops = [
        Operation("drop_relationship", r.from_table,
                  _alter(schema, r.from_table, f"DROP CONSTRAINT {quote_ident(r.name)}"),
                  f"Remove relationship {r.name}")
        for name, r in old_rels.items()
        if new_rels.get(name) != r and draft.table(r.from_table) is not None
    ]  # fmt: skip
    for table in draft.tables:
        before = current.table(table.name)
        ops += (
            [_create_table(schema, table)]
            if before is None
            else _table_changes(schema, before, table)
        )
    ops += [
        Operation("drop_table", t.name, f"DROP TABLE {_qualified(schema, t.name)} CASCADE;",
                  f"Drop table {t.name} and all its rows", destructive=True)
        for t in current.tables if draft.table(t.name) is None
    ]  # fmt: skip
    ops += [
        Operation("add_relationship", r.from_table, _relationship_sql(schema, r),
                  f"Link {r.from_table}.{r.from_column} to {r.to_table}.{r.to_column}", r.from_column)
        for name, r in new_rels.items() if old_rels.get(name) != r
    ]  # fmt: skip
    return ops


def review(operations: list[Operation]) -> dict[str, Any]:
    """Upstream's ``review`` block plus the fields at the top level of the answer."""
    destructive = [op.summary for op in operations if op.destructive]
    warnings = [
        f"{op.summary}: fails if the table has rows without a value"
        for op in operations
        if op.kind == "set_not_null"
        or (op.kind == "add_column" and "NOT NULL" in op.sql and "DEFAULT" not in op.sql)
    ]
    summary = (
        "No changes." if not operations else
        f"{len(operations)} change(s): " + "; ".join(op.summary for op in operations[:8])
        + ("; …" if len(operations) > 8 else "")
    )  # fmt: skip
    block = {"summary": summary, "destructive": bool(destructive),
             "destructive_details": destructive, "warnings": warnings}  # fmt: skip
    return {
        "review": block,
        "operations": [op.json() for op in operations],
        "warnings": warnings,
        "destructive": bool(destructive),
        "destructive_details": destructive,
        "sql_preview": [op.sql for op in operations],
    }
