"""Users, PKCE, signing keys and ID tokens for :mod:`amicable_testing.fake_oidc` (no I/O).

A :class:`User` says which claims a scope releases. A :class:`KeyRing` holds real 2048-bit
RSA keys; the newest signs, all are published as a JWK Set. :func:`mint_id_token` signs
claims with RS256 and can spoil the token in one of the ways a relying party must notice
(:data:`TamperKind`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import TYPE_CHECKING, Any, Literal, get_args

import attrs
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from collections.abc import Collection

TamperKind = Literal[
    "signature", "issuer", "audience", "expired", "nonce", "alg_none", "unknown_kid"
]
TAMPER_KINDS: frozenset[str] = frozenset(get_args(TamperKind))


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def pkce_challenge(verifier: str) -> str:
    """The S256 ``code_challenge`` for ``verifier`` (RFC 7636 §4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@attrs.frozen
class User:
    """A person the provider can sign in; ``login_hint`` matches ``email``."""

    sub: str
    email: str
    name: str | None = None
    picture: str | None = None
    email_verified: bool = True

    def claims(self, scopes: Collection[str]) -> dict[str, Any]:
        """``sub`` and the standard claims ``scopes`` release (OIDC Core §5.4)."""
        out: dict[str, Any] = {"sub": self.sub}
        if "email" in scopes:
            out |= {"email": self.email, "email_verified": self.email_verified}
        if "profile" in scopes:
            out |= {k: v for k, v in (("name", self.name), ("picture", self.picture)) if v}
        return out


@attrs.frozen
class SigningKey:
    """One RSA key pair and its key id."""

    kid: str
    private_key: rsa.RSAPrivateKey = attrs.field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh 2048-bit key with a random ``kid``."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(f"fake-{secrets.token_hex(6)}", key)

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 7517)."""
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def sign(self, claims: dict[str, Any]) -> str:
        """``claims`` as an RS256 JWT with this key's ``kid`` in the header."""
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})


class KeyRing:
    """The provider's keys: the newest signs; every key in the ring is published."""

    def __init__(self) -> None:
        self._keys = [SigningKey.generate()]

    @property
    def current(self) -> SigningKey:
        """The key that signs new tokens."""
        return self._keys[-1]

    @property
    def kids(self) -> tuple[str, ...]:
        """Key ids of the published keys, oldest first."""
        return tuple(k.kid for k in self._keys)

    def rotate(self, *, drop_old: bool = False) -> str:
        """Add a new signing key (and unpublish the others if ``drop_old``); its ``kid``."""
        key = SigningKey.generate()
        self._keys = [key] if drop_old else [*self._keys, key]
        return key.kid

    def jwks(self) -> dict[str, Any]:
        """The JWK Set document."""
        return {"keys": [k.jwk() for k in self._keys]}


def mint_id_token(ring: KeyRing, claims: dict[str, Any], tamper: TamperKind | None = None) -> str:
    """Sign ``claims`` with the ring's current key, spoiled as ``tamper`` says.

    ``signature`` flips a bit of a valid signature; ``issuer``, ``audience``, ``expired`` and
    ``nonce`` sign well-formed tokens with that claim wrong; ``alg_none`` sends the claims
    unsigned (``alg: none``, with the current ``kid``); ``unknown_kid`` signs with a key that
    is never published.
    """
    claims = dict(claims)
    if tamper == "issuer":
        claims["iss"] = str(claims["iss"]) + "/other-realm"
    elif tamper == "audience":
        claims["aud"] = claims["azp"] = "some-other-client"
    elif tamper == "expired":
        claims["iat"] = int(claims["iat"]) - 7200
        claims["exp"] = int(claims["iat"]) + 3600
    elif tamper == "nonce":
        claims["nonce"] = "tampered-" + secrets.token_urlsafe(8)
    if tamper == "alg_none":
        header = {"alg": "none", "typ": "JWT", "kid": ring.current.kid}
        parts = (json.dumps(header).encode(), json.dumps(claims).encode())
        return ".".join(b64url(p) for p in parts) + "."
    key = SigningKey.generate() if tamper == "unknown_kid" else ring.current
    token = key.sign(claims)
    if tamper == "signature":
        head, body, sig = token.split(".")
        raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
        raw[len(raw) // 2] ^= 0x01
        token = f"{head}.{body}.{b64url(bytes(raw))}"
    return token
