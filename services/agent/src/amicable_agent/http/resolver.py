"""``GET /internal/preview/resolve?host=``: preview host -> sandbox upstream (internal port).

The label (first DNS label of the host) is a project slug or a sandbox id. The answer is
JSON ``{sandbox_id, upstream}`` plus header ``X-Amicable-Sandbox-Id``; 404 for unknown labels
or stopped sandboxes; 403 without the configured ``X-Amicable-Preview-Token``.
"""

from __future__ import annotations

import hmac
import re
from typing import TYPE_CHECKING

from quart import Blueprint, Response, current_app, jsonify, request

from amicable_agent.errors import SandboxError
from amicable_agent.sandboxes.base import sandbox_id_for

from .bodies import HttpError

if TYPE_CHECKING:
    from .state import AppState

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

bp = Blueprint("resolver", __name__)


def preview_label(host: str, base_domain: str) -> str | None:
    """The label of ``<label>.<base_domain>[:port]`` (or a bare label), else None."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("["):
        return None
    host = host.rsplit(":", 1)[0] if ":" in host else host
    base = base_domain.strip(".").lower()
    if base and host.endswith("." + base):
        label = host[: -len(base) - 1]
    elif "." not in host:
        label = host
    else:
        return None
    return label if _LABEL.match(label) else None


@bp.get("/internal/preview/resolve")
async def resolve() -> Response:
    """Answer the preview router."""
    state: AppState = current_app.config["AMICABLE_STATE"]
    token = state.config.preview_resolver_token
    if token:
        given = request.headers.get("X-Amicable-Preview-Token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HttpError(403, "forbidden")
    host = request.args.get("host") or request.headers.get("Host", "")
    if not host.strip():
        raise HttpError(400, "missing_host")
    label = preview_label(host, state.config.preview_base_domain)
    if label is None:
        raise HttpError(404, "not_found")
    project = await state.store.get_project_by_slug(label)
    if project is not None:
        sandbox_id = project.sandbox_id or sandbox_id_for(project.project_id)
    elif label.startswith("amicable-"):
        sandbox_id = label
    else:
        raise HttpError(404, "not_found")
    try:
        handle = await state.backend.lookup(sandbox_id)
    except SandboxError as exc:
        # Never a guess: the router answers 503 and retries after its negative TTL.
        raise HttpError(503, "backend_unavailable", str(exc)) from exc
    if handle is None:
        raise HttpError(404, "not_found", "the sandbox is not running")
    await state.backend.touch(sandbox_id)
    resp = jsonify({"sandbox_id": sandbox_id, "upstream": handle.preview_upstream})
    resp.headers["X-Amicable-Sandbox-Id"] = sandbox_id
    resp.headers["Cache-Control"] = "no-store"
    return resp
