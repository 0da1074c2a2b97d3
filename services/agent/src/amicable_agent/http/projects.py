"""``/api/projects``: list, create, get, by-slug, rename, delete (upstream §2.3 shapes)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol import ProtocolError, check_text
from quart import Blueprint, Response, current_app, jsonify

from amicable_agent.auth.access import AccessDenied
from amicable_agent.gitsync import best_effort
from amicable_agent.loop.small_tasks import name_from_prompt, small_usage_record
from amicable_agent.sandboxes.base import sandbox_id_for

from .authz import checked_project, current_role, denied, requires
from .bodies import HttpError, json_object, optional_str
from .guard import current_caller

if TYPE_CHECKING:
    from amicable_agent.loop.model_api import TokenUsage
    from amicable_agent.loop.models import ModelSpec
    from amicable_agent.store.base import Project

    from .state import AppState

log = logging.getLogger(__name__)

_SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DELETE_STEP_TIMEOUT_S = 60.0

bp = Blueprint("projects", __name__)


def _state() -> AppState:
    state: AppState = current_app.config["AMICABLE_STATE"]
    return state


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def _summary(p: Project) -> dict[str, Any]:
    return {
        "project_id": p.project_id,
        "name": p.name,
        "slug": p.slug,
        "template_id": p.template_id,
        "created_at": _iso(p.created_at),
        "updated_at": _iso(p.updated_at),
    }


def _short(p: Project) -> dict[str, Any]:
    return {
        "project_id": p.project_id,
        "name": p.name,
        "slug": p.slug,
        "template_id": p.template_id,
    }


@bp.get("/api/projects")
async def list_projects() -> Response:
    """``{projects: [...]}``: the caller's and those shared with them, most recently updated
    first, each with the caller's ``role``."""
    visible = await _state().access.projects(current_caller())
    return jsonify({"projects": [{**_summary(p), "role": role} for p, role in visible]})


@bp.post("/api/projects")
async def create_project() -> Response:
    """Create a project owned by the caller: ``{name?, prompt?, template_id?}``."""
    state = _state()
    caller = current_caller()
    try:
        await state.access.check_project_quota(caller)
    except AccessDenied as exc:
        raise denied(exc) from exc
    body = await json_object()
    name = (optional_str(body, "name") or "").strip()[:80]
    prompt = optional_str(body, "prompt")
    if prompt is not None:
        try:
            check_text("prompt", prompt, state.config.max_prompt_chars)
        except ProtocolError as exc:
            raise HttpError(413, "prompt_too_long", exc.message) from None
    template_id = optional_str(body, "template_id") or state.config.template_id
    if template_id not in state.config.templates:
        known = ", ".join(state.config.templates)
        raise HttpError(400, "invalid_template_id", f"known templates: {known}")
    naming_cost: list[tuple[ModelSpec, TokenUsage]] = []  # recorded once the project exists

    async def count(spec: ModelSpec, usage: TokenUsage) -> None:
        naming_cost.append((spec, usage))

    if not name and prompt and prompt.strip():
        small = state.manager.deps.small
        named = await small.project_name(prompt, on_usage=count) if small is not None else None
        name = named.text if named is not None else name_from_prompt(prompt)
    project = await state.store.create_project(
        name or "Untitled",
        template_id=template_id,
        prompt=prompt,
        owner_sub=None if caller.local else caller.sub,
    )
    for spec, usage in naming_cost:  # what naming it cost counts in the project's spend
        sub = None if caller.local else caller.sub
        await state.store.record_usage(
            small_usage_record(spec, usage, project.project_id, "name", sub)
        )
    if state.git_sync is not None:  # the GitLab repository, in the background (best effort)
        state.background.start_soon(best_effort, "create", state.git_sync.project_created, project)
    return jsonify(
        {
            "project_id": project.project_id,
            "name": project.name,
            "slug": project.slug,
            "prompt": project.prompt,
            "template_id": project.template_id,
            "role": "owner",
        }
    )


@bp.get("/api/projects/by-slug/<slug>")
async def get_by_slug(slug: str) -> Response:
    """A project by slug."""
    if not _SLUG.match(slug):
        raise HttpError(400, "invalid_slug")
    project = await _state().store.get_project_by_slug(slug)
    if project is None:
        raise HttpError(404, "not_found")
    await checked_project(project.project_id, "viewer")
    return jsonify({**_short(project), "role": current_role()})


@bp.get("/api/projects/<project_id>")
@requires("viewer")
async def get_project(project_id: str) -> Response:
    """A project by id."""
    project = await checked_project(project_id, "viewer")
    return jsonify({**_short(project), "role": current_role()})


@bp.patch("/api/projects/<project_id>")
@requires("editor")
async def rename_project(project_id: str) -> Response:
    """Rename: the slug is re-derived, the sandbox id never changes."""
    body = await json_object()
    name = (optional_str(body, "name") or "").strip()[:80]
    if not name:
        raise HttpError(400, "missing_name")
    state = _state()
    project = await state.store.rename_project(project_id, name)
    if project is None:
        raise HttpError(404, "not_found")
    session = state.manager.get(project_id)
    if session is not None:
        session.refresh_project(project)
    if state.git_sync is not None:  # the repository follows the slug (best effort)
        state.background.start_soon(best_effort, "rename", state.git_sync.project_renamed, project)
    return jsonify({"project_id": project.project_id, "name": project.name, "slug": project.slug})


@bp.delete("/api/projects/<project_id>")
@requires("owner")
async def delete_project(project_id: str) -> Response:
    """Soft-delete now (202), then delete the sandbox and purge the row in the background."""
    state = _state()
    project = await state.store.soft_delete_project(project_id)
    if project is None:
        raise HttpError(404, "not_found")
    state.manager.close_session(project_id)
    state.background.start_soon(_purge, state, project)
    resp = jsonify({"status": "deleting"})
    resp.status_code = 202
    return resp


async def _purge(state: AppState, project: Project) -> None:
    sandbox_id = project.sandbox_id or sandbox_id_for(project.project_id)
    try:
        with trio.fail_after(DELETE_STEP_TIMEOUT_S):
            await state.backend.delete(sandbox_id)
    except Exception:  # best effort, as upstream; Cancelled is not an Exception
        log.warning("could not delete sandbox %s of a deleted project", sandbox_id)
    if state.git_sync is not None:
        await best_effort("delete", state.git_sync.project_deleted, project.project_id)
    snapshots = state.manager.deps.snapshots
    if snapshots is not None:  # the records go with the row; the bytes may be in a bucket
        try:
            with trio.fail_after(DELETE_STEP_TIMEOUT_S):
                await snapshots.store.delete_project(project.project_id)
        except Exception as exc:
            log.warning("could not delete the snapshots of %s: %s", project.project_id, exc)
    db = state.db
    if db is not None:
        try:
            with trio.fail_after(DELETE_STEP_TIMEOUT_S):
                await db.cleanup(project.project_id)
        except Exception as exc:
            log.warning("could not drop the database of project %s: %s", project.project_id, exc)
    try:
        with trio.fail_after(DELETE_STEP_TIMEOUT_S):
            await state.store.purge_project(project.project_id)
    except Exception:
        log.warning("could not purge project %s", project.project_id)
