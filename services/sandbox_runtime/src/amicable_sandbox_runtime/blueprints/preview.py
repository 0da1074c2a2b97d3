"""``GET /v1/preview/logs`` (status and restart are the route table's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint

from ._shared import int_arg, json_response, services

if TYPE_CHECKING:
    from quart import Response

blueprint = Blueprint("preview", __name__)


@blueprint.get("/v1/preview/logs")
async def preview_logs() -> Response:
    """``GET /v1/preview/logs?tail=N`` → ``PreviewLogs``."""
    return json_response(services().supervisor.logs(int_arg("tail")))
