"""Signed cookies: the login session (a server-side session id) and the login flow.

Signing uses itsdangerous (HMAC-SHA256, timestamped). The session cookie carries only a random
session id; the session row in the store says who it is and whether it was revoked, so a
logged-out cookie stops working even before it expires. The flow cookie carries the OIDC
``state``, ``nonce``, PKCE verifier and the redirect target for the few minutes between
``/auth/login`` and ``/auth/callback``.
"""

from __future__ import annotations

from typing import Any

import attrs
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

#: How long a login may take at the provider before the callback is refused.
FLOW_MAX_AGE_S = 600
FLOW_COOKIE = "amicable_login"


@attrs.frozen
class LoginFlow:
    """What ``/auth/login`` remembers for ``/auth/callback``."""

    state: str
    nonce: str
    verifier: str
    redirect: str


class CookieSigner:
    """Signs and checks the two cookies with one secret (different salts).

    Args:
        secret: ``SESSION_SECRET``.
        session_max_age_s: the session cookie's lifetime.
    """

    def __init__(self, secret: str, session_max_age_s: int) -> None:
        self._session = URLSafeTimedSerializer(secret, salt="amicable.session")
        self._flow = URLSafeTimedSerializer(secret, salt="amicable.login-flow")
        self._max_age = session_max_age_s

    def session_value(self, session_id: str) -> str:
        """The session cookie's value for a login session."""
        return self._session.dumps({"sid": session_id})

    def session_id(self, value: str) -> str | None:
        """The session id in a cookie value, or None when it is forged, tampered or expired."""
        data = _loads(self._session, value, self._max_age)
        sid = data.get("sid") if data else None
        return sid if isinstance(sid, str) and sid else None

    def flow_value(self, flow: LoginFlow) -> str:
        """The login-flow cookie's value."""
        return self._flow.dumps(attrs.asdict(flow))

    def flow(self, value: str) -> LoginFlow | None:
        """The login flow in a cookie value, or None when forged, tampered or too old."""
        data = _loads(self._flow, value, FLOW_MAX_AGE_S)
        if not data:
            return None
        try:
            return LoginFlow(
                **{k: str(data[k]) for k in ("state", "nonce", "verifier", "redirect")}
            )
        except KeyError:
            return None


def _loads(serializer: URLSafeTimedSerializer, value: str, max_age: int) -> dict[str, Any] | None:
    if not value or len(value) > 4096:
        return None
    try:
        data = serializer.loads(value, max_age=max_age)
    except (BadSignature, SignatureExpired, ValueError):
        return None
    return data if isinstance(data, dict) else None
