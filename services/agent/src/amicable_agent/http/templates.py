"""``GET /api/templates``: the project templates this deployment can build.

The list comes from the registry (``amicable_templates``) filtered by ``AMICABLE_TEMPLATES``,
in the editor's order, so the editor's new-project dialog never offers a template the agent
would refuse (400 ``invalid_template_id``) or a sandbox could not start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amicable_templates import registry
from quart import Blueprint, Response, current_app, jsonify

if TYPE_CHECKING:
    from .state import AppState

bp = Blueprint("templates", __name__)


@bp.get("/api/templates")
async def list_templates() -> Response:
    """``{default, templates: [{id, name, description, deps, reload, qa}]}``."""
    state: AppState = current_app.config["AMICABLE_STATE"]
    enabled = state.config.templates
    offered = [t.public() for t in registry().templates if t.id in enabled]
    return jsonify({"default": state.config.template_id, "templates": offered})
