"""``/auth/*`` (login with the configured OpenID provider, logout, who am I) and
``/api/tokens`` (API tokens for scripts). Shapes: ``docs/auth.md``."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from quart import Blueprint, Response, current_app, g, jsonify, request

from amicable_agent.auth.cookies import FLOW_COOKIE, FLOW_MAX_AGE_S
from amicable_agent.auth.oidc import LoginError

from .bodies import HttpError, json_object
from .guard import current_caller

if TYPE_CHECKING:
    from .state import AppState

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)
MAX_TOKEN_NAME = 100


def _state() -> AppState:
    state: AppState = current_app.config["AMICABLE_STATE"]
    return state


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def _redirect_target(state: AppState) -> str:
    target = request.args.get("redirect", "/")
    return target if state.policy.redirect_allowed(target) else "/"


def _redirect(location: str) -> Response:
    resp = Response("", status=302)
    resp.headers["Location"] = location
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _set_cookie(resp: Response, state: AppState, name: str, value: str, max_age: int) -> None:
    resp.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=state.config.auth.secure_cookies,
    )


@bp.get("/auth/me")
async def me() -> Response:
    """``{authenticated, mode, user}``."""
    state = _state()
    caller = g.get("caller")
    return jsonify(
        {
            "authenticated": caller is not None,
            "mode": state.config.auth.mode,
            "user": caller.user.public() if caller is not None else None,
        }
    )


@bp.get("/auth/login")
async def login() -> Response:
    """302 to the provider, remembering state, nonce, PKCE verifier and where to return."""
    state = _state()
    if state.oidc is None:
        raise HttpError(400, "auth_disabled", "this agent has no login (AUTH_MODE=none)")
    try:
        url, flow = await state.oidc.start(_redirect_target(state))
    except LoginError as exc:
        raise HttpError(503, "login_unavailable", exc.detail) from exc
    resp = _redirect(url)
    _set_cookie(resp, state, FLOW_COOKIE, state.access.signer.flow_value(flow), FLOW_MAX_AGE_S)
    return resp


@bp.get("/auth/callback")
async def callback() -> Response:
    """Finish the login: verify, record the user, set the session cookie, 302 back."""
    state = _state()
    if state.oidc is None:
        raise HttpError(400, "auth_disabled", "this agent has no login (AUTH_MODE=none)")
    flow = state.access.signer.flow(request.cookies.get(FLOW_COOKIE, ""))
    if flow is None:
        return _failed(400, "this login expired or was not started here; sign in again")
    if "error" in request.args:
        reason = request.args.get("error", "")[:100]
        return _failed(400, f"the login provider said: {reason}")
    try:
        user = await state.oidc.finish(
            flow, code=request.args.get("code", ""), state=request.args.get("state", "")
        )
    except LoginError as exc:
        log.warning("login failed: %s", exc.detail)
        return _failed(503 if exc.unavailable else 400, exc.detail)
    auth = state.config.auth
    user = await state.store.record_login(user, admin_emails=auth.admin_emails)
    session_id = await state.store.create_login_session(user.sub, auth.session_max_age_s)
    log.info("login: %s (%s)", user.email or user.sub, user.sub)
    target = flow.redirect if state.policy.redirect_allowed(flow.redirect) else "/"
    resp = _redirect(target)
    value = state.access.signer.session_value(session_id)
    _set_cookie(resp, state, auth.cookie_name, value, auth.session_max_age_s)
    resp.delete_cookie(FLOW_COOKIE, path="/")
    return resp


def _failed(status: int, detail: str) -> Response:
    """A failed login: a browser goes back to the editor, which shows ``detail``; other
    clients get the JSON error."""
    if "text/html" in request.headers.get("Accept", ""):
        resp = _redirect("/?" + urlencode({"login_error": detail}))
        resp.delete_cookie(FLOW_COOKIE, path="/")
        return resp
    return HttpError(status, "login_failed", detail).response()


@bp.route("/auth/logout", methods=["GET", "POST"])
async def logout() -> Response:
    """End the login server-side (the old cookie stops working) and clear the cookie."""
    state = _state()
    caller = g.get("caller")
    if caller is not None and caller.session_id is not None:
        await state.store.revoke_login_session(caller.session_id)
    resp = _redirect(_redirect_target(state))
    resp.delete_cookie(state.config.auth.cookie_name, path="/")
    return resp


@bp.get("/api/tokens")
async def list_tokens() -> Response:
    """The caller's API tokens (never the tokens themselves)."""
    tokens = await _state().store.list_api_tokens(current_caller().sub)
    return jsonify({"tokens": [_token(t) for t in tokens]})


@bp.post("/api/tokens")
async def create_token() -> tuple[Response, int]:
    """A new API token; the token is in this answer only."""
    caller = current_caller()
    if caller.local:
        raise HttpError(400, "auth_disabled", "API tokens need a login (AUTH_MODE=none)")
    body = await json_object()
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_TOKEN_NAME:
        raise HttpError(400, "invalid_name", f"name must be 1-{MAX_TOKEN_NAME} characters")
    record, token = await _state().store.create_api_token(caller.sub, name.strip())
    return jsonify({**_token(record), "token": token}), 201


@bp.delete("/api/tokens/<token_id>")
async def delete_token(token_id: str) -> Response:
    """Revoke one of the caller's tokens."""
    if not await _state().store.delete_api_token(current_caller().sub, token_id[:64]):
        raise HttpError(404, "not_found")
    return Response("", status=204)


def _token(record: Any) -> dict[str, Any]:
    return {
        "id": record.token_id,
        "name": record.name,
        "created_at": _iso(record.created_at),
        "last_used_at": _iso(record.last_used_at),
    }
