"""The agent's two quart-trio apps (routes only).

Public: WebSocket on ``/`` and ``/ws``, ``/healthz``, ``/api/*``, ``/config.js`` and, in
local mode, the built editor. Internal: ``/internal/preview/resolve`` and ``/healthz``.
"""

from __future__ import annotations

import json
import logging
import mimetypes
from typing import TYPE_CHECKING, Any

from quart import Response, jsonify, request, websocket
from quart_trio import QuartTrio

from amicable_agent.auth.access import AccessDenied
from amicable_agent.db.http import answer_db_request
from amicable_agent.errors import StoreUnavailable

from . import auth as api_auth
from . import budgets as api_budgets
from . import checkpoints as api_checkpoints
from . import dbrows as api_dbrows
from . import dbschema as api_dbschema
from . import files as api_sandbox
from . import git as api_git
from . import members as api_members
from . import projects as api_projects
from . import resolver
from . import templates as api_templates
from . import turns as api_turns
from .authz import denied
from .bodies import HttpError, install_error_handlers, read_json_body
from .guard import credentials, install_guard
from .ws import CLOSE_POLICY, SocketLike, serve_socket

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from .state import AppState
    from .ws_server import RawWebSocket

#: Paths of the editor WebSocket.
WS_PATHS = ("/", "/ws")

log = logging.getLogger(__name__)


def _static(dist: Path, rel: str) -> Response | None:
    root = dist.resolve()
    target = (root / rel).resolve()
    if root not in target.parents and target != root:
        return None
    if not target.is_file():
        return None
    mime = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    resp = Response(target.read_bytes(), mimetype=mime)
    if rel.startswith("assets/"):
        resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        resp.headers["Cache-Control"] = "no-cache"
    return resp


def create_public_app(state: AppState) -> QuartTrio:
    """The public app on ``AMICABLE_AGENT_PORT``."""
    app = QuartTrio("amicable_agent")
    app.config["AMICABLE_STATE"] = state
    app.config["MAX_CONTENT_LENGTH"] = 32 * 1024 * 1024
    app.register_blueprint(api_auth.bp)
    app.register_blueprint(api_projects.bp)
    app.register_blueprint(api_templates.bp)
    app.register_blueprint(api_members.bp)
    app.register_blueprint(api_budgets.bp)
    app.register_blueprint(api_sandbox.bp)
    app.register_blueprint(api_checkpoints.bp)
    app.register_blueprint(api_turns.bp)
    app.register_blueprint(api_dbschema.bp)
    app.register_blueprint(api_dbrows.bp)
    api_git.init_app(app, state.git_sync)
    install_guard(app, state)
    install_error_handlers(app)
    config = state.config

    @app.before_request
    async def parse_api_body() -> None:
        # After the guard; the DB proxy's body is Hasura's business.
        if request.path.startswith("/api/"):
            await read_json_body()

    @app.errorhandler(AccessDenied)
    async def access_denied(exc: AccessDenied) -> Response:
        return denied(exc).response()

    @app.errorhandler(StoreUnavailable)
    async def store_unavailable(exc: StoreUnavailable) -> Response:
        log.error("%s", exc)
        return HttpError(503, "store_unavailable", "the projects database is unreachable; "
                         "try again shortly").response()  # fmt: skip

    @app.get("/healthz")
    async def healthz() -> Response:
        body: dict[str, object] = {"status": "ok", **state.manager.statistics()}
        stats = getattr(state.backend, "statistics", None)
        if callable(stats):
            body["sandboxes"] = stats()
        return jsonify(body)

    @app.get("/readyz")
    async def readyz() -> Response:
        return _readiness(state)

    # The browser DB proxy of a preview (seed guide §7). Not under /api: the caller is the
    # generated app, checked by its own Origin policy and app key, not the editor's origins.
    @app.route("/db/apps/<app_id>/graphql", methods=["POST", "OPTIONS"])
    async def db_graphql(app_id: str) -> Response:
        return await answer_db_request(state.db, app_id)

    @app.get("/config.js")
    async def config_js() -> Response:
        own = state.policy.own_origin
        runtime = {
            "VITE_AGENT_HTTP_URL": own,
            "VITE_AGENT_WS_URL": own.replace("https://", "wss://").replace("http://", "ws://")
            + "/ws",
            "AMICABLE_AUTH_MODE": config.auth.mode,
        }
        body = "window.__AMICABLE_CONFIG__ = " + json.dumps(runtime) + ";\n"
        resp = Response(body, mimetype="application/javascript")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def ws_handler() -> None:
        await websocket.accept()
        await serve_checked(state, websocket, websocket.headers)

    # Normally served by ws_server (create_ws_handler); these routes are the fallback for a
    # WebSocket upgrade that arrives on an already used keep-alive connection.
    app.add_websocket(WS_PATHS[0], "ws_root", ws_handler)
    app.add_websocket(WS_PATHS[1], "ws_path", ws_handler)

    @app.get("/")
    async def index() -> Response:
        dist = config.editor_dist
        if dist is not None:
            page = _static(dist, "index.html")
            if page is not None:
                return page
        return jsonify({"status": "ok"})

    @app.get("/<path:rel>")
    async def editor_file(rel: str) -> Response:
        dist = config.editor_dist
        if dist is None or rel.startswith(("api/", "internal/")):
            raise HttpError(404, "not_found")
        found = _static(dist, rel)
        if found is None:
            if "." in rel.rsplit("/", 1)[-1]:
                raise HttpError(404, "not_found")
            found = _static(dist, "index.html")  # SPA route
            if found is None:
                raise HttpError(404, "not_found")
        return found

    return app


