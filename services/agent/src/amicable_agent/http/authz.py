"""Project routes check the caller's role before anything else (even before reading the body),
so a project the caller cannot see answers 404 whatever was sent.

``@requires("viewer" | "editor" | "owner")`` goes under the route decorator of every route with
a ``<project_id>``; ``tests/agent/core/test_identity_routes.py`` walks the route table and
fails for a route that lets another user in.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeVar

from quart import current_app, g

from amicable_agent.auth.access import AccessDenied, valid_project_id
from amicable_agent.auth.identity import satisfies

from .bodies import HttpError
from .guard import current_caller

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from amicable_agent.auth.identity import Role
    from amicable_agent.store import Project

    from .state import AppState

F = TypeVar("F", bound="Callable[..., Awaitable[Any]]")


def denied(exc: AccessDenied) -> HttpError:
    """The HTTP answer of an access decision."""
    return HttpError(exc.status, exc.code, exc.detail)


async def checked_project(project_id: str, need: Role) -> Project:
    """The live project if the caller's role is at least ``need``.

    Raises:
        HttpError: 400 ``invalid_project_id``; 404 ``not_found`` (unknown, or not visible to
            the caller); 403 ``read_only`` / ``owner_only``.
    """
    if not valid_project_id(project_id):
        raise HttpError(400, "invalid_project_id")
    cached = g.get("project")
    if cached is not None and cached.project_id == project_id and satisfies(g.role, need):
        project: Project = cached
        return project
    state: AppState = current_app.config["AMICABLE_STATE"]
    try:
        project, role = await state.access.project(current_caller(), project_id, need)
    except AccessDenied as exc:
        raise denied(exc) from exc
    g.project, g.role = project, role
    return project


def requires(need: Role) -> Callable[[F], F]:
    """Check the caller's role in ``<project_id>`` before the route runs."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            await checked_project(kwargs["project_id"], need)
            return await fn(*args, **kwargs)

        guarded.required_role = need  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return wrap


def current_role() -> Role:
    """The caller's role in the project of this request (after :func:`requires`)."""
    role: Role = g.role
    return role
