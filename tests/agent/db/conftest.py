"""Fixtures: a fake Hasura on loopback, and a Hasura config pointing at it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import attrs
import pytest
import trio
from amicable_agent.db import HasuraConfig, JwtSecret
from amicable_testing.fake_hasura import FakeHasura

ADMIN_SECRET = "admin-secret-for-tests"
JWT_KEY = b"a-shared-hs256-key-that-is-long-enough"


@attrs.define
class Hasura:
    """A running fake and the config the agent would use for it."""

    fake: FakeHasura
    base_url: str
    config: HasuraConfig


def hasura_config(base_url: str, **overrides: Any) -> HasuraConfig:
    base = HasuraConfig(
        base_url=base_url,
        admin_secret=ADMIN_SECRET,
        jwt_secret=JwtSecret(key=JWT_KEY),
        public_base_url="http://agent.test",
    )
    return attrs.evolve(base, **overrides)


@pytest.fixture
async def hasura(nursery: trio.Nursery) -> Hasura:
    fake = FakeHasura(admin_secret=ADMIN_SECRET, jwt_key=JWT_KEY)
    base_url = await nursery.start(fake.serve)
    return Hasura(fake, base_url, hasura_config(base_url))


def static_origins(mapping: dict[str, Collection[str]]) -> Any:
    """An origin lookup answering from ``mapping`` (app id -> preview origins)."""

    async def lookup(app_id: str) -> Collection[str]:
        await trio.lowlevel.checkpoint()
        return mapping.get(app_id, ())

    return lookup


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
