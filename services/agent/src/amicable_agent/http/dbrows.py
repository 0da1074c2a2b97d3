"""``/api/db/<id>/tables/<table>/rows``: the database pane's row changes (editors only).

* ``POST …/rows`` ``{values: {column: value}}`` -> 201 ``{table, row}`` (columns left out
  get their defaults).
* ``PATCH …/rows`` ``{key: {pk column: value}, values: {column: value}}`` -> ``{table, row}``.
* ``DELETE …/rows`` ``{key: {pk column: value}}`` -> ``{table, deleted: 1, key}``.

Values are JSON in the column's terms (numbers or digit strings for numeric columns,
``true``/``false`` for booleans, any JSON for ``json``/``jsonb``, strings otherwise) and
reach PostgreSQL as data, never as SQL (:mod:`amicable_agent.db.rows`). Errors, all
``{error, detail}``: 403 ``read_only`` (a viewer), 400 ``invalid_table`` /
``invalid_column`` / ``invalid_value`` / ``invalid_key`` / ``invalid_request`` /
``key_change`` (a primary key column in ``values``) / ``empty_change``, 404
``unknown_table`` / ``unknown_column`` / ``row_not_found``, 409 ``read_only_table`` (no
primary key) / ``row_rejected`` (PostgreSQL refused: a duplicate key, a missing required
value, a broken reference), 413 ``too_large`` (body over 256 KiB), 502 when Hasura fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, jsonify, request

from amicable_agent.db.introspect import MAX_CELL_CHARS
from amicable_agent.db.rows import (
    MAX_ROW_BODY_BYTES,
    InvalidRow,
    check_key,
    check_values,
    delete_sql,
    insert_sql,
    parse_answer,
    primary_key,
    read_only_reason,
    update_sql,
)
from amicable_agent.db.schema_model import InvalidDraft, ident
from amicable_agent.db.sql import app_schema_name
from amicable_agent.errors import HasuraError

from .authz import requires
from .bodies import HttpError, json_object
from .dbschema_apply import current_schema, editor, hasura_failed

if TYPE_CHECKING:
    from amicable_agent.db.schema_model import ColumnDef, TableDef

bp = Blueprint("dbrows", __name__)
_STATUS = {"unknown_column": 404, "read_only_table": 409}
#: PostgreSQL messages that mean the value, not the row, is wrong.
_VALUE_ERRORS = ("invalid input syntax", "out of range", "invalid input value")
_ROUTE = "/api/db/<project_id>/tables/<table>/rows"


def _refused(exc: InvalidRow) -> HttpError:
    return HttpError(_STATUS.get(exc.code, 400), exc.code, str(exc))


async def _body() -> dict[str, Any]:
    # The raw body is already read (and cached) by the app's JSON check; a chunked body
    # has no Content-Length, so its real size counts.
    size = len(await request.get_data(cache=True, as_text=False))
    if size > MAX_ROW_BODY_BYTES:
        raise HttpError(413, "too_large", f"a row change is at most {MAX_ROW_BODY_BYTES} bytes")
    return await json_object()


async def _table(project_id: str, table: str) -> TableDef:
    try:
        name = ident(table, "table")
    except InvalidDraft as exc:
        raise HttpError(400, "invalid_table", str(exc)) from exc
    found = (await current_schema(project_id)).table(name)
    if found is None:
        raise HttpError(404, "unknown_table", f"there is no table {name}")
    return found


def _writable(found: TableDef) -> None:
    reason = read_only_reason(found)
    if reason is not None:
        raise HttpError(409, "read_only_table", reason)


async def _run(sql: str) -> tuple[int, dict[str, Any] | None]:
    try:
        return parse_answer(await editor().db.client.run_sql(sql))
    except HasuraError as exc:
        if exc.code == "postgres-error":
            text = exc.detail.removeprefix("query execution failed: ")[:600]
            bad_value = any(marker in text for marker in _VALUE_ERRORS)
            code = "invalid_value" if bad_value else "row_rejected"
            raise HttpError(400 if bad_value else 409, code, text) from exc
        raise hasura_failed(exc, "row_failed") from exc


def _values(found: TableDef, body: dict[str, Any], *, editing: bool) -> dict[str, Any]:
    try:
        values = check_values(found, body.get("values", {}), "values")
    except InvalidRow as exc:
        raise _refused(exc) from exc
    if editing:
        if not values:
            raise HttpError(400, "empty_change", "values must name at least one column")
        keyed = sorted(set(values) & set(primary_key(found)))
        if keyed:
            raise HttpError(
                400, "key_change",
                f"the primary key ({', '.join(keyed)}) cannot be edited; add a new row instead",
            )  # fmt: skip
    return values


def _key(found: TableDef, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_key(found, body.get("key"))
    except InvalidRow as exc:
        raise _refused(exc) from exc


@bp.post(_ROUTE)
@requires("editor")
async def insert_row(project_id: str, table: str) -> tuple[Response, int]:
    """Add a row; see the module docstring."""
    body = await _body()
    found = await _table(project_id, table)
    _writable(found)
    values = _values(found, body, editing=False)
    _, row = await _run(insert_sql(app_schema_name(project_id), found, values))
    return jsonify({"table": found.name, "row": row}), 201


@bp.patch(_ROUTE)
@requires("editor")
async def update_row(project_id: str, table: str) -> Response:
    """Change cells of one row, named by its primary key."""
    body = await _body()
    found = await _table(project_id, table)
    key = _key(found, body)
    values = _values(found, body, editing=True)
    count, row = await _run(update_sql(app_schema_name(project_id), found, key, values))
    if count == 0:
        raise HttpError(404, "row_not_found", f"table {found.name} has no row with that key")
    return jsonify({"table": found.name, "row": row})


@bp.delete(_ROUTE)
@requires("editor")
async def delete_row(project_id: str, table: str) -> Response:
    """Delete one row, named by its primary key."""
    body = await _body()
    found = await _table(project_id, table)
    key = _key(found, body)
    count, _ = await _run(delete_sql(app_schema_name(project_id), found, key))
    if count == 0:
        raise HttpError(404, "row_not_found", f"table {found.name} has no row with that key")
    return jsonify({"table": found.name, "deleted": count, "key": key})


def rows_access(found: TableDef, role: str) -> dict[str, Any]:
    """The rows answer's fields saying whether and how the caller may change rows."""
    reason = read_only_reason(found)
    if role == "viewer":
        reason = "you can view this project but not change it"
    return {
        "read_only": reason is not None,
        "read_only_reason": reason,
        "primary_key": primary_key(found),
        "column_info": [_column_info(c) for c in found.columns],
        "max_cell_chars": MAX_CELL_CHARS,
    }


def _column_info(column: ColumnDef) -> dict[str, Any]:
    has_default = column.default is not None or column.type in ("serial", "bigserial")
    return {"name": column.name, "type": column.type, "nullable": column.nullable,
            "is_primary": column.is_primary, "has_default": has_default}  # fmt: skip
