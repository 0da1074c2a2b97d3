"""The parts of ``/api/db/<id>/…`` that change things: checking a draft against the live
schema, and applying it as a checkpoint (``apply_draft``).

An applied change is recorded twice: in the database (all statements in one transaction)
and in the project, as ``/db/migrations/<UTC stamp>_<slug>.sql`` committed as a checkpoint
titled ``Database schema update: …`` through the same :class:`Checkpoints` the turns use.
Turns are held meanwhile (409 ``turn_running``), and the model reads a note about the
change before its next request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol import unstructure
from amicable_protocol.messages import MessageType, TraceEvent
from quart import Response, current_app, jsonify

from amicable_agent.db.schema_diff import Operation, plan, review
from amicable_agent.db.schema_down import down_steps
from amicable_agent.db.schema_editor import SchemaEditor, migration_file
from amicable_agent.db.schema_model import InvalidDraft, SchemaDef, parse_draft, schema_json
from amicable_agent.db.schema_model import schema_version as version_of
from amicable_agent.errors import (
    CheckpointError,
    HasuraError,
    RuntimeClientError,
    SandboxError,
    TurnRunning,
)
from amicable_agent.loop.compaction import append_user
from amicable_agent.sessions.checkpoints import Checkpoints

from .bodies import HttpError

if TYPE_CHECKING:
    from amicable_agent.store.base import Project

    from .state import AppState

#: How long an apply waits for a just-finished turn's checkpoint.
HOLD_WAIT_S = 60.0
#: ``tool_name`` of the ``trace_event`` announcing an applied change to the editors.
APPLY_TRACE_TOOL = "db_schema_apply"


class RichError(HttpError):
    """An error answer with fields besides ``{error, detail}`` (upstream's 409 bodies)."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(status, code, detail)
        self.extra = extra

    def response(self) -> Response:
        """``{error, detail, **extra}``."""
        resp = jsonify({"error": self.code, "detail": self.detail, **self.extra})
        resp.status_code = self.status
        return resp


def app_state() -> AppState:
    state: AppState = current_app.config["AMICABLE_STATE"]
    return state


def editor() -> SchemaEditor:
    """The schema editor, or 404 ``db_disabled``."""
    db = app_state().db
    if db is None:
        raise HttpError(404, "db_disabled", "this agent has no database (HASURA_BASE_URL unset)")
    return SchemaEditor(db)


def hasura_failed(exc: HasuraError, code: str) -> HttpError:
    """The answer when Hasura fails: 502 unreachable/other, 409 when PostgreSQL refused."""
    if exc.status == 0:
        return HttpError(502, "db_unreachable", f"the database did not answer ({exc.code})")
    if exc.code == "postgres-error":
        return HttpError(409, code, f"the database refused the change: {exc.detail}"[:600])
    return HttpError(502, code, f"{exc.code}: {exc.detail}"[:600])


async def current_schema(project_id: str) -> SchemaDef:
    """The project's schema now (502 when Hasura fails)."""
    try:
        return await editor().current(project_id)
    except HasuraError as exc:
        raise hasura_failed(exc, "schema_failed") from exc


def checked_draft(body: dict[str, Any], current: SchemaDef) -> SchemaDef:
    """The body's draft after the version check: 409 ``version_conflict``, 400
    ``invalid_draft``."""
    base = body.get("base_version")
    version = version_of(current)
    if base is not None and base != version:
        raise RichError(
            409, "version_conflict", "the schema changed since you loaded it; reload",
            current_version=version, schema=schema_json(current),
        )  # fmt: skip
    if "draft" not in body:
        raise HttpError(400, "invalid_draft", "the body needs a draft")
    try:
        return parse_draft(body["draft"], current)
    except InvalidDraft as exc:
        raise HttpError(400, "invalid_draft", str(exc)) from exc


def _plan(current: SchemaDef, draft: SchemaDef) -> list[Operation]:
    try:
        return plan(current, draft)
    except InvalidDraft as exc:
        raise HttpError(400, "invalid_draft", str(exc)) from exc


async def _record(project: Project, path: str, text: str, title: str) -> tuple[Any, list[str]]:
    """Write the migration file and commit it as a checkpoint: ``(checkpoint, warnings)``."""
    state = app_state()
    try:
        with trio.fail_after(state.config.provision_timeout_s + 120):
            async with await state.manager.ensure_runtime(project) as runtime:
                checkpoints = Checkpoints(runtime, policy=state.manager.deps.checkpoints)
                await checkpoints.ensure()  # a baseline first, so the migration is its own
                await runtime.write_file(path, text.encode("utf-8"))
                made = await checkpoints.create(title)
    except (SandboxError, RuntimeClientError, CheckpointError, trio.TooSlowError) as exc:
        return None, [f"the change is applied, but its migration file was not saved: {exc}"]
    return (unstructure(made) if made is not None else None), []


async def _announce(project_id: str, session: Any, note: str, body: dict[str, Any]) -> None:
    store = app_state().store
    messages = await store.load_conversation(project_id)
    append_user(messages, note)
    await store.save_conversation(project_id, messages)
    if session is not None:
        session.snapshot_soon()
        session.broadcast(
            MessageType.TRACE_EVENT,
            TraceEvent(phase="post_tool_use", tool_name=APPLY_TRACE_TOOL,
                       input={"operations": body["sql_preview"]},
                       output={"migration_files": body["migration_files"]}, text=note),
        )  # fmt: skip


async def _apply_held(
    project: Project, body: dict[str, Any], confirm: bool, session: Any
) -> dict[str, Any]:
    pid = project.project_id
    current = await current_schema(pid)
    operations = _plan(current, checked_draft(body, current))
    reviewed, base = review(operations), version_of(current)
    done: dict[str, Any] = {
        "applied": False, "new_version": base, "version": base,
        "schema": schema_json(current, app_id=pid), "migration_files": [], "checkpoint": None,
        "git_sync": {"attempted": False, "pushed": False, "commit_sha": None},
        "warnings": reviewed["warnings"], "summary": reviewed["review"],
        "operations": reviewed["operations"], "sql_preview": reviewed["sql_preview"],
    }  # fmt: skip
    if not operations:
        return {**done, "warnings": ["the draft is the same as the database: nothing to apply"]}
    if reviewed["destructive"] and not confirm:
        raise RichError(
            409, "destructive_confirmation_required",
            "this change drops data: " + "; ".join(reviewed["destructive_details"])
            + " — apply again with confirm_destructive: true",
            review=reviewed["review"], destructive=True,
            destructive_details=reviewed["destructive_details"],
            operations=reviewed["operations"],
        )  # fmt: skip
    try:
        after = await editor().apply(pid, operations)
    except HasuraError as exc:
        raise hasura_failed(exc, "apply_failed") from exc
    except trio.TooSlowError as exc:
        raise HttpError(504, "apply_timeout", "the database did not finish in time") from exc
    path, text = migration_file(operations, base_version=base, down=down_steps(current, operations))
    title = f"Database schema update: {reviewed['review']['summary']}"[:200]
    checkpoint, warnings = await _record(project, path, text, title)
    new = version_of(after)
    done.update(applied=True, new_version=new, version=new, checkpoint=checkpoint,
                schema=schema_json(after, app_id=pid), migration_files=[path],
                warnings=[*done["warnings"], *warnings])  # fmt: skip
    done["git_sync"]["commit_sha"] = checkpoint["sha"] if checkpoint else None
    note = f"[The user changed the database schema ({path}): {reviewed['review']['summary']}]"
    await _announce(pid, session, note, done)
    return done


async def apply_draft(project: Project, body: dict[str, Any], *, confirm: bool) -> dict[str, Any]:
    """Apply the body's draft to the project's database; the answer of ``/schema/apply``.

    Raises:
        HttpError: 400 ``invalid_draft``; 409 ``version_conflict``,
            ``destructive_confirmation_required``, ``turn_running``, ``apply_failed``;
            502/504 when the database fails.
    """
    state = app_state()
    try:
        async with state.manager.hold_turns(project.project_id, wait_s=HOLD_WAIT_S) as session:
            return await _apply_held(project, body, confirm, session)
    except TurnRunning as exc:
        raise HttpError(409, "turn_running", "wait for the running turn to finish") from exc
