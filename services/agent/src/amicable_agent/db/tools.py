"""The model's database tools: ``db_create_table``, ``db_truncate_table``, ``db_drop_table``.

Upstream §5.2. They exist only for a session whose app database was prepared at INIT
(:meth:`AppDatabase.session_tools`). Every statement is built from identifiers that match
``^[a-z][a-z0-9_]{0,62}$`` (quoted with :func:`~.sql.quote_ident`) and defaults that are
booleans, finite numbers, strings quoted by :func:`~.sql.quote_literal`, or ``now()``;
nothing the model sends reaches SQL any other way. Each Hasura request has the client's
deadline and a tool call as a whole has :attr:`AppDbTools.deadline_s`. Failures come back as
:class:`DbToolResult` with ``is_error``; nothing here raises into the turn except
cancellation.

Truncate and drop are destructive: :data:`DESTRUCTIVE_DB_TOOLS` pause the turn for approval
(``safety.needs_approval``).
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import attrs
import trio

from amicable_agent.errors import AgentError, HasuraError

from .hasura import HasuraClient
from .provisioning import Provisioner
from .sql import quote_ident, quote_literal

log = logging.getLogger(__name__)

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
#: The column every table gets; the model may not declare it.
RESERVED_COLUMN = "id"
MAX_COLUMNS = 100
MAX_DEFAULT_CHARS = 10_000

#: Accepted column types: what the model may write -> the SQL type used.
COLUMN_TYPES: dict[str, str] = {
    "text": "text",
    "boolean": "boolean",
    "int": "integer",
    "integer": "integer",
    "bigint": "bigint",
    "real": "real",
    "double precision": "double precision",
    "numeric": "numeric",
    "jsonb": "jsonb",
    "timestamptz": "timestamptz",
    "date": "date",
    "uuid": "uuid",
}
_NUMERIC_TYPES = frozenset({"integer", "bigint", "real", "double precision", "numeric"})
_NOW_TYPES = frozenset({"timestamptz", "date"})
_COLUMN_KEYS = frozenset({"name", "type", "nullable", "default"})

CREATE_TABLE = "db_create_table"
TRUNCATE_TABLE = "db_truncate_table"
DROP_TABLE = "db_drop_table"
#: Names of the DB tools.
DB_TOOL_NAMES = frozenset({CREATE_TABLE, TRUNCATE_TABLE, DROP_TABLE})
#: DB tools that need the person's approval before they run.
DESTRUCTIVE_DB_TOOLS = frozenset({TRUNCATE_TABLE, DROP_TABLE})

_TABLE_PROP = {
    "type": "string",
    "description": "Table name: lower case letters, digits and _, starting with a letter",
}
#: Tool specs (Messages API ``tools`` entries without the name).
DB_TOOL_DEFINITIONS: dict[str, dict[str, Any]] = {
    CREATE_TABLE: {
        "description": (
            "Create a table in this app's database (if it does not exist yet) and make it "
            "readable and writable by the app through GraphQL. Every table gets an "
            "auto-increment primary key `id`; do not declare it. Types: "
            + ", ".join(sorted(set(COLUMN_TYPES)))
            + '. A default is a boolean, number or string, or {"raw": "now()"}.'
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "table": _TABLE_PROP,
                "columns": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "type": {"type": "string", "enum": sorted(set(COLUMN_TYPES))},
                            "nullable": {"type": "boolean", "default": True},
                            "default": {
                                "description": 'boolean, number, string or {"raw": "now()"}'
                            },
                        },
                        "required": ["name", "type"],
                    },
                },
            },
            "required": ["table", "columns"],
        },
    },
    TRUNCATE_TABLE: {
        "description": "Delete every row of a table of this app's database (asks the person "
        "for approval first).",
        "input_schema": {
            "type": "object",
            "properties": {"table": _TABLE_PROP},
            "required": ["table"],
        },
    },
    DROP_TABLE: {
        "description": "Remove a table and its data from this app's database (asks the "
        "person for approval first).",
        "input_schema": {
            "type": "object",
            "properties": {"table": _TABLE_PROP},
            "required": ["table"],
        },
    },
}


class DbToolInputError(AgentError, ValueError):
    """The model's arguments are invalid; ``str(exc)`` says why, for the model."""


