"""A fake OpenID Connect provider over real HTTP, for login tests.

It speaks the authorization-code flow with PKCE (S256) as Keycloak, Dex or Google do, on
a real loopback socket, so the agent's real OIDC client (discovery, JWKS, token exchange,
ID token checks) runs against it unchanged:

=========================================  ================================================
``GET /.well-known/openid-configuration``  discovery (``issuer`` is the fake's base URL)
``GET /authorize``                         no login page: signs in the *current* user
                                           (:meth:`~FakeOidc.login_as`) or the registered
                                           user named by ``login_hint=<email>``, and
                                           redirects back with a one-time code (60 s)
``POST /token``                            code + PKCE verifier → access and ID token;
                                           ``client_secret_basic`` or ``client_secret_post``
``GET /jwks``                              the public keys (RS256, real 2048-bit RSA)
``GET /userinfo``                          the user's claims for a Bearer access token
``GET /logout``                            RP-initiated logout (``end_session_endpoint``)
=========================================  ================================================

Knobs for tests: :meth:`~FakeOidc.deny_next` (the user refuses: ``error=access_denied``),
:meth:`~FakeOidc.tamper_next` (the next ID token is bad in one way: ``signature``,
``issuer``, ``audience``, ``expired``, ``nonce``, ``alg_none``, ``unknown_kid``),
:meth:`~FakeOidc.rotate_keys`, :attr:`~FakeOidc.requests` and :meth:`~FakeOidc.statistics`.
Codes and access tokens expire on Trio's clock, so a test on a ``MockClock`` can jump past
them.

Usage::

    async with open_fake_oidc(clients={"amicable": ("s3cret", [])}, users=[alice]) as oidc:
        oidc.register_client("amicable", "s3cret", [f"{agent_url}/auth/callback"])
        # OIDC_ISSUER_URL=oidc.issuer  OIDC_CLIENT_ID=amicable  OIDC_CLIENT_SECRET=s3cret
        oidc.tamper_next("nonce")
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, jsonify, request
from quart_trio import QuartTrio

from ._oidc_provider import FakeOidcStatistics, OAuthError, OidcProvider, RecordedRequest
from ._oidc_tokens import TamperKind, User, pkce_challenge

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

__all__ = [
    "FakeOidc",
    "FakeOidcStatistics",
    "OAuthError",
    "RecordedRequest",
    "TamperKind",
    "User",
    "open_fake_oidc",
    "pkce_challenge",
]

_FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class FakeOidc(OidcProvider):
    """The provider, served over HTTP by :meth:`serve` (or :func:`open_fake_oidc`).

    Args:
        clients: ``{client_id: (secret, redirect_uris)}``; more with :meth:`register_client`.
        users: who can sign in; the first is the current user until :meth:`login_as`.

    Attributes:
        issuer: ``http://127.0.0.1:<port>`` once serving (empty before).
        requests: every request received, in order.
    """

    def app(self) -> QuartTrio:
        """The quart app."""
        app = QuartTrio("fake_oidc")
        app.before_request(self._record)
        routes = [
            ("/.well-known/openid-configuration", self._discovery_endpoint, ["GET"]),
            ("/authorize", self._authorize_endpoint, ["GET"]),
            ("/token", self._token_endpoint, ["POST"]),
            ("/jwks", self._jwks_endpoint, ["GET"]),
            ("/userinfo", self._userinfo_endpoint, ["GET", "POST"]),
            ("/logout", self._logout_endpoint, ["GET"]),
        ]
        for rule, view, methods in routes:
            app.add_url_rule(rule, view_func=view, methods=methods)
        return app

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on a free loopback port until cancelled; ``task_status.started(issuer)``.

        Cancellation: the server stops; open connections are dropped.
        """
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 1.0
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(hypercorn_serve, self.app(), config)
            self.issuer = str(binds[0]).rstrip("/")
            task_status.started(self.issuer)

    async def _record(self) -> None:
        params = request.args.to_dict()
        if request.method == "POST" and request.mimetype == _FORM:
            params |= (await request.form).to_dict()
        self.requests.append(
            RecordedRequest(request.method, request.path, params, dict(request.headers))
        )

    async def _discovery_endpoint(self) -> Response:
        return jsonify(self.discovery())

    async def _jwks_endpoint(self) -> Response:
        return jsonify(self.jwks())

    async def _authorize_endpoint(self) -> Response:
        try:
            return _redirect(self.authorize(request.args.to_dict()))
        except OAuthError as exc:
            return _error(exc)

    async def _token_endpoint(self) -> Response:
        form = (await request.form).to_dict() if request.mimetype == _FORM else None
        try:
            body = self.token(form, request.headers.get("Authorization"))
        except OAuthError as exc:
            return _error(exc)
        return _json(body, 200, _NO_STORE)

    async def _userinfo_endpoint(self) -> Response:
        try:
            return _json(self.userinfo(request.headers.get("Authorization")), 200)
        except OAuthError as exc:
            return _error(exc)

    async def _logout_endpoint(self) -> Response:
        try:
            target = self.end_session(request.args.to_dict())
        except OAuthError as exc:
            return _error(exc)
        if target is None:
            return Response("Signed out.\n", content_type="text/plain")
        return _redirect(target)


@asynccontextmanager
async def open_fake_oidc(
    *,
    clients: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    users: Iterable[User] = (),
) -> AsyncIterator[FakeOidc]:
    """Serve a :class:`FakeOidc` on ``127.0.0.1`` (a free port) for the block.

    Args:
        clients: ``{client_id: (secret, redirect_uris)}``; more with ``register_client``.
        users: who can sign in; the first is the current user until ``login_as``.

    Returns:
        the provider, its :attr:`~FakeOidc.issuer` set.

    Cancellation: leaving the block stops the server; open connections are dropped.
    """
    provider = FakeOidc(clients=clients, users=users)
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.serve)
        try:
            yield provider
        finally:
            nursery.cancel_scope.cancel()


def _json(body: dict[str, Any], status: int, headers: Mapping[str, str] | None = None) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    resp.headers.update(headers or {})
    return resp


def _error(exc: OAuthError) -> Response:
    headers = dict(_NO_STORE)
    if exc.error == "invalid_client" and exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="fake-oidc"'
    elif exc.error == "invalid_token":
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    body = {"error": exc.error, "error_description": exc.description}
    return _json(body, exc.status, headers)


def _redirect(location: str) -> Response:
    return Response("", status=302, headers={"Location": location})
