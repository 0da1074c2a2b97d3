"""Fixtures: a fake Hasura on loopback, and a Hasura config pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio
from amicable_agent.db import HasuraConfig, JwtSecret, app_schema_name
from amicable_testing.fake_hasura import FakeHasura
from amicable_testing.logins import ALICE
from amicable_testing.postgres import PostgresServer

if TYPE_CHECKING:
    from .pg_stack import Project, Stack

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


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the module's tests (skip the module when it is not installed)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
async def stack(tmp_path: Path, pg_server: PostgresServer) -> AsyncIterator[Stack]:
    """The agent on the fake Hasura backed by ``pg_server`` (a fresh database)."""
    from .pg_stack import open_stack

    async with open_stack(tmp_path, pg_server.create_database()) as running:
        yield running


@pytest.fixture
async def project(stack: Stack) -> AsyncIterator[Project]:
    """Alice's project with ``customers`` (7 rows) and ``orders`` in its app schema."""
    from .pg_stack import Project

    async with stack.site.signed_in(ALICE) as alice:
        pid = (await alice.post("/api/projects", json={"name": "Shop"})).json()["project_id"]
        schema = app_schema_name(pid)
        stack.sql(
            "CREATE SCHEMA amicable_meta; CREATE TABLE amicable_meta.canary (x int); "
            f"CREATE SCHEMA {schema}; "
            f"CREATE TABLE {schema}.customers (id bigserial PRIMARY KEY, name text NOT NULL, "
            "vip boolean DEFAULT false, note text DEFAULT 'it''s new', score integer DEFAULT 7,"
            " created_at timestamptz DEFAULT now()); "
            f"CREATE TABLE {schema}.orders (id bigserial PRIMARY KEY, total numeric, "
            f"customer_id bigint REFERENCES {schema}.customers (id) ON DELETE CASCADE); "
            f"INSERT INTO {schema}.customers (name) SELECT 'c' || g FROM generate_series(1, 7) g;"
        )
        yield Project(pid, schema, alice)
