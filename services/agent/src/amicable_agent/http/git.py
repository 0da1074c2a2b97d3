"""``/api/projects/{id}/git/sync|status|pull`` (upstream §2.4 shapes; sync is best-effort).

Register with :func:`init_app` (the blueprint reads the :class:`GitSync` and the workspace
opener from the app config). Errors: 409 ``git_sync_disabled``; 400/404 as the projects
API; 502 ``gitlab_error`` (+detail) when GitLab fails; ``sync`` failures answer 200
``{pushed:false, commit_sha:null, error:"git_sync_failed", detail}`` (sync is never
"required" here); ``status``: 502 ``git_remote_status_failed``; ``pull``: 409
``{error:"git_pull_no_baseline", remote_sha}`` or 200 with ``error:"remote_branch_missing"``;
503 ``sandbox_unavailable`` / 504 ``sandbox_timeout`` when the sandbox cannot be reached.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response, current_app, jsonify

from amicable_agent.errors import SandboxError
from amicable_agent.gitsync.commits import ui_sync_message, user_message
from amicable_agent.gitsync.errors import GitLabApiError, GitSyncError
from amicable_agent.gitsync.pull import NoBaseline
from amicable_agent.gitsync.workspace import open_workspace

from .authz import checked_project, requires
from .bodies import HttpError, optional_json_object

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

    from quart import Quart

    from amicable_agent.gitsync.engine import GitSync
    from amicable_agent.gitsync.workspace import Workspace
    from amicable_agent.store.base import Project

    from .state import AppState

    WorkspaceOpener = Callable[[Project], AbstractAsyncContextManager[Workspace]]

log = logging.getLogger(__name__)

GIT_SYNC_KEY = "AMICABLE_GIT_SYNC"
OPENER_KEY = "AMICABLE_GIT_WORKSPACE_OPENER"

bp = Blueprint("git", __name__)


def init_app(app: Quart, git_sync: GitSync | None, opener: WorkspaceOpener | None = None) -> None:
    """Register the git routes on ``app``.

    Args:
        app: the public app (``AMICABLE_STATE`` must be set for the project lookup).
        git_sync: the service's sync, or None when sync is disabled (routes answer 409).
        opener: how to reach a project's sandbox (default: :func:`session_workspace`).
    """
    app.config[GIT_SYNC_KEY] = git_sync
    app.config[OPENER_KEY] = opener or session_workspace
    app.register_blueprint(bp)


@asynccontextmanager
async def session_workspace(project: Project) -> AsyncIterator[Workspace]:
    """The sandbox of the project's live session, or the one the backend provisions."""
    state: AppState = current_app.config["AMICABLE_STATE"]
    session = state.manager.get(project.project_id)
    handle = session.handle if session is not None else None
    try:
        if handle is None:
            with trio.fail_after(state.manager.deps.provision_timeout_s):
                handle = await state.backend.ensure(
                    project.project_id,
                    project_id=project.project_id,
                    template_id=project.template_id,
                )
        else:
            await state.backend.touch(handle.sandbox_id)
    except SandboxError as exc:
        raise HttpError(503, "sandbox_unavailable", str(exc)) from exc
    except trio.TooSlowError as exc:
        raise HttpError(504, "sandbox_timeout", "the sandbox did not start in time") from exc
    async with open_workspace(handle) as workspace:
        yield workspace


def _git_sync() -> GitSync:
    git_sync: GitSync | None = current_app.config.get(GIT_SYNC_KEY)
    if git_sync is None:
        raise HttpError(409, "git_sync_disabled", "GitLab sync is not configured")
    return git_sync


def _opener() -> WorkspaceOpener:
    opener: WorkspaceOpener = current_app.config[OPENER_KEY]
    return opener


def _body(status: int, body: dict[str, Any]) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    return resp


def _sandbox_error(exc: GitSyncError) -> HttpError | None:
    if exc.code == "sandbox_unavailable":
        return HttpError(503, "sandbox_unavailable", exc.detail)
    return None


@bp.post("/api/projects/<project_id>/git/sync")
@requires("editor")
async def sync(project_id: str) -> Response:
    """``{commit_message?, force?}`` -> ``{pushed, commit_sha, diff_stat, name_status}``.

    ``force`` pushes a sandbox without a baseline over a non-empty branch (otherwise that
    fails with ``detail`` naming ``git_sync_no_baseline``'s reason).
    """
    git_sync = _git_sync()
    project = await checked_project(project_id, "viewer")
    body = await optional_json_object()
    text = body.get("commit_message")
    if text is not None and not isinstance(text, str):
        raise HttpError(400, "invalid_request", "commit_message must be a string")
    message = user_message(text) if text and text.strip() else ui_sync_message(project.slug)
    force = body.get("force") is True
    try:
        async with _opener()(project) as workspace:
            result = await git_sync.sync(project, workspace, message, force=force)
    except GitLabApiError as exc:
        raise HttpError(502, "gitlab_error", exc.detail) from exc
    except GitSyncError as exc:
        log.warning("git sync of %s failed: %s", project_id, exc.detail)
        return _body(
            200,
            {
                "pushed": False,
                "commit_sha": None,
                "error": "git_sync_failed",
                "detail": exc.detail or exc.code,
            },
        )
    return jsonify(result.to_json())


@bp.get("/api/projects/<project_id>/git/status")
@requires("viewer")
async def status(project_id: str) -> Response:
    """``{remote_sha, local_sha, ahead, baseline_present, conflicts_pending}``."""
    git_sync = _git_sync()
    project = await checked_project(project_id, "viewer")
    try:
        async with _opener()(project) as workspace:
            result = await git_sync.status(project, workspace)
    except GitLabApiError as exc:
        raise HttpError(502, "gitlab_error", exc.detail) from exc
    except GitSyncError as exc:
        raise _sandbox_error(exc) or HttpError(502, "git_remote_status_failed", exc.detail) from exc
    return jsonify(result.to_json())


@bp.post("/api/projects/<project_id>/git/pull")
@requires("editor")
async def pull(project_id: str) -> Response:
    """``{updated, remote_sha, applied{added,modified,deleted}, conflicts[]}``."""
    git_sync = _git_sync()
    project = await checked_project(project_id, "viewer")
    try:
        async with _opener()(project) as workspace:
            result = await git_sync.pull(project, workspace)
    except NoBaseline as exc:
        return _body(409, {"error": "git_pull_no_baseline", "remote_sha": exc.remote_sha})
    except GitLabApiError as exc:
        raise HttpError(502, "gitlab_error", exc.detail) from exc
    except GitSyncError as exc:
        raise _sandbox_error(exc) or HttpError(502, exc.code, exc.detail) from exc
    return jsonify(result.to_json())
