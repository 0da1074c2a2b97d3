"""``/api/sandbox/<id>/checkpoints``: a project's history of checkpoints, and restoring one.

* ``GET …/checkpoints`` -> ``{checkpoints: [{sha, title, created_at, files_changed,
  skipped: [{path, bytes}]}], history_bytes, max_history_bytes}``, newest first (at most 100;
  empty before the first turn); ``skipped`` lists files left out as too big,
  ``history_bytes`` is the disk the history uses (``max_history_bytes`` its cap, 0 = none).
* ``GET …/checkpoints/<sha>/diff`` -> :class:`~amicable_protocol.http.CheckpointDiff`: what
  the checkpoint changed against the one before it (paths, ``+``/``-`` counts, unified
  hunks, binary files named), size-capped: a file whose diff is too big is listed with
  ``too_large`` and no hunks. 400 ``invalid_sha`` (not exactly 4-64 hex digits), 404
  ``not_found``, 503 ``git_unavailable``. Viewers may read it.
* ``POST …/checkpoints/<sha>/restore`` ``{skip_schema_rollback?}`` -> ``{checkpoint,
  restored_to, saved, changed_paths, dependencies, schema_rollback}``: the files become those
  of ``<sha>`` and the restore is recorded as a new checkpoint. Schema changes whose migration
  files the restore removes are undone first (:mod:`.restore_schema`; ``schema_rollback``
  says what was done). 400 ``invalid_sha`` (not 7-40 hex digits), 404 ``not_found``, 409
  ``turn_running`` / ``hitl_pending`` / ``schema_rollback_impossible`` /
  ``schema_rollback_failed`` (nothing changed), 503 ``git_unavailable``, 507
  ``history_full`` (the changes could not be saved first: the history is over its cap).

The model learns about a restore on its next turn (a note appended to the stored
conversation); attached editors get a ``trace_event`` (``tool_name`` ``restore_checkpoint``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol import unstructure
from amicable_protocol.messages import MessageType, TraceEvent
from quart import Blueprint, Response, current_app, jsonify

from amicable_agent.errors import CheckpointError, SandboxError, TurnRunning
from amicable_agent.loop.compaction import append_user
from amicable_agent.loop.hitl import STATE_KEY as HITL_STATE_KEY
from amicable_agent.sessions.checkpoints import (
    Checkpoints,
    RestoreResult,
    valid_diff_sha,
    valid_sha,
)

from .authz import checked_project, requires
from .bodies import HttpError, optional_json_object
from .restore_schema import (
    after_rollback,
    plan_rollback,
    rollback_note,
    run_rollback,
    with_returned,
)

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from amicable_agent.loop.api import RuntimeClient
    from amicable_agent.store.base import Project, Store

    from .state import AppState

#: How long a restore waits for a just-finished turn's checkpoint and sync.
RESTORE_WAIT_S = 60.0
#: ``tool_name`` of the ``trace_event`` announcing a restore to the editors.
RESTORE_TRACE_TOOL = "restore_checkpoint"

bp = Blueprint("checkpoints", __name__)


def _state() -> AppState:
    state: AppState = current_app.config["AMICABLE_STATE"]
    return state


def _checkpoints(runtime: RuntimeClient) -> Checkpoints:
    # The configured size limits (AMICABLE_CHECKPOINT_*), as the turns' checkpoints use.
    return Checkpoints(runtime, policy=_state().manager.deps.checkpoints)


def _translate(exc: CheckpointError) -> HttpError:
    if exc.code == "not_found":
        return HttpError(404, "not_found", "no such checkpoint")
    if exc.code == "git_unavailable":
        return HttpError(503, "git_unavailable", exc.detail)
    if exc.code == "history_full":
        return HttpError(507, "history_full", exc.detail)
    return HttpError(502, "checkpoint_failed", exc.detail or None)


async def _runtime(project: Project) -> AbstractAsyncContextManager[RuntimeClient]:
    try:
        return await _state().manager.ensure_runtime(project)
    except SandboxError as exc:
        raise HttpError(503, "sandbox_unavailable", str(exc)) from exc
    except trio.TooSlowError as exc:
        raise HttpError(504, "sandbox_timeout", "the sandbox did not start in time") from exc


def restore_note(result: RestoreResult) -> str:
    """The line the model reads before the next request after a restore."""
    return (
        f"[The user restored the project files to checkpoint {result.target.sha[:7]}: "
        f"{result.target.title}]"
    )


async def _tell_the_model(store: Store, project_id: str, note: str) -> None:
    messages = await store.load_conversation(project_id)
    append_user(messages, note)
    await store.save_conversation(project_id, messages)


def _result_json(result: RestoreResult) -> dict[str, Any]:
    return {
        "checkpoint": unstructure(result.checkpoint),
        "restored_to": unstructure(result.target),
        "saved": unstructure(result.saved) if result.saved is not None else None,
        "changed_paths": list(result.changed_paths),
        "dependencies": result.dependencies,
    }


@bp.get("/api/sandbox/<project_id>/checkpoints")
@requires("viewer")
async def list_checkpoints(project_id: str) -> Response:
    """``{checkpoints: [...], history_bytes, max_history_bytes}``, newest first."""
    project = await checked_project(project_id, "viewer")
    async with await _runtime(project) as runtime:
        try:
            history = await _checkpoints(runtime).history()
        except CheckpointError as exc:
            raise _translate(exc) from exc
    return jsonify(unstructure(history))


@bp.get("/api/sandbox/<project_id>/checkpoints/<sha>/diff")
@requires("viewer")
async def diff(project_id: str, sha: str) -> Response:
    """What checkpoint ``sha`` changed; see the module docstring."""
    checked = valid_diff_sha(sha)
    if checked is None:
        raise HttpError(400, "invalid_sha", "a checkpoint id is 4-64 hex digits")
    project = await checked_project(project_id, "viewer")
    async with await _runtime(project) as runtime:
        try:
            body = await _checkpoints(runtime).diff(checked)
        except CheckpointError as exc:
            raise _translate(exc) from exc
    return jsonify(unstructure(body))


@bp.post("/api/sandbox/<project_id>/checkpoints/<sha>/restore")
@requires("editor")
async def restore(project_id: str, sha: str) -> Response:
    """Restore the files of checkpoint ``sha``; see the module docstring."""
    checked = valid_sha(sha)
    if checked is None:
        raise HttpError(400, "invalid_sha", "a checkpoint id is 7-40 hex digits")
    skip = (await optional_json_object()).get("skip_schema_rollback", False)
    if not isinstance(skip, bool):
        raise HttpError(400, "invalid_request", "skip_schema_rollback must be true or false")
    state = _state()
    project = await checked_project(project_id, "viewer")
    if await state.store.load_state(project_id, HITL_STATE_KEY) is not None:
        raise HttpError(
            409, "hitl_pending", "approve or reject the pending action before restoring"
        )
    try:
        async with state.manager.hold_turns(project_id, wait_s=RESTORE_WAIT_S) as session:
            async with await _runtime(project) as runtime:
                checkpoints = _checkpoints(runtime)
                try:
                    plan = await plan_rollback(runtime, checkpoints, project_id, checked)
                except CheckpointError as exc:
                    raise _translate(exc) from exc
                schema = await run_rollback(project_id, plan, skip=skip)
                try:
                    result = await checkpoints.restore(checked)
                except CheckpointError as exc:
                    raise after_rollback(_translate(exc), schema) from exc
            schema = with_returned(schema, result.changed_paths)
            note = restore_note(result) + rollback_note(schema)
            await _tell_the_model(state.store, project_id, note)
            body = {**_result_json(result), "schema_rollback": schema}
            if session is not None:
                session.snapshot_soon()  # the restore is a checkpoint of its own
                session.broadcast(
                    MessageType.TRACE_EVENT,
                    TraceEvent(
                        phase="post_tool_use",
                        tool_name=RESTORE_TRACE_TOOL,
                        input={"sha": result.target.sha},
                        output=body,
                        text=note,
                    ),
                )
    except TurnRunning as exc:
        raise HttpError(409, "turn_running", "wait for the running turn to finish") from exc
    return jsonify(body)
