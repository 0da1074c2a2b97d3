"""The schema editor's model of an app database, and the strict parser of a draft.

The wire shape is upstream's (``docs/database.md``): ``{schema_name, tables: [{name, label,
position{x,y}, columns: [{name, label, type, nullable, is_primary, default}]}],
relationships: [{name, from_table, from_column, to_table, to_column, on_delete,
on_update}]}``. A draft comes from the browser, so :func:`parse_draft` accepts only
identifiers matching ``^[a-z][a-z0-9_]{0,62}$``, the column types of
:data:`DRAFT_TYPES`, the foreign-key rules of :data:`FK_RULES` and defaults that are a
boolean, a finite number, a string or ``{"raw": "now()"}`` (or exactly the default the
column already has). The schema name is the app's own: a draft naming another is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import attrs

from amicable_agent.errors import AgentError

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
MAX_TABLES = 200
MAX_COLUMNS = 100
MAX_RELATIONSHIPS = 400
MAX_LABEL_CHARS = 200
MAX_DEFAULT_CHARS = 10_000

#: Column types a draft may use -> the SQL type (upstream's list and aliases).
DRAFT_TYPES: dict[str, str] = {
    "text": "text", "string": "text",
    "integer": "integer", "int": "integer",
    "bigint": "bigint",
    "boolean": "boolean", "bool": "boolean",
    "numeric": "numeric", "number": "numeric",
    "real": "real", "float": "real",
    "double precision": "double precision", "double": "double precision",
    "jsonb": "jsonb", "json": "jsonb",
    "date": "date",
    "uuid": "uuid",
    "timestamp with time zone": "timestamp with time zone",
    "timestamptz": "timestamp with time zone", "timestamp": "timestamp with time zone",
    "serial": "serial", "bigserial": "bigserial",
}  # fmt: skip
#: Types whose defaults may be numbers / ``now()``.
NUMERIC_TYPES = frozenset({"integer", "bigint", "real", "double precision", "numeric"})
NOW_TYPES = frozenset({"timestamp with time zone", "date"})
#: ``ON DELETE`` / ``ON UPDATE`` rules a relationship may use.
FK_RULES = ("NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT")

_TABLE_KEYS = frozenset({"name", "label", "position", "columns"})
_COLUMN_KEYS = frozenset({"name", "label", "type", "nullable", "is_primary", "default"})
_REL_KEYS = frozenset(
    {"name", "from_table", "from_column", "to_table", "to_column", "on_delete", "on_update"}
)
_DRAFT_KEYS = frozenset({"app_id", "schema_name", "tables", "relationships"})


class InvalidDraft(AgentError, ValueError):
    """A draft the editor cannot use; ``str(exc)`` says which part and why."""


@attrs.frozen
class ColumnDef:
    """One column. ``default`` is the wire value (bool, number, string, ``{"raw": …}``)."""

    name: str
    type: str
    nullable: bool = True
    is_primary: bool = False
    default: Any = None
    label: str | None = None


@attrs.frozen
class TableDef:
    """One table with its columns, in order."""

    name: str
    columns: tuple[ColumnDef, ...]
    label: str | None = None
    position: tuple[float, float] | None = None

    def column(self, name: str) -> ColumnDef | None:
        """The column called ``name``, if any."""
        return next((c for c in self.columns if c.name == name), None)


@attrs.frozen
class RelationshipDef:
    """A single-column foreign key ``from_table.from_column -> to_table.to_column``."""

    name: str
    from_table: str
    from_column: str
    to_table: str
    to_column: str
    on_delete: str = "NO ACTION"
    on_update: str = "NO ACTION"


@attrs.frozen
class SchemaDef:
    """A whole app schema (what introspection finds, or what a draft asks for)."""

    schema_name: str
    tables: tuple[TableDef, ...] = ()
    relationships: tuple[RelationshipDef, ...] = ()

    def table(self, name: str) -> TableDef | None:
        """The table called ``name``, if any."""
        return next((t for t in self.tables if t.name == name), None)


def ident(value: Any, what: str) -> str:
    """``value`` if it is a usable identifier.

    Raises:
        InvalidDraft: not a string matching ``^[a-z][a-z0-9_]{0,62}$``.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        shown = repr(value)[:80]
        raise InvalidDraft(
            f"{what} {shown} is not a valid name: use 1-63 lower case letters, digits "
            "and _, starting with a letter"
        )
    return value


