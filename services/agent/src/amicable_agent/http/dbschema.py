"""``/api/db/<id>/…``: the database pane's routes (upstream §2.6 shapes, fields added).

* ``GET …/schema`` (viewer) -> ``{schema, version, db_schema, db_role, template_id,
  read_only}``.
* ``GET …/tables/<table>/rows?limit=&offset=`` (viewer) -> ``{table, columns, rows, total,
  limit, offset, has_more, read_only, read_only_reason, primary_key, column_info,
  max_cell_chars}``; editors change rows through ``http/dbrows.py``, viewers only read.
* ``POST …/schema/review`` (editor) ``{base_version?, draft}`` -> ``{review, operations,
  warnings, destructive, destructive_details, sql_preview, base_version}``.
* ``POST …/schema/apply`` (editor) ``{base_version?, draft, confirm_destructive}`` ->
  ``{applied, new_version, version, schema, migration_files, checkpoint, git_sync, …}``;
  409 ``destructive_confirmation_required`` / ``version_conflict`` / ``turn_running`` /
  ``apply_failed`` (PostgreSQL refused; nothing changed).
* ``POST …/schema/intent`` (editor) ``{base_version?, draft, intent_text}`` -> upstream's
  intent answer; 503 ``model_unavailable``, 429 ``budget_exceeded``, 502 ``intent_failed``;
  the model call counts in the caller's and the project's spend however it ends (answered,
  failed after its retries, timed out or cancelled: every attempt is metered).

Errors are ``{error, detail}``; 404 ``db_disabled`` when the agent has no Hasura, 400
``invalid_draft`` for anything :func:`~amicable_agent.db.schema_model.parse_draft` refuses.
"""

from __future__ import annotations

import secrets

import trio
from quart import Blueprint, Response, jsonify, request

from amicable_agent.db.introspect import read_rows
from amicable_agent.db.schema_diff import plan, review
from amicable_agent.db.schema_intent import (
    SYSTEM,
    IntentReplyError,
    intent_prompt,
    intent_text,
    parse_intent_reply,
)
from amicable_agent.db.schema_model import (
    InvalidDraft,
    ident,
    schema_json,
    schema_version,
)
from amicable_agent.db.sql import app_schema_name
from amicable_agent.errors import HasuraError
from amicable_agent.loop.model_api import LlmError, TokenUsage
from amicable_agent.loop.small_tasks import metered_complete, usage_record
from amicable_agent.loop.spend import SpendGuard

from .authz import checked_project, current_role, requires
from .bodies import HttpError, json_object
from .dbrows import rows_access
from .dbschema_apply import (
    app_state,
    apply_draft,
    checked_draft,
    current_schema,
    editor,
    hasura_failed,
)
from .guard import current_caller

bp = Blueprint("dbschema", __name__)
MAX_PAGE = 200
INTENT_TIMEOUT_S = 120.0


@bp.get("/api/db/<project_id>/schema")
@requires("viewer")
async def get_schema(project_id: str) -> Response:
    """The project's tables, columns and relationships."""
    project = await checked_project(project_id, "viewer")
    current = await current_schema(project_id)
    name = app_schema_name(project_id)
    return jsonify({
        "schema": schema_json(current, app_id=project_id), "version": schema_version(current),
        "db_schema": name, "db_role": name, "template_id": project.template_id,
        "read_only": current_role() == "viewer",
    })  # fmt: skip


def _page_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise HttpError(400, "invalid_request", f"{name} must be an integer {low}..{high}")
    return int(raw)