@attrs.frozen
class Column:
    """One validated column of ``db_create_table``.

    Attributes:
        name: a safe identifier (not ``id``).
        sql_type: the SQL type (a value of :data:`COLUMN_TYPES`).
        nullable: whether NULL is allowed.
        default_sql: the ``DEFAULT`` expression, already safe SQL, or None.
    """

    name: str
    sql_type: str
    nullable: bool = True
    default_sql: str | None = None

    def ddl(self) -> str:
        """The column's definition inside ``CREATE TABLE``."""
        parts = [quote_ident(self.name), self.sql_type]
        if not self.nullable:
            parts.append("NOT NULL")
        if self.default_sql is not None:
            parts.append(f"DEFAULT {self.default_sql}")
        return " ".join(parts)

    def describe(self) -> str:
        """``name type`` plus ``not null``/``default`` notes, for the model."""
        text = f"{self.name} {self.sql_type}"
        if not self.nullable:
            text += " not null"
        if self.default_sql is not None:
            text += f" default {self.default_sql}"
        return text


def valid_table(value: Any) -> str:
    """``value`` if it is a usable table name.

    Raises:
        DbToolInputError: not a string matching ``^[a-z][a-z0-9_]{0,62}$``.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise DbToolInputError(
            f"invalid table name {value!r}: use 1-63 lower case letters, digits and _, "
            "starting with a letter"
        )
    return value


def default_sql(value: Any, sql_type: str, column: str) -> str | None:
    """The SQL of a column default, or None for no default.

    Raises:
        DbToolInputError: not a bool/number/string/``{"raw": "now()"}``, or one that does
            not fit the column type.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        if sql_type != "boolean":
            raise DbToolInputError(f"column {column}: a boolean default needs type boolean")
        return "true" if value else "false"
    if isinstance(value, int | float):
        if sql_type not in _NUMERIC_TYPES:
            raise DbToolInputError(f"column {column}: a number default needs a numeric type")
        if isinstance(value, float) and not math.isfinite(value):
            raise DbToolInputError(f"column {column}: the default must be a finite number")
        text = str(value) if isinstance(value, int) else repr(value)
        return f"({text})" if text.startswith("-") else text
    if isinstance(value, str):
        if len(value) > MAX_DEFAULT_CHARS:
            raise DbToolInputError(f"column {column}: the default is too long")
        try:
            return quote_literal(value)
        except ValueError as exc:
            raise DbToolInputError(f"column {column}: the default contains a NUL") from exc
    if isinstance(value, dict) and set(value) == {"raw"}:
        raw = value["raw"]
        if isinstance(raw, str) and raw.strip().lower() == "now()":
            if sql_type not in _NOW_TYPES:
                raise DbToolInputError(f"column {column}: now() needs type timestamptz or date")
            return "now()"
        raise DbToolInputError(f'column {column}: the only raw default allowed is "now()"')
    raise DbToolInputError(
        f'column {column}: a default must be a boolean, number, string or {{"raw": "now()"}}'
    )