def create_ws_handler(state: AppState) -> Callable[[RawWebSocket], Awaitable[None]]:
    """The editor WebSocket handler of :class:`amicable_agent.http.ws_server.WebSocketLane`
    (the same checks as the app's own WebSocket routes, on the fast socket)."""

    async def handle(socket: RawWebSocket) -> None:
        await socket.accept()
        await serve_checked(state, socket, {**socket.headers, "host": socket.host})

    return handle


async def serve_checked(state: AppState, socket: SocketLike, headers: Any) -> None:
    """Serve an accepted editor WebSocket if its ``Host``, ``Origin`` and credentials pass;
    else close it with 1008 (policy) and a reason."""
    policy = state.policy
    host = headers.get("host") or headers.get("Host")
    origin = headers.get("origin") or headers.get("Origin")
    if not policy.host_allowed(host):
        await socket.close(CLOSE_POLICY, "unknown host")
        return
    caller = await state.access.authenticate(credentials(headers))
    if origin is None:
        # Only browsers are at risk of cross-site WebSocket hijacking, and they always send
        # Origin; other clients need a token (or no login at all).
        allowed = caller is not None and caller.via != "cookie"
    else:
        allowed = policy.origin_allowed(origin)
    if not allowed:
        await socket.close(CLOSE_POLICY, "origin not allowed")
        return
    if caller is None:
        await socket.close(CLOSE_POLICY, "sign in first")
        return
    await serve_socket(
        state.manager,
        socket,
        queue_size=state.config.ws_send_queue_size,
        caller=caller,
        access=state.access,
        max_text_chars=state.config.max_prompt_chars,
    )


def create_internal_app(state: AppState) -> QuartTrio:
    """The internal app on ``AMICABLE_AGENT_INTERNAL_PORT`` (never exposed publicly)."""
    app = QuartTrio("amicable_agent_internal")
    app.config["AMICABLE_STATE"] = state
    app.register_blueprint(resolver.bp)
    install_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        return _readiness(state)

    return app


def _readiness(state: AppState) -> Response:
    """200 while this replica takes new work; 503 once it drains (SIGTERM), so the
    Service sends new editors to the other replicas."""
    if state.manager.draining:
        return HttpError(503, "draining", "this agent replica is shutting down").response()
    return jsonify({"status": "ready"})
