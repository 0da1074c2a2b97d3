"""The checks every public request passes before a route sees it.

In order: the ``Host`` must name this agent (421 otherwise: DNS rebinding); on ``/api/*`` and
``/auth/*`` a browser ``Origin`` must be allowed exactly (403 otherwise, with no CORS headers)
and preflights are answered; the caller is authenticated (``g.caller``); ``/api/*`` needs a
caller (401) and a state-changing request authenticated by the cookie needs an allowed
``Origin`` (CSRF). Responses get CORS headers for allowed origins and the editor page its
security headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Response, g, request

from .bodies import HttpError

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from amicable_agent.auth.identity import Caller

    from .state import AppState

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, If-Match, X-Requested-With"
#: Paths every Host may reach (probes send the pod's address as Host).
UNGUARDED = frozenset({"/healthz"})


def _api(path: str) -> bool:
    return path.startswith(("/api/", "/auth/"))


def credentials(headers: Any) -> dict[str, str]:
    """The headers that carry credentials, from any header mapping (all ``Cookie``
    headers joined, as HTTP/2 may split them)."""
    getlist = getattr(headers, "getlist", None)
    cookies = getlist("Cookie") if getlist is not None else [headers.get("cookie") or ""]
    return {
        "authorization": headers.get("Authorization") or headers.get("authorization") or "",
        "cookie": "; ".join(c for c in cookies if c),
    }


def current_caller() -> Caller:
    """The authenticated caller of this request (routes under ``/api`` always have one)."""
    caller: Caller | None = g.get("caller")
    if caller is None:
        raise HttpError(401, "not_authenticated", "sign in first")
    return caller


def install_guard(app: QuartTrio, state: AppState) -> None:
    """Register the checks on the public app."""
    policy = state.policy
    access = state.access

    @app.before_request
    async def guard() -> Response | None:
        path = request.path
        if path in UNGUARDED:
            return None
        if not policy.host_allowed(request.headers.get("Host")):
            return HttpError(421, "misdirected_request", "this agent does not answer for "
                             "that host name").response()  # fmt: skip
        origin = request.headers.get("Origin")
        if _api(path) and origin is not None and not policy.origin_allowed(origin):
            return HttpError(403, "forbidden_origin", "this origin may not use the API").response()
        if request.method == "OPTIONS" and _api(path):
            return Response("", status=204)
        caller = await access.authenticate(credentials(request.headers))
        g.caller = caller
        if path.startswith("/api/"):
            if caller is None:
                return HttpError(401, "not_authenticated", "sign in first").response()
            if request.method in UNSAFE_METHODS and caller.via == "cookie" and origin is None:
                return HttpError(403, "forbidden_origin", "a signed-in browser request must "
                                 "say where it comes from (Origin)").response()  # fmt: skip
        return None

    @app.after_request
    async def headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if _api(request.path) and origin is not None and policy.origin_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
                response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
        if _api(request.path):
            response.vary.add("Origin")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = editor_csp(state)
            response.headers["X-Frame-Options"] = "DENY"
        return response


def editor_csp(state: AppState) -> str:
    """The editor page's Content-Security-Policy: its own scripts only, connections to the
    agent (HTTP and WebSocket), previews in frames, and no one may frame the editor."""
    config = state.config
    own = " ".join(state.policy.own_origins) or "'self'"
    ws_own = " ".join(
        o.replace("https://", "wss://").replace("http://", "ws://")
        for o in state.policy.own_origins
    )
    port = f":{config.preview_public_port}" if config.preview_public_port else ""
    previews = f"{config.preview_scheme}://*.{config.preview_base_domain}{port}"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob: https:",
            "font-src 'self' data:",
            f"connect-src 'self' {own} {ws_own}",
            f"frame-src {previews}",
            "frame-ancestors 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "object-src 'none'",
        )
    )
