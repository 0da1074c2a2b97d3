"""Small helpers shared by the HTTP route modules (error bodies, JSON bodies)."""

from __future__ import annotations

from typing import Any

from amicable_protocol import unstructure
from amicable_protocol.http import ErrorBody
from quart import Response, jsonify, request

from amicable_agent.errors import AgentError


class HttpError(AgentError):
    """Raised by handlers to answer ``{error, detail}`` with a status."""

    def __init__(self, status: int, code: str, detail: str | None = None) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.detail = detail

    def response(self) -> Response:
        """The JSON error response."""
        body = {k: v for k, v in unstructure(ErrorBody(self.code, self.detail)).items() if v}
        resp = jsonify(body)
        resp.status_code = self.status
        return resp


async def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or 400 ``invalid_json``."""
    body = await request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_json", "the body must be a JSON object")
    return body


def optional_str(body: dict[str, Any], key: str) -> str | None:
    """``body[key]`` if it is a string, None if absent/null, else 400."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise HttpError(400, "invalid_request", f"{key} must be a string")
    return value
