"""HS256 JSON Web Tokens for Hasura, written with :mod:`hmac` (no crypto dependency).

The agent mints one short-lived token per proxied request (upstream §6.2); the fake Hasura
verifies them with :func:`decode_hs256`, the same way Hasura does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import JwtSecret

#: Lifetime of a minted token.
TOKEN_TTL_S = 300
_HEADER = {"alg": "HS256", "typ": "JWT"}


class InvalidJwt(ValueError):
    """A token that does not verify (bad shape, algorithm, signature, or expired)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise InvalidJwt("bad base64url") from exc


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _sign(key: bytes, signing_input: str) -> str:
    return _b64(hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest())


def hasura_claims(role: str, app_id: str) -> dict[str, Any]:
    """The ``x-hasura-*`` claims of an app's role (upstream §6.2)."""
    return {
        "x-hasura-default-role": role,
        "x-hasura-allowed-roles": [role],
        "x-hasura-app-id": app_id,
    }


def mint_hasura_jwt(
    secret: JwtSecret, *, role: str, app_id: str, now: float | None = None, ttl_s: int = TOKEN_TTL_S
) -> str:
    """A signed token for ``role``, valid ``ttl_s`` seconds from ``now``.

    Args:
        secret: the parsed Hasura JWT secret.
        role: the Hasura role (``app_<sha12>``).
        app_id: the app (project) id, as ``x-hasura-app-id``.
        now: the issue time (default: the wall clock).
        ttl_s: lifetime in seconds.

    Returns:
        The compact JWS ``header.payload.signature``.
    """
    iat = int(time.time() if now is None else now)
    claims: Any = hasura_claims(role, app_id)
    if secret.claims_format == "stringified_json":
        claims = _compact(claims).decode("utf-8")
    payload: dict[str, Any] = {"iat": iat, "exp": iat + ttl_s, secret.claims_namespace: claims}
    if secret.issuer:
        payload["iss"] = secret.issuer
    if secret.audience:
        payload["aud"] = secret.audience
    signing_input = _b64(_compact(_HEADER)) + "." + _b64(_compact(payload))
    return signing_input + "." + _sign(secret.key, signing_input)


def decode_hs256(token: str, key: bytes, *, now: float | None = None) -> dict[str, Any]:
    """Verify an HS256 token and return its payload.

    Raises:
        InvalidJwt: malformed, another algorithm, wrong signature, or expired.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidJwt("not a compact JWS")
    try:
        header = json.loads(_unb64(parts[0]))
        payload = json.loads(_unb64(parts[1]))
    except ValueError as exc:
        raise InvalidJwt("bad JSON") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise InvalidJwt("algorithm must be HS256")
    expected = _sign(key, parts[0] + "." + parts[1])
    if not hmac.compare_digest(expected.encode(), parts[2].encode()):
        raise InvalidJwt("JWSInvalidSignature")
    if not isinstance(payload, dict):
        raise InvalidJwt("payload is not an object")
    exp = payload.get("exp")
    current = time.time() if now is None else now
    if not isinstance(exp, int | float) or exp <= current:
        raise InvalidJwt("JWTExpired")
    return payload
