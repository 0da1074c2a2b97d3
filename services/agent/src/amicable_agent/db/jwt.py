"""HS256 JSON Web Tokens for Hasura, signed and verified with PyJWT.

The agent mints one short-lived token per proxied request (upstream §6.2); the fake Hasura
verifies them with :func:`decode_hs256`, the same way Hasura does: HS256 only (never
``none`` or another algorithm), a valid signature, and an ``exp`` in the future.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import jwt

from amicable_agent.errors import AgentError

if TYPE_CHECKING:
    from jwt.types import Options

    from .config import JwtSecret

#: Lifetime of a minted token.
TOKEN_TTL_S = 300
#: The only algorithm we sign with and accept.
ALGORITHM = "HS256"

# PyJWT checks exp/iat/nbf against the wall clock; ``decode_hs256`` takes ``now`` (tests pin
# it), so it checks ``exp`` itself and PyJWT only verifies the algorithm and signature.
_DECODE_OPTIONS: Options = {
    "require": ["exp"],
    "verify_signature": True,
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_aud": False,
    "verify_iss": False,
}


class InvalidJwt(AgentError, ValueError):
    """A token that does not verify (bad shape, algorithm, signature, or expired)."""


class _SortedCompactJson(json.JSONEncoder):
    """Payload JSON with sorted keys, as the hand-written encoder made it (same bytes)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "sort_keys": True})


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


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
        claims = _compact(claims)
    payload: dict[str, Any] = {"iat": iat, "exp": iat + ttl_s, secret.claims_namespace: claims}
    if secret.issuer:
        payload["iss"] = secret.issuer
    if secret.audience:
        payload["aud"] = secret.audience
    return jwt.encode(payload, secret.key, algorithm=ALGORITHM, json_encoder=_SortedCompactJson)


def decode_hs256(token: str, key: bytes, *, now: float | None = None) -> dict[str, Any]:
    """Verify an HS256 token and return its payload.

    Raises:
        InvalidJwt: malformed, another algorithm, wrong signature, or expired.
    """
    try:
        payload: dict[str, Any] = jwt.decode(
            token, key, algorithms=[ALGORITHM], options=_DECODE_OPTIONS
        )
    except jwt.InvalidAlgorithmError as exc:
        raise InvalidJwt(f"algorithm must be {ALGORITHM}") from exc
    except jwt.InvalidSignatureError as exc:
        raise InvalidJwt("JWSInvalidSignature") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidJwt("JWTExpired (no exp claim)") from exc
    except jwt.PyJWTError as exc:
        raise InvalidJwt(f"malformed token: {exc}") from exc
    exp = payload["exp"]
    current = time.time() if now is None else now
    if not isinstance(exp, int | float) or exp <= current:
        raise InvalidJwt("JWTExpired")
    return payload
