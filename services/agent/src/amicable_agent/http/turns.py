"""``GET /api/projects/<id>/turns?before=<seq>``: older turns of a project's chat, as they
were shown (INIT carries the newest page and the first cursor, ``turns_before``).

Answers ``{turns: [{turn_id, seq, events[]}], before}`` (:class:`~amicable_protocol.TurnPage`:
oldest first; ``before`` is the cursor for the page before, absent at the oldest).
400 ``invalid_cursor`` when ``before`` is not a positive integer; viewers may read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amicable_protocol import unstructure
from quart import Blueprint, Response, current_app, jsonify, request

from amicable_agent.sessions.transcript import load_turn_page

from .authz import checked_project, requires
from .bodies import HttpError

if TYPE_CHECKING:
    from .state import AppState

bp = Blueprint("turns", __name__)


def parse_cursor(raw: str | None) -> int | None:
    """The ``before`` cursor: None when absent, else a positive integer.

    Raises:
        HttpError: 400 ``invalid_cursor``.
    """
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise HttpError(400, "invalid_cursor", "before must be a positive integer (a turn seq)")
    return int(raw)


@bp.get("/api/projects/<project_id>/turns")
@requires("viewer")
async def list_turns(project_id: str) -> Response:
    """The page of turns before ``?before=`` (the newest page without it)."""
    before = parse_cursor(request.args.get("before"))
    await checked_project(project_id, "viewer")
    state: AppState = current_app.config["AMICABLE_STATE"]
    page = await load_turn_page(state.store, project_id, before=before)
    return jsonify(unstructure(page))
