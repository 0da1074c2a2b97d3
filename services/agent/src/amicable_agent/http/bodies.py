"""Error answers and JSON bodies, shared by the HTTP route modules and both apps.

Every error a route or the framework answers is ``{error, detail}`` JSON
(:class:`~amicable_protocol.http.ErrorBody`) with a status that says what happened:
:class:`HttpError` for our own, :func:`install_error_handlers` for werkzeug's HTTP errors
(404, 405, 408, 413 …) and for unexpected exceptions (500 ``internal_error``, logged with
the exception; the answer never carries it). Bodies are read with
:func:`amicable_protocol.load_json`: what is not strict JSON is 400 ``invalid_json``.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from amicable_protocol import ProtocolError, load_json, unstructure
from amicable_protocol.http import ErrorBody
from quart import Response, g, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

from amicable_agent.errors import AgentError

if TYPE_CHECKING:
    from quart import Quart

log = logging.getLogger(__name__)

#: werkzeug's HTTP errors whose code is not their name in snake case.
_CODES = {413: "too_large", 500: "internal_error"}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: ``g`` attribute of the parsed body.
_PARSED = "amicable_json_body"


class HttpError(AgentError):
    """Raised by handlers to answer ``{error, detail}`` with a status."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> Response:
        """The JSON error response (``detail`` defaults to the status's reason phrase)."""
        detail = self.detail or _phrase(self.status)
        resp = jsonify(unstructure(ErrorBody(self.code, detail)))
        resp.status_code = self.status
        resp.headers.update(self.headers)
        return resp


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def http_exception_error(exc: HTTPException) -> HttpError:
    """A werkzeug HTTP error as an :class:`HttpError`: its status, a code from its name
    (``method_not_allowed``; 413 is ``too_large``), its description as plain text and its
    headers (``Allow`` of a 405)."""
    status = exc.code or 500
    code = _CODES.get(status) or re.sub(r"\W+", "_", exc.name.lower()).strip("_")
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return HttpError(status, code, exc.description or exc.name, headers)


def install_error_handlers(app: Quart) -> None:
    """Answer :class:`HttpError`, werkzeug's HTTP errors and unexpected exceptions of
    ``app``'s HTTP routes as ``{error, detail}`` JSON. An unexpected exception is logged with
    its traceback and answered 500 ``internal_error`` without it."""

    @app.errorhandler(HttpError)
    async def _http_error(exc: HttpError) -> Response:
        return exc.response()

    @app.errorhandler(HTTPException)
    async def _framework_error(exc: HTTPException) -> Response:
        original = getattr(exc, "original_exception", None)
        if original is not None:  # quart's 500 for an error no handler took
            return _internal(original)
        return http_exception_error(exc).response()

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        if not has_request_context():  # a WebSocket route: quart closes it (1011)
            raise exc
        return _internal(exc)


def _internal(exc: BaseException) -> Response:
    log.error("%s %s failed", request.method, request.path, exc_info=exc)
    return HttpError(
        500, "internal_error", "the agent could not answer this request; its log has the error"
    ).response()


async def read_json_body() -> None:
    """Parse the body of a request that has one (``POST``, ``PUT``, ``PATCH``, ``DELETE``)
    before the route runs, so a malformed body is 400 ``invalid_json`` on every route,
    whatever the route would check first.

    Raises:
        HttpError: 400 ``invalid_json``; werkzeug's 413 or 408 for a body too large or too
            slow.
    """
    if request.method in _BODY_METHODS:
        await _parsed_body()


async def _parsed_body() -> Any:
    """The parsed body (None when there is none), parsed once per request."""
    if _PARSED not in g:
        raw = await request.get_data(cache=True, as_text=False)
        if not raw:
            setattr(g, _PARSED, None)
        else:
            try:
                setattr(g, _PARSED, load_json(raw))
            except ProtocolError as exc:
                raise HttpError(400, "invalid_json", exc.message) from None
    return g.get(_PARSED)


async def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or 400 ``invalid_json``."""
    body = await _parsed_body()
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_json", "the body must be a JSON object")
    return body


async def optional_json_object() -> dict[str, Any]:
    """The request body as a JSON object, ``{}`` when there is none; else 400
    ``invalid_json``."""
    body = await _parsed_body()
    if body is None:
        return {}
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
