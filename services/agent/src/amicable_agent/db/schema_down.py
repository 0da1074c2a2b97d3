"""Undoing an applied schema change: the *down* record of a migration file.

When a draft is applied, :func:`down_steps` records, for every operation, the step that
undoes it, as JSON in terms of names, types and defaults (never SQL), on one line of the
migration file (:data:`DOWN_MARK`). When a checkpoint restore removes the file,
:func:`parse_down` reads that line back and rebuilds the statements from validated parts
exactly as a draft's are built (:func:`~.schema_model.ident`, :func:`~.schema_model.sql_type`,
:func:`~.schema_model.check_default`, :func:`~.sql.quote_ident`), always in the app's own
schema. A migration file is project content the model can edit, so nothing in it is trusted:
a step that does not validate makes the rollback impossible (:class:`NoDown`), it is never
"fixed" or skipped.

Undoing a drop recreates the table or column *empty*: its data cannot come back, and the
step says so (:attr:`DownStep.data_lost`). A recreated table gets its own foreign keys back;
keys of other tables that pointed at it (dropped by ``CASCADE``) do not come back.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import attrs

from amicable_agent.errors import AgentError

from .schema_diff import Operation, column_ddl, default_sql
from .schema_model import FK_RULES, ColumnDef, InvalidDraft, check_default, ident, sql_type
from .sql import quote_ident

if TYPE_CHECKING:
    from .schema_model import SchemaDef

#: The migration file line holding the down record.
DOWN_MARK = "-- amicable-down: "
MAX_DOWN_STEPS = 2000


class NoDown(AgentError):
    """A migration cannot be undone; ``str(exc)`` says which and why."""


@attrs.frozen
class DownStep:
    """One statement of a rollback, for people and for :class:`~.schema_editor.SchemaEditor`.

    Attributes:
        operation: the statement (``kind`` tells the editor to (un)track a table).
        data_lost: what the undo cannot bring back, if anything.
    """

    operation: Operation
    data_lost: str | None = None


def _column_json(column: ColumnDef) -> dict[str, Any]:
    return {"name": column.name, "type": column.type, "nullable": column.nullable,
            "is_primary": column.is_primary, "default": column.default}  # fmt: skip


def _undo(op: Operation, before: SchemaDef) -> list[dict[str, Any]]:
    table, column = before.table(op.table), op.column
    old = table.column(column) if table is not None and column is not None else None
    base = {"table": op.table, "column": column}
    simple = {"create_table": "drop_table", "add_column": "drop_column",
              "set_not_null": "drop_not_null", "drop_not_null": "set_not_null"}  # fmt: skip
    if op.kind in simple:
        return [{"op": simple[op.kind], **base}]
    if op.kind == "drop_table" and table is not None:
        return [{"op": "create_table", "table": op.table,
                 "columns": [_column_json(c) for c in table.columns]}]  # fmt: skip
    if op.kind == "drop_column" and old is not None:
        return [{"op": "add_column", "table": op.table, "definition": _column_json(old)}]
    if op.kind == "alter_column_type" and old is not None:
        return [{"op": "alter_type", **base, "type": old.type}]
    if op.kind in ("set_default", "drop_default") and old is not None:
        if old.default is None:
            return [{"op": "drop_default", **base}]
        return [{"op": "set_default", **base, "type": old.type, "default": old.default}]
    if op.kind == "add_relationship":
        return [{"op": "drop_relationship", "table": op.table, "name": _constraint(op, "ADD")}]
    if op.kind == "drop_relationship":
        name = _constraint(op, "DROP")
        return [{"op": "add_relationship", "table": r.from_table, **attrs.asdict(r)}
                for r in before.relationships if r.name == name]  # fmt: skip
    return [{"op": "impossible", "what": op.summary}]


def _constraint(op: Operation, verb: str) -> str:
    # schema_diff writes `{verb} CONSTRAINT "<validated name>"`; the name holds no quote.
    return op.sql.split(f"{verb} CONSTRAINT ", 1)[1].split('"')[1]


def down_steps(before: SchemaDef, operations: list[Operation]) -> list[dict[str, Any]]:
    """The down record of ``operations`` applied to ``before``: the undo of each, last
    operation first."""
    steps: list[dict[str, Any]] = []
    for op in reversed(operations):
        steps += _undo(op, before)
    dropped = {op.table for op in operations if op.kind == "drop_table"}
    # CASCADE took the dropped tables' own foreign keys; they come back once every table is
    # back (the recreated table is empty, so they hold). Keys of other tables pointing at a
    # dropped one are not restored: their rows may point at rows that cannot come back.
    steps += [{"op": "add_relationship", "table": r.from_table, **attrs.asdict(r)}
              for r in before.relationships if r.from_table in dropped]  # fmt: skip
    return steps


def down_line(steps: list[dict[str, Any]]) -> str:
    """The migration file line holding ``steps`` (one line whatever the values hold)."""
    return DOWN_MARK + json.dumps(steps, separators=(",", ":"), ensure_ascii=True)


def _q(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def _flag(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key)
    if not isinstance(value, bool):
        raise InvalidDraft(f"{key} must be true or false")
    return value


def _column_def(raw: Any) -> ColumnDef:
    if not isinstance(raw, dict):
        raise InvalidDraft("a column must be an object")
    name = ident(raw.get("name"), "column")
    type_ = sql_type(raw.get("type"), f"column {name}")
    default = check_default(raw.get("default"), type_, f"column {name}")
    return ColumnDef(name, type_, _flag(raw, "nullable"), _flag(raw, "is_primary"), default)


def _create(schema: str, table: str, raw: Any) -> DownStep:
    if not isinstance(raw, list) or not raw or len(raw) > 100:
        raise InvalidDraft("columns must be a list of 1-100")
    columns = [_column_def(c) for c in raw]
    defs = [column_ddl(c) for c in columns]
    keys = [quote_ident(c.name) for c in columns if c.is_primary]
    if keys:
        defs.append(f"PRIMARY KEY ({', '.join(keys)})")
    sql = f"CREATE TABLE {_q(schema, table)} ({', '.join(defs)});"
    return DownStep(
        Operation("create_table", table, sql, f"Recreate table {table}"),
        f"table {table} comes back empty: its rows cannot come back",
    )


def _add_column(schema: str, table: str, raw: Any) -> DownStep:
    column = _column_def(raw)
    lost = f"column {table}.{column.name} comes back empty: its values cannot come back"
    if not column.nullable and column.default is None:  # else the rows would refuse it
        column = attrs.evolve(column, nullable=True)
        lost += " (and it now allows empty values)"
    sql = f"ALTER TABLE {_q(schema, table)} ADD COLUMN {column_ddl(column)};"
    return DownStep(
        Operation("add_column", table, sql, f"Recreate column {table}.{column.name}", column.name),
        lost,
    )


def _relationship(schema: str, table: str, raw: dict[str, Any]) -> DownStep:
    name = ident(raw.get("name"), "relationship")
    ends = [ident(raw.get(k), k) for k in ("from_column", "to_table", "to_column")]
    rules = [raw.get("on_delete"), raw.get("on_update")]
    if ident(raw.get("from_table"), "from_table") != table or any(r not in FK_RULES for r in rules):
        raise InvalidDraft(f"relationship {name} is not a valid relationship")
    sql = (
        f"ALTER TABLE {_q(schema, table)} ADD CONSTRAINT {quote_ident(name)} FOREIGN KEY "
        f"({quote_ident(ends[0])}) REFERENCES {_q(schema, ends[1])} ({quote_ident(ends[2])}) "
        f"ON DELETE {rules[0]} ON UPDATE {rules[1]};"
    )
    return DownStep(Operation("add_relationship", table, sql, f"Restore relationship {name}"))


_COLUMN_CLAUSES = {
    "drop_not_null": ("ALTER COLUMN {c} DROP NOT NULL", "Allow empty {t}.{n} again"),
    "set_not_null": ("ALTER COLUMN {c} SET NOT NULL", "Require a value in {t}.{n} again"),
    "drop_default": ("ALTER COLUMN {c} DROP DEFAULT", "Remove the default of {t}.{n}"),
}


def _column_step(schema: str, table: str, kind: str, raw: dict[str, Any]) -> DownStep:
    name = ident(raw.get("column"), "column")
    col, where = quote_ident(name), f"ALTER TABLE {_q(schema, table)}"
    if kind == "drop_column":
        return DownStep(
            Operation("drop_column", table, f"{where} DROP COLUMN {col};",
                      f"Drop column {table}.{name}", name),
            f"the values of {table}.{name} are deleted",
        )  # fmt: skip
    if kind == "alter_type":
        type_ = sql_type(raw.get("type"), f"column {name}")
        clause = f"ALTER COLUMN {col} TYPE {type_} USING {col}::{type_}"
        summary = f"Change {table}.{name} back to {type_}"
    elif kind == "set_default":
        if not isinstance(raw.get("type"), str):
            raise InvalidDraft(f"column {name}: the default needs the column's type")
        value = check_default(raw.get("default"), raw["type"], f"column {name}")
        clause = f"ALTER COLUMN {col} SET DEFAULT {default_sql(value)}"
        summary = f"Restore the default of {table}.{name}"
    elif kind in _COLUMN_CLAUSES:
        text, said = _COLUMN_CLAUSES[kind]
        clause, summary = text.format(c=col), said.format(t=table, n=name)
    else:
        raise InvalidDraft(f"unknown step {kind[:40]!r}")
    return DownStep(Operation(kind, table, f"{where} {clause};", summary, name))


def _step(schema: str, raw: Any) -> DownStep:
    if not isinstance(raw, dict) or not isinstance(raw.get("op"), str):
        raise InvalidDraft("a step must be an object with op")
    kind = raw["op"]
    if kind == "impossible":
        raise NoDown(f"it cannot be undone: {str(raw.get('what'))[:200]}")
    table = ident(raw.get("table"), "table")
    if kind == "drop_table":
        return DownStep(
            Operation("drop_table", table, f"DROP TABLE {_q(schema, table)} CASCADE;",
                      f"Drop table {table}"),
            f"the rows of {table} are deleted",
        )  # fmt: skip
    if kind == "create_table":
        return _create(schema, table, raw.get("columns"))
    if kind == "add_column":
        return _add_column(schema, table, raw.get("definition"))
    if kind == "drop_relationship":
        name = quote_ident(ident(raw.get("name"), "relationship"))
        sql = f"ALTER TABLE {_q(schema, table)} DROP CONSTRAINT {name};"
        return DownStep(Operation("drop_relationship", table, sql, f"Remove relationship {name}"))
    if kind == "add_relationship":
        return _relationship(schema, table, raw)
    return _column_step(schema, table, kind, raw)


def parse_down(text: str, schema: str) -> list[DownStep]:
    """The rollback of a migration file's text, in the app schema ``schema`` (validated).

    Raises:
        NoDown: the file has no down record (written before down records existed, or edited),
            or a step in it does not validate or cannot be undone.
    """
    lines = [line for line in text.splitlines() if line.startswith(DOWN_MARK)]
    if len(lines) != 1:
        raise NoDown("it has no record of how to undo it (written by an older version?)")
    try:
        raw = json.loads(lines[0][len(DOWN_MARK) :])
    except ValueError as exc:
        raise NoDown("its undo record is not valid JSON") from exc
    if not isinstance(raw, list) or len(raw) > MAX_DOWN_STEPS:
        raise NoDown("its undo record is not a list of steps")
    try:
        return [_step(schema, item) for item in raw]
    except InvalidDraft as exc:
        raise NoDown(f"its undo record is not valid: {exc}") from exc