@bp.get("/api/db/<project_id>/tables/<table>/rows")
@requires("viewer")
async def get_rows(project_id: str, table: str) -> Response:
    """A page of a table's rows."""
    try:
        name = ident(table, "table")
    except InvalidDraft as exc:
        raise HttpError(400, "invalid_table", str(exc)) from exc
    limit = _page_arg("limit", 50, 1, MAX_PAGE)
    offset = _page_arg("offset", 0, 0, 10**9)
    found = (await current_schema(project_id)).table(name)
    if found is None:
        raise HttpError(404, "unknown_table", f"there is no table {name}")
    try:
        total, rows = await read_rows(
            editor().db.client, app_schema_name(project_id), found, limit=limit, offset=offset
        )
    except HasuraError as exc:
        raise hasura_failed(exc, "rows_failed") from exc
    return jsonify({
        "table": name, "columns": [c.name for c in found.columns], "rows": rows,
        "total": total, "limit": limit, "offset": offset,
        "has_more": offset + len(rows) < total, **rows_access(found, current_role()),
    })  # fmt: skip


@bp.post("/api/db/<project_id>/schema/review")
@requires("editor")
async def review_draft(project_id: str) -> Response:
    """The operations, SQL and destructive flags of a draft; nothing is changed."""
    body = await json_object()
    current = await current_schema(project_id)
    draft = checked_draft(body, current)
    try:
        operations = plan(current, draft)
    except InvalidDraft as exc:
        raise HttpError(400, "invalid_draft", str(exc)) from exc
    return jsonify({**review(operations), "base_version": schema_version(current)})


@bp.post("/api/db/<project_id>/schema/apply")
@requires("editor")
async def apply(project_id: str) -> Response:
    """Apply a reviewed draft; see the module docstring."""
    body = await json_object()
    confirm = body.get("confirm_destructive", False)
    if not isinstance(confirm, bool):
        raise HttpError(400, "invalid_request", "confirm_destructive must be true or false")
    project = await checked_project(project_id, "editor")
    return jsonify(await apply_draft(project, body, confirm=confirm))


async def ask_model(project_id: str, prompt: str) -> str:
    """The project's model's answer to ``prompt``, within the caller's and the project's
    budgets; what the call costs is recorded in the spend like a turn's call, however it
    ends.

    Raises:
        HttpError: 503 ``model_unavailable``, 429 ``budget_exceeded``.
        LlmError: the model failed (its attempts are recorded).

    Cancellation: the attempts so far are recorded, then the cancellation propagates.
    """
    state = app_state()
    engine = state.manager.deps.engine
    services = engine.model_services() if engine is not None else None
    if services is None:
        raise HttpError(503, "model_unavailable", "no model is configured on this agent")
    sub = current_caller().user.sub
    guard = await SpendGuard.load(
        state.store, services.budgets, project_id=project_id, user_sub=sub
    )
    over = guard.exceeded()
    if over is not None:
        raise HttpError(429, "budget_exceeded", over)
    spec = await services.models.project_model(state.store, project_id)
    turn_id = f"schema-intent-{secrets.token_hex(6)}"

    async def record(usage: TokenUsage) -> None:
        await state.store.record_usage(usage_record(spec, usage, project_id, turn_id, sub))

    return await metered_complete(
        services.models.client(spec), SYSTEM, prompt, max_output_tokens=8192, record=record
    )


@bp.post("/api/db/<project_id>/schema/intent")
@requires("editor")
async def intent(project_id: str) -> Response:
    """A draft from the person's words, through the project's model."""
    body = await json_object()
    try:
        text = intent_text(body)
    except InvalidDraft as exc:
        raise HttpError(400, "missing_intent_text", str(exc)) from exc
    current = await current_schema(project_id)
    draft = checked_draft(body, current)
    try:
        with trio.fail_after(INTENT_TIMEOUT_S):
            answer = await ask_model(project_id, intent_prompt(current, draft, text))
        reply = parse_intent_reply(answer, current, draft)
    except (LlmError, trio.TooSlowError, IntentReplyError) as exc:
        detail = exc.message if isinstance(exc, LlmError) else str(exc) or "timed out"
        raise HttpError(502, "intent_failed", detail[:600]) from exc
    return jsonify({**reply, "base_version": schema_version(current)})
