"""``/api/projects/{id}/members``: who may see and change a project (``docs/auth.md``).

Anyone who can see the project sees its members; only the owner invites and removes (a member
may remove themself). Invites name an e-mail address: an existing user becomes a member at
once, anyone else when they first log in with that address.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, current_app, jsonify

from .authz import checked_project, current_role, requires
from .bodies import HttpError, json_object
from .guard import current_caller

if TYPE_CHECKING:
    from amicable_agent.store import Invite, Member

    from .state import AppState

bp = Blueprint("members", __name__)
ROLES = ("editor", "viewer")
#: Good enough to refuse garbage; the provider is the authority on real addresses.
_EMAIL = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")


def _state() -> AppState:
    state: AppState = current_app.config["AMICABLE_STATE"]
    return state


def _member(m: Member) -> dict[str, Any]:
    return {"user_sub": m.user.sub, "email": m.user.email, "name": m.user.name, "role": m.role}


def _invite(i: Invite) -> dict[str, Any]:
    return {"email": i.email, "role": i.role}


@bp.get("/api/projects/<project_id>/members")
@requires("viewer")
async def list_members(project_id: str) -> Response:
    """The owner, the members and the pending invites."""
    members, invites = await _state().store.members(project_id)
    return jsonify(
        {"members": [_member(m) for m in members], "invites": [_invite(i) for i in invites]}
    )


@bp.post("/api/projects/<project_id>/members")
@requires("owner")
async def add_member(project_id: str) -> tuple[Response, int]:
    """``{email, role}``: share the project (201 with the member or the pending invite)."""
    body = await json_object()
    email = body.get("email")
    role = body.get("role")
    if not isinstance(email, str) or not _EMAIL.match(email.strip()):
        raise HttpError(400, "invalid_email", "give the e-mail address the person signs in with")
    if role not in ROLES:
        raise HttpError(400, "invalid_role", "role must be editor or viewer")
    email = email.strip().lower()
    store = _state().store
    user = await store.user_by_email(email)
    if user is None:
        await store.add_invite(project_id, email, role)
        return jsonify({"email": email, "role": role, "pending": True}), 201
    if user.sub == current_caller().sub:
        raise HttpError(400, "invalid_email", "you own this project already")
    await store.add_member(project_id, user.sub, role)
    return jsonify(
        {"user_sub": user.sub, "email": user.email, "name": user.name, "role": role}
    ), 201


@bp.delete("/api/projects/<project_id>/members/<user_sub>")
@requires("viewer")
async def remove_member(project_id: str, user_sub: str) -> Response:
    """Remove a member (the owner may remove anyone but themself; a member, themself)."""
    caller = current_caller()
    if current_role() != "owner" and user_sub != caller.sub:
        raise HttpError(403, "owner_only", "only the project's owner may remove members")
    project = await checked_project(project_id, "viewer")
    if user_sub == project.owner_sub:
        raise HttpError(400, "owner_stays", "the owner cannot be removed")
    if not await _state().store.remove_member(project_id, user_sub[:256]):
        raise HttpError(404, "not_found", "no such member")
    return Response("", status=204)


@bp.delete("/api/projects/<project_id>/members/by-email/<email>")
@requires("owner")
async def remove_by_email(project_id: str, email: str) -> Response:
    """Remove the member with that e-mail address, or the pending invite."""
    store = _state().store
    email = email.strip().lower()[:320]
    removed = await store.remove_invite(project_id, email)
    user = await store.user_by_email(email)
    if user is not None:
        removed = await store.remove_member(project_id, user.sub) or removed
    if not removed:
        raise HttpError(404, "not_found", "no such member or invite")
    return Response("", status=204)
