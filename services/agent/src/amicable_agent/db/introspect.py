"""Reading an app's schema and a page of a table's rows through ``run_sql`` (read-only).

One statement answers the whole schema as JSON text (tables, columns, primary keys,
single-column foreign keys) so the result does not depend on how Hasura prints values.
Defaults come back in the draft's terms where they have one (``'x'::text`` -> ``"x"``,
``now()`` -> ``{"raw": "now()"}``); a ``nextval(…)`` default makes the column ``serial`` /
``bigserial``; any other expression is shown as ``{"raw": "<expression>"}`` (a draft may
keep it, never write a new one).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .schema_model import NUMERIC_TYPES, ColumnDef, RelationshipDef, SchemaDef, TableDef
from .sql import quote_ident, quote_literal

if TYPE_CHECKING:
    from .hasura import HasuraClient

_RULES = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_STRING_DEFAULT = re.compile(r"'((?:[^']|'')*)'::(?:text|character varying|[a-z ]+)", re.S)
_NUMBER = re.compile(r"\(?(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\)?(?:::[a-z ]+)?", re.I)
MAX_CELL_CHARS = 2000


def schema_sql(schema: str) -> str:
    """The one statement that reads ``schema`` (a validated name) as JSON."""
    s = quote_literal(schema)
    return f"""SELECT json_build_object(
 'tables', (SELECT coalesce(json_agg(table_name ORDER BY table_name), '[]'::json)
   FROM information_schema.tables WHERE table_schema = {s} AND table_type = 'BASE TABLE'),
 'columns', (SELECT coalesce(json_agg(json_build_array(c.table_name, c.column_name,
     c.data_type, c.is_nullable = 'YES', c.column_default) ORDER BY c.table_name,
     c.ordinal_position), '[]'::json)
   FROM information_schema.columns c JOIN information_schema.tables t
     ON t.table_schema = c.table_schema AND t.table_name = c.table_name
   WHERE c.table_schema = {s} AND t.table_type = 'BASE TABLE'),
 'primary_keys', (SELECT coalesce(json_agg(json_build_array(cl.relname, a.attname)), '[]'::json)
   FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid
   JOIN pg_namespace n ON n.oid = cl.relnamespace
   JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey)
   WHERE con.contype = 'p' AND n.nspname = {s}),
 'foreign_keys', (SELECT coalesce(json_agg(json_build_array(con.conname, cl.relname,
     a.attname, rcl.relname, ra.attname, con.confdeltype, con.confupdtype)
     ORDER BY con.conname), '[]'::json)
   FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid
   JOIN pg_namespace n ON n.oid = cl.relnamespace
   JOIN pg_class rcl ON rcl.oid = con.confrelid
   JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
   JOIN pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = con.confkey[1]
   WHERE con.contype = 'f' AND n.nspname = {s} AND cardinality(con.conkey) = 1)
)::text AS schema;"""


def _default(expr: str | None, data_type: str) -> tuple[str, Any]:
    """``(type, default)`` in the draft's terms for an introspected column."""
    if expr is None:
        return data_type, None
    text = expr.strip()
    if text.startswith("nextval("):
        return {"integer": "serial", "bigint": "bigserial"}.get(data_type, data_type), None
    if text.lower() in ("now()", "current_timestamp", "current_date"):
        return data_type, {"raw": "now()"}
    if text in ("true", "false"):
        return data_type, text == "true"
    if m := _STRING_DEFAULT.fullmatch(text):
        value = m.group(1).replace("''", "'")
        if data_type in NUMERIC_TYPES and _NUMBER.fullmatch(value):
            text = value  # PostgreSQL quotes negative numbers: '-3'::integer
        else:
            return data_type, value
    if m := _NUMBER.fullmatch(text):
        number = m.group(1)
        return data_type, float(number) if any(ch in number for ch in ".eE") else int(number)
    return data_type, {"raw": text}


def parse_schema(schema: str, text: str) -> SchemaDef:
    """The :class:`SchemaDef` of :func:`schema_sql`'s JSON answer."""
    doc = json.loads(text)
    keys = {(t, c) for t, c in doc["primary_keys"]}
    columns: dict[str, list[ColumnDef]] = {t: [] for t in doc["tables"]}
    for table, name, data_type, nullable, expr in doc["columns"]:
        type_, default = _default(expr, data_type)
        columns.setdefault(table, []).append(
            ColumnDef(name, type_, bool(nullable), (table, name) in keys, default)
        )
    rels = tuple(
        RelationshipDef(
            name, ft, fc, tt, tc, _RULES.get(d, "NO ACTION"), _RULES.get(u, "NO ACTION")
        )
        for name, ft, fc, tt, tc, d, u in doc["foreign_keys"]
    )
    tables = tuple(TableDef(t, tuple(cols)) for t, cols in sorted(columns.items()))
    return SchemaDef(schema, tables, rels)


async def read_schema(client: HasuraClient, schema: str) -> SchemaDef:
    """The current schema of ``schema`` (a validated name; empty when it does not exist).

    Raises:
        HasuraError: Hasura failed.
    """
    rows = await client.run_sql(schema_sql(schema), read_only=True)
    if not rows or len(rows) < 2:
        return SchemaDef(schema)
    return parse_schema(schema, rows[1][0])


def rows_sql(schema: str, table: TableDef, limit: int, offset: int) -> str:
    """A page of ``table`` (and the table's row count) as one JSON value."""
    target = f"{quote_ident(schema)}.{quote_ident(table.name)}"
    keys = [quote_ident(c.name) for c in table.columns if c.is_primary]
    order = ", ".join(keys) if keys else "ctid"
    return (
        "SELECT json_build_object("
        f"'total', (SELECT count(*) FROM {target}), "
        "'rows', (SELECT coalesce(json_agg(row_to_json(p)), '[]'::json) FROM "
        f"(SELECT * FROM {target} ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}) p)"
        ")::text AS page;"
    )


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        value = json.dumps(value)
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        return value[:MAX_CELL_CHARS] + "…"
    return value


async def read_rows(
    client: HasuraClient, schema: str, table: TableDef, *, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """``(total rows, this page)``; long text and JSON values cut at :data:`MAX_CELL_CHARS`.

    Raises:
        HasuraError: Hasura failed.
    """
    rows = await client.run_sql(rows_sql(schema, table, limit, offset), read_only=True)
    if not rows or len(rows) < 2:
        return 0, []
    doc = json.loads(rows[1][0])
    page = [{k: _cell(v) for k, v in row.items()} for row in doc["rows"]]
    return int(doc["total"]), page
