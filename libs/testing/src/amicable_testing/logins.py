"""Signing people in to a real agent through the fake OpenID provider, as a browser would.

:class:`Site` is an agent (``AUTH_MODE=oidc``) plus its :class:`~.fake_oidc.FakeOidc`;
:meth:`Site.login` walks the redirects (agent -> provider -> agent callback) with a real HTTP
client, so the agent's whole login path runs. Used by the identity tests and the editor's
browser tests.
"""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx
from amicable_agent.auth.config import AuthConfig

from .fake_oidc import FakeOidc, User

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CLIENT_ID = "amicable"
CLIENT_SECRET = "s3cret-client"
SESSION_SECRET = "x" * 48
ALICE = User(sub="alice-sub", email="alice@example.com", name="Alice")
BOB = User(sub="bob-sub", email="bob@example.com", name="Bob")
CAROL = User(sub="carol-sub", email="carol@example.org", name="Carol")


def oidc_config(issuer: str, **auth: Any) -> AuthConfig:
    """Login settings for an agent that trusts the fake provider at ``issuer``."""
    return AuthConfig(
        mode="oidc",
        issuer_url=issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        session_secret=SESSION_SECRET,
        session_secret_generated=False,
        **auth,
    )


@attrs.define
class Site:
    """An agent with logins, and its provider.

    Attributes:
        http: the agent's canonical URL (its redirect URI's origin).
        oidc: the provider.
        agent: whatever runs the agent (tests keep their own handle here).
    """

    http: str
    oidc: FakeOidc
    agent: Any = None

    @property
    def origin(self) -> str:
        """The editor's origin (served by the agent itself)."""
        return self.http

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """A cookie-keeping client that sends the editor's Origin, as a browser would."""
        headers = {"Origin": self.origin, **kwargs.pop("headers", {})}
        return httpx.AsyncClient(base_url=self.http, headers=headers, **kwargs)

    async def login(
        self, client: httpx.AsyncClient, user: User, redirect: str = "/"
    ) -> httpx.Response:
        """The browser round trip: agent -> provider -> agent callback. Returns the
        callback's answer (302 with the session cookie on success)."""
        self.oidc.login_as(user)
        start = await client.get("/auth/login", params={"redirect": redirect})
        if start.status_code != 302:
            raise AssertionError(f"/auth/login answered {start.status_code}: {start.text}")
        async with httpx.AsyncClient() as browser:
            at_provider = await browser.get(start.headers["location"])
        back = at_provider.headers.get("location", "")
        if not back.startswith(self.http + "/auth/callback?"):
            raise AssertionError(f"the provider sent the browser to {back!r}")
        return await client.get(back.removeprefix(self.http))

    @asynccontextmanager
    async def signed_in(self, user: User) -> AsyncIterator[httpx.AsyncClient]:
        """A client with ``user``'s session cookie."""
        async with self.client() as client:
            done = await self.login(client, user)
            if done.status_code != 302:
                raise AssertionError(f"login of {user.email} failed: {done.text}")
            yield client


def query(url: str) -> dict[str, str]:
    """A URL's query parameters (first value each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def cookie_value(response: httpx.Response, name: str = "amicable_session") -> str | None:
    """The value a response sets for cookie ``name``, if any."""
    for header in response.headers.get_list("set-cookie"):
        match = re.match(rf"{name}=([^;]*)", header)
        if match:
            return match.group(1)
    return None
