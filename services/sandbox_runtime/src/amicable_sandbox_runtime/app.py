"""The quart app: the routes the route table of ``fastpath.py`` leaves to it.

:func:`create_app` builds it from the blueprints of :mod:`.blueprints` and adds what they
share: the bearer-token check (the same check as the fast routes, :meth:`FastRoutes.authorized
<amicable_sandbox_runtime.fastpath.FastRoutes.authorized>`; only the health probes are
public) and the error bodies (:class:`~amicable_protocol.http.ErrorBody` for API errors and
werkzeug's HTTP errors). Quart is the slowest import of the runtime; ``server.py`` builds this
app after the runtime listens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .blueprints import BLUEPRINTS, Services
from .blueprints._shared import AnyPath, error_response
from .errors import RuntimeApiError, Unauthorized
from .fastpath import PUBLIC_PATHS

if TYPE_CHECKING:
    from quart import Response

    from .fastpath import FastRoutes


def create_app(fast: FastRoutes) -> QuartTrio:
    """Build the quart app for the workspace of ``fast``.

    Args:
        fast: the fast routes; the app shares their config, jail, file API (one write
            lock), supervisor, worker-thread limiter and token check.
    """
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = fast.config.max_file_bytes
    app.url_map.merge_slashes = False
    app.url_map.converters["anypath"] = AnyPath
    Services(fast.config, fast.jail, fast.files, fast.supervisor, fast.limiter).install(app)
    _check_token(app, fast)
    _answer_errors(app, fast.config.max_file_bytes)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app


def _check_token(app: QuartTrio, fast: FastRoutes) -> None:
    def check(path: str, header: str | None) -> None:
        # deny by default: only the health probes are public (unknown paths included)
        if path in PUBLIC_PATHS:
            return
        # latin-1 gives back the header's bytes, as the fast routes compare them
        if not fast.authorized(None if header is None else header.encode("latin-1")):
            raise Unauthorized("missing or wrong bearer token")

    @app.before_request
    async def _auth_http() -> None:
        check(request.path, request.headers.get("Authorization"))

    @app.before_websocket
    async def _auth_ws() -> None:
        check(websocket.path, websocket.headers.get("Authorization"))


def _answer_errors(app: QuartTrio, max_file_bytes: int) -> None:
    @app.errorhandler(RuntimeApiError)
    async def _api_error(exc: RuntimeApiError) -> Response:
        return error_response(exc.code, exc.detail, exc.status)

    @app.errorhandler(RequestEntityTooLarge)
    async def _too_large(exc: RequestEntityTooLarge) -> Response:
        return error_response("too_large", f"body over {max_file_bytes} bytes", 413)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.code or 0, "http_error")
        return error_response(code, exc.description or "", exc.code or 500)