def parse_column(item: Any) -> Column:
    """One validated column spec.

    Raises:
        DbToolInputError: why it is not acceptable.
    """
    if not isinstance(item, dict):
        raise DbToolInputError("each column must be an object {name, type, nullable, default}")
    unknown = set(item) - _COLUMN_KEYS
    if unknown:
        raise DbToolInputError(f"unknown column keys: {', '.join(sorted(map(str, unknown)))}")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DbToolInputError(
            f"invalid column name {name!r}: use 1-63 lower case letters, digits and _, "
            "starting with a letter"
        )
    if name == RESERVED_COLUMN:
        raise DbToolInputError("column id is reserved: every table already has id as its key")
    raw_type = item.get("type")
    key = " ".join(raw_type.lower().split()) if isinstance(raw_type, str) else None
    sql_type = COLUMN_TYPES.get(key) if key is not None else None
    if sql_type is None:
        raise DbToolInputError(
            f"column {name}: unknown type {raw_type!r}; use one of "
            + ", ".join(sorted(set(COLUMN_TYPES)))
        )
    nullable = item.get("nullable", True)
    if not isinstance(nullable, bool):
        raise DbToolInputError(f"column {name}: nullable must be true or false")
    return Column(name, sql_type, nullable, default_sql(item.get("default"), sql_type, name))


