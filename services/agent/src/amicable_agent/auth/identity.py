"""Who is calling: users, the caller of one request, project roles."""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

import attrs

Role = Literal["owner", "editor", "viewer"]
#: How much each role may do; a route asks for the least it needs.
RANK: dict[Role, int] = {"viewer": 1, "editor": 2, "owner": 3}
#: Prefix of API tokens (easy to spot in a leaked log, and for secret scanners).
TOKEN_PREFIX = "amk_"


@attrs.frozen
class User:
    """A person, as the identity provider names them (``sub`` is the stable key)."""

    sub: str
    email: str = ""
    name: str = ""
    picture: str = ""

    def public(self) -> dict[str, str]:
        """The ``user`` object of ``/auth/me``."""
        return {"sub": self.sub, "email": self.email, "name": self.name, "picture": self.picture}


#: The one user of ``AUTH_MODE=none``: owns every project of the installation.
LOCAL_USER = User(sub="local", email="", name="Local user")


@attrs.frozen
class Caller:
    """The authenticated caller of one request or socket.

    Attributes:
        user: who.
        via: how they proved it: ``local`` (no login configured), ``cookie`` (a login
            session, subject to CSRF checks) or ``token`` (an API token).
        session_id: the login session (cookie callers), for logout.
        admin: sees and may change every project.
    """

    user: User
    via: Literal["local", "cookie", "token"]
    session_id: str | None = None
    admin: bool = False

    @property
    def sub(self) -> str:
        """The user's stable id."""
        return self.user.sub

    @property
    def local(self) -> bool:
        """No login is configured: the caller owns everything."""
        return self.via == "local"


def satisfies(role: Role | None, need: Role) -> bool:
    """Whether ``role`` (None = no access) is enough for ``need``."""
    return role is not None and RANK[role] >= RANK[need]


def new_api_token() -> tuple[str, str]:
    """A fresh API token and the hash stored for it (the token itself is never stored)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """SHA-256 of a token (tokens are 256-bit random, so no salt or stretching is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()