def _label(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_LABEL_CHARS:
        raise InvalidDraft(f"{what}: label must be a string of at most {MAX_LABEL_CHARS} chars")
    return value


def _keys(item: Any, allowed: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidDraft(f"{what} must be an object")
    unknown = sorted(str(k) for k in set(item) - allowed)
    if unknown:
        raise InvalidDraft(f"{what}: unknown keys {', '.join(unknown)[:200]}")
    return item


def sql_type(value: Any, what: str) -> str:
    """The SQL type of a draft's column type.

    Raises:
        InvalidDraft: not one of :data:`DRAFT_TYPES`.
    """
    key = " ".join(value.lower().split()) if isinstance(value, str) else None
    found = DRAFT_TYPES.get(key) if key is not None else None
    if found is None:
        raise InvalidDraft(
            f"{what}: unknown type {repr(value)[:80]}; use one of "
            + ", ".join(sorted(set(DRAFT_TYPES.values())))
        )
    return found


def check_default(value: Any, type_: str, what: str) -> Any:
    """``value`` if it is an acceptable default for a column of SQL type ``type_``.

    Raises:
        InvalidDraft: not a bool/finite number/string/``{"raw": "now()"}`` fitting the type.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        if type_ != "boolean":
            raise InvalidDraft(f"{what}: a boolean default needs type boolean")
        return value
    if isinstance(value, int | float):
        if type_ not in NUMERIC_TYPES:
            raise InvalidDraft(f"{what}: a number default needs a numeric type")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidDraft(f"{what}: the default must be a finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_DEFAULT_CHARS or "\x00" in value:
            raise InvalidDraft(f"{what}: the default is too long or contains NUL")
        return value
    if isinstance(value, dict) and set(value) == {"raw"} and isinstance(value["raw"], str):
        if value["raw"].strip().lower() != "now()":
            raise InvalidDraft(f'{what}: the only raw default allowed is "now()"')
        if type_ not in NOW_TYPES:
            raise InvalidDraft(f"{what}: now() needs a timestamp or date column")
        return {"raw": "now()"}
    raise InvalidDraft(f'{what}: a default must be a boolean, number, string or {{"raw": "now()"}}')


def _column(item: Any, table: str, current: TableDef | None) -> ColumnDef:
    raw = _keys(item, _COLUMN_KEYS, f"a column of {table}")
    name = ident(raw.get("name"), f"column of {table}")
    what = f"column {table}.{name}"
    existing = current.column(name) if current is not None else None
    given_type = raw.get("type")
    if existing is not None and given_type == existing.type:
        type_ = existing.type  # an introspected type outside the list may stay as it is
    else:
        type_ = sql_type(given_type, what)
    nullable, primary = raw.get("nullable", True), raw.get("is_primary", False)
    if not isinstance(nullable, bool) or not isinstance(primary, bool):
        raise InvalidDraft(f"{what}: nullable and is_primary must be true or false")
    default = raw.get("default")
    if existing is None or default != existing.default:
        default = check_default(default, type_, what)
    return ColumnDef(name, type_, nullable, primary, default, _label(raw.get("label"), what))


def _position(value: Any, what: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidDraft(f"{what}: position must be {{x, y}}")
    x, y = value.get("x"), value.get("y")
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (x, y)):
        raise InvalidDraft(f"{what}: position must be {{x, y}} with finite numbers")
    return float(x), float(y)  # type: ignore[arg-type]


def _table(item: Any, current: SchemaDef) -> TableDef:
    raw = _keys(item, _TABLE_KEYS, "a table")
    name = ident(raw.get("name"), "table")
    columns = raw.get("columns", [])
    if not isinstance(columns, list) or len(columns) > MAX_COLUMNS:
        raise InvalidDraft(f"table {name}: columns must be a list of at most {MAX_COLUMNS}")
    parsed = tuple(_column(c, name, current.table(name)) for c in columns)
    names = [c.name for c in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidDraft(f"table {name}: duplicate columns {', '.join(dupes)}")
    what = f"table {name}"
    return TableDef(
        name, parsed, _label(raw.get("label"), what), _position(raw.get("position"), what)
    )


def _rule(value: Any, what: str) -> str:
    if value is None or value == "":  # upstream's editor may send "" for "not set"
        return "NO ACTION"
    key = " ".join(value.upper().split()) if isinstance(value, str) else None
    if key not in FK_RULES:
        raise InvalidDraft(f"{what}: rule must be one of {', '.join(FK_RULES)}")
    return key


def _relationship(item: Any, tables: dict[str, TableDef]) -> RelationshipDef:
    raw = _keys(item, _REL_KEYS, "a relationship")
    ends = [ident(raw.get(k), k) for k in ("from_table", "from_column", "to_table", "to_column")]
    from_table, from_column, to_table, to_column = ends
    name = raw.get("name") or f"{from_table}_{from_column}_fkey"[:63]
    name = ident(name, "relationship name")
    for table, column in ((from_table, from_column), (to_table, to_column)):
        if table not in tables or tables[table].column(column) is None:
            raise InvalidDraft(f"relationship {name}: {table}.{column} is not in the draft")
    what = f"relationship {name}"
    return RelationshipDef(
        name, from_table, from_column, to_table, to_column,
        _rule(raw.get("on_delete"), what), _rule(raw.get("on_update"), what),
    )  # fmt: skip


def parse_draft(raw: Any, current: SchemaDef) -> SchemaDef:
    """The validated draft for the app whose schema is now ``current``.

    Raises:
        InvalidDraft: anything the editor will not turn into SQL; the message says what.
    """
    body = _keys(raw, _DRAFT_KEYS, "draft")
    schema = body.get("schema_name")
    if schema is not None and schema != current.schema_name:
        raise InvalidDraft("draft.schema_name must be this app's schema (or left out)")
    tables, rels = body.get("tables", []), body.get("relationships", [])
    if not isinstance(tables, list) or len(tables) > MAX_TABLES:
        raise InvalidDraft(f"draft.tables must be a list of at most {MAX_TABLES}")
    if not isinstance(rels, list) or len(rels) > MAX_RELATIONSHIPS:
        raise InvalidDraft(f"draft.relationships must be a list of at most {MAX_RELATIONSHIPS}")
    parsed = [_table(t, current) for t in tables]
    by_name = {t.name: t for t in parsed}
    if len(by_name) != len(parsed):
        raise InvalidDraft("draft.tables: a table name appears twice")
    relationships = tuple(_relationship(r, by_name) for r in rels)
    if len({r.name for r in relationships}) != len(relationships):
        raise InvalidDraft("draft.relationships: a relationship name appears twice")
    return SchemaDef(current.schema_name, tuple(parsed), relationships)


def schema_json(schema: SchemaDef, *, app_id: str | None = None) -> dict[str, Any]:
    """The wire form (upstream's schema model, labels defaulting to names and a grid layout)."""
    tables = []
    for i, table in enumerate(schema.tables):
        x, y = table.position or (40.0 + 320.0 * (i % 3), 40.0 + 280.0 * (i // 3))
        columns = [
            {"name": c.name, "label": c.label or c.name, "type": c.type, "nullable": c.nullable,
             "is_primary": c.is_primary, "default": c.default}
            for c in table.columns
        ]  # fmt: skip
        tables.append({"name": table.name, "label": table.label or table.name,
                       "position": {"x": x, "y": y}, "columns": columns})  # fmt: skip
    return {
        "app_id": app_id,
        "schema_name": schema.schema_name,
        "tables": tables,
        "relationships": [attrs.asdict(r) for r in schema.relationships],
    }


def schema_version(schema: SchemaDef) -> str:
    """A hash of what the database holds (labels and layout left out): equal schemas have
    equal versions whatever order introspection listed them in."""
    canonical = {
        "tables": sorted(
            [t.name, [[c.name, c.type, c.nullable, c.is_primary, c.default] for c in t.columns]]
            for t in schema.tables
        ),
        "relationships": sorted(
            [r.name, r.from_table, r.from_column, r.to_table, r.to_column, r.on_delete, r.on_update]
            for r in schema.relationships
        ),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