def parse_create_args(args: dict[str, Any]) -> tuple[str, tuple[Column, ...]]:
    """The table name and columns of a ``db_create_table`` call.

    Raises:
        DbToolInputError: why the call is not acceptable.
    """
    table = valid_table(args.get("table"))
    raw = args.get("columns", [])
    if not isinstance(raw, list):
        raise DbToolInputError("columns must be a list of {name, type, nullable, default}")
    if len(raw) > MAX_COLUMNS:
        raise DbToolInputError(f"at most {MAX_COLUMNS} columns")
    columns = tuple(parse_column(item) for item in raw)
    names = [c.name for c in columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DbToolInputError(f"duplicate columns: {', '.join(dupes)}")
    return table, columns


def qualified(schema: str, table: str) -> str:
    """``"schema"."table"`` for validated names."""
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def create_table_sql(schema: str, table: str, columns: tuple[Column, ...]) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with the ``id bigserial`` key and ``columns``."""
    defs = [f"{quote_ident(RESERVED_COLUMN)} bigserial PRIMARY KEY", *(c.ddl() for c in columns)]
    return f"CREATE TABLE IF NOT EXISTS {qualified(schema, table)} ({', '.join(defs)});"


def truncate_table_sql(schema: str, table: str) -> str:
    """``TRUNCATE TABLE`` of ``schema.table`` (validated names)."""
    return f"TRUNCATE TABLE {qualified(schema, table)};"


def drop_table_sql(schema: str, table: str) -> str:
    """``DROP TABLE IF EXISTS … CASCADE`` of ``schema.table`` (validated names)."""
    return f"DROP TABLE IF EXISTS {qualified(schema, table)} CASCADE;"


def root_fields(table: str) -> tuple[str, ...]:
    """The GraphQL root fields the app uses for ``table`` (the DB proxy maps them into the
    app's schema, see :mod:`.rewrite`)."""
    return (
        table, f"{table}_by_pk", f"{table}_aggregate", f"insert_{table}", f"insert_{table}_one",
        f"update_{table}", f"update_{table}_by_pk", f"delete_{table}", f"delete_{table}_by_pk",
    )  # fmt: skip


def status_line(name: str, args: dict[str, Any]) -> str | None:
    """The editor's ``update_file`` line for a DB tool call."""
    table = str(args.get("table", ""))[:63]
    verb = {CREATE_TABLE: "Creating", TRUNCATE_TABLE: "Emptying", DROP_TABLE: "Dropping"}
    return f"{verb[name]} table {table}" if name in verb else None


def describe_action(name: str, args: dict[str, Any]) -> str:
    """The approval panel's line for a destructive DB tool call."""
    table = str(args.get("table", ""))[:63]
    if name == TRUNCATE_TABLE:
        return f"Delete every row of database table {table} (cannot be undone)"
    return f"Drop database table {table} and all its data (cannot be undone)"


@attrs.frozen
class DbToolResult:
    """What a DB tool call produced: the text for the model and whether it failed."""

    content: str
    is_error: bool = False


def _hasura_text(exc: HasuraError) -> str:
    if exc.status == 0:
        return (
            f"Error: the app database is not reachable right now ({exc.code}); "
            "nothing was changed. Try again later."
        )
    detail = f": {exc.detail}" if exc.detail else ""
    return f"Error: the database refused this ({exc.code}{detail})"


@attrs.frozen
class AppDbTools:
    """The DB tools of one session's app.

    Attributes:
        app_id: the project id.
        schema: the app's schema (also its Hasura role).
        provisioner: tracks/untracks tables and grants permissions.
        client: the Hasura client (``run_sql``).
        lock: serialises DDL and metadata changes within the agent process (upstream: a
            process-wide lock), shared by every session of one :class:`AppDatabase`.
        deadline_s: bound on one tool call (each request also has the client's deadline).
    """

    app_id: str
    schema: str
    provisioner: Provisioner
    client: HasuraClient
    lock: trio.Lock
    deadline_s: float = 90.0

    async def run(self, name: str, args: dict[str, Any]) -> DbToolResult:
        """Run DB tool ``name``; any failure becomes an error result.

        Cancellation: propagates (a statement Hasura already received may still complete).
        """
        try:
            with trio.fail_after(self.deadline_s):
                async with self.lock:
                    if name == CREATE_TABLE:
                        return await self._create(args)
                    if name == TRUNCATE_TABLE:
                        return await self._truncate(valid_table(args.get("table")))
                    if name == DROP_TABLE:
                        return await self._drop(valid_table(args.get("table")))
            return DbToolResult(f"Error: unknown database tool {name!r}", True)
        except DbToolInputError as exc:
            return DbToolResult(f"Error: invalid input for {name}: {exc}", True)
        except HasuraError as exc:
            log.warning("app %s: %s failed: %s", self.schema, name, exc)
            return DbToolResult(_hasura_text(exc), True)
        except trio.TooSlowError:
            return DbToolResult(
                f"Error: {name} did not finish within {self.deadline_s:g}s; the database may "
                "be busy. Check before retrying.",
                True,
            )

    async def _exists(self, table: str) -> bool:
        rows = await self.client.run_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            f"{quote_literal(self.schema)} AND table_name = {quote_literal(table)};",
            read_only=True,
        )
        return bool(rows and len(rows) > 1)

    async def _create(self, args: dict[str, Any]) -> DbToolResult:
        table, columns = parse_create_args(args)
        existed = await self._exists(table)
        if not existed:
            await self.client.run_sql(create_table_sql(self.schema, table, columns))
        await self.provisioner.track_table(self.app_id, table)
        fields = root_fields(table)
        cols = "; ".join(["id bigint (primary key, set automatically)",
                          *(c.describe() for c in columns)])  # fmt: skip
        head = (
            f"Table {table} already existed; its columns were left as they are (drop it to "
            "change them). It is tracked and the app may read and write it."
            if existed
            else f"Created table {table} with columns: {cols}."
        )
        return DbToolResult(
            f"{head} The app reaches it with GraphQL through the endpoint in "
            f"window.__AMICABLE_DB__ (amicable-db.js) using the plain root fields "
            f"{', '.join(fields)}; the DB proxy maps them into the app's schema {self.schema}."
        )

    async def _truncate(self, table: str) -> DbToolResult:
        if not await self._exists(table):
            return DbToolResult(f"Error: table {table} does not exist", True)
        await self.client.run_sql(truncate_table_sql(self.schema, table))
        return DbToolResult(f"Emptied table {table}: all its rows were deleted.")

    async def _drop(self, table: str) -> DbToolResult:
        existed = await self._exists(table)
        await self.provisioner.untrack_table(self.app_id, table)
        await self.client.run_sql(drop_table_sql(self.schema, table), cascade=True)
        if not existed:
            return DbToolResult(f"Table {table} did not exist; nothing to drop.")
        return DbToolResult(f"Dropped table {table} and its data.")
