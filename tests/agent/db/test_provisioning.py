"""Provisioning against the fake Hasura over real HTTP."""

from __future__ import annotations

import attrs
import pytest
import trio
from amicable_agent.db import HasuraClient, Provisioner, app_schema_name, open_hasura_client
from amicable_agent.db.sql import sha256_hex
from amicable_agent.errors import HasuraError

from .conftest import Hasura

HOSTILE_IDS = ["p-1", "it's'; DROP SCHEMA amicable_meta CASCADE; --", "back\\slash\\'", "ünï 💥"]


def _rows(hasura: Hasura, sql: str) -> list[list[str]]:
    result = hasura.fake.run_sql(sql)
    return result["result"][1:] if result["result"] else []


@pytest.mark.parametrize("app_id", HOSTILE_IDS)
async def test_ensure_app_creates_schema_and_stores_only_the_key_hash(
    hasura: Hasura, app_id: str
) -> None:
    async with open_hasura_client(hasura.config) as client:
        creds = await Provisioner(client).ensure_app(app_id)
    schema = app_schema_name(app_id)
    assert creds.changed
    assert creds.record.schema_name == schema == creds.record.role_name
    assert schema in hasura.fake.schemas
    rows = _rows(hasura, "SELECT app_id, schema_name, app_key_sha256 FROM amicable_meta.apps")
    assert rows == [[app_id, schema, sha256_hex(creds.app_key)]]
    assert creds.app_key not in repr(creds)
    # every admin call carried the admin secret and the source
    assert all(r.headers["x-hasura-admin-secret"] for r in hasura.fake.requests)
    assert all(r.body["args"]["source"] == "default" for r in hasura.fake.requests)


async def test_known_key_is_kept_and_a_wrong_one_is_rotated(hasura: Hasura) -> None:
    async with open_hasura_client(hasura.config) as client:
        prov = Provisioner(client)
        first = await prov.ensure_app("p1")
        again = await prov.ensure_app("p1", known_key=first.app_key)
        assert not again.changed
        assert again.app_key == first.app_key
        stolen = await prov.ensure_app("p1", known_key="guessed")
        assert stolen.changed
        assert stolen.app_key != first.app_key
        record = await prov.get_app("p1")
        assert record is not None
        assert record.key_matches(stolen.app_key)
        assert not record.key_matches(first.app_key)
        rotated = await prov.rotate_app_key("p1")
        assert rotated is not None
        record = await prov.get_app("p1")
        assert record is not None
        assert record.key_matches(rotated)
        assert await prov.rotate_app_key("nobody") is None
        assert await prov.get_app("nobody") is None
    assert len(_rows(hasura, "SELECT app_id FROM amicable_meta.apps")) == 1


async def test_cleanup_untracks_tables_drops_schema_and_row(hasura: Hasura) -> None:
    async with open_hasura_client(hasura.config) as client:
        prov = Provisioner(client)
        await prov.ensure_app("keep")
        await prov.ensure_app("gone")
        schema = app_schema_name("gone")
        await client.run_sql(f'CREATE TABLE "{schema}"."todos" (id serial PRIMARY KEY, t text);')
        await client.run_sql(f'CREATE TABLE "{schema}"."untracked" (id integer);')
        await prov.track_table("gone", "todos")
        assert (schema, "todos") in hasura.fake.tracked
        assert hasura.fake.permissions[(schema, "todos", schema)] == {
            "select",
            "insert",
            "update",
            "delete",
        }
        await prov.track_table("gone", "todos")  # idempotent
        assert await prov.cleanup_app("gone") is True
        assert await prov.get_app("gone") is None
        assert await prov.get_app("keep") is not None
        assert await prov.cleanup_app("gone") is False  # idempotent
    assert hasura.fake.tracked == set()
    assert hasura.fake.table_names(schema) == []
    assert schema not in hasura.fake.schemas
    assert app_schema_name("keep") in hasura.fake.schemas


async def test_track_table_refuses_unsafe_names(hasura: Hasura) -> None:
    async with open_hasura_client(hasura.config) as client:
        with pytest.raises(ValueError, match="table name"):
            await Provisioner(client).track_table("p", 'x"; drop')


async def test_hasura_errors_are_clear(hasura: Hasura, closed_port_url: str) -> None:
    bad_secret = attrs.evolve(hasura.config, admin_secret="wrong")
    async with open_hasura_client(bad_secret) as client:
        with pytest.raises(HasuraError) as info:
            await Provisioner(client).ensure_app("p")
    assert info.value.status == 401
    assert info.value.code == "access-denied"
    async with open_hasura_client(hasura.config) as client:
        with pytest.raises(HasuraError) as info:
            await client.run_sql("SELECT * FROM nowhere.nothing;")
    assert info.value.status == 400
    assert info.value.code == "postgres-error"
    down = attrs.evolve(hasura.config, base_url=closed_port_url)
    async with open_hasura_client(down) as client:
        with pytest.raises(HasuraError) as info:
            await Provisioner(client).get_app("p")
    assert info.value.status == 0
    assert info.value.code == "unreachable"
    assert "admin-secret" not in str(info.value)


async def test_two_agents_racing_on_one_app_leave_one_valid_row(hasura: Hasura) -> None:
    keys: list[str] = []
    async with open_hasura_client(hasura.config) as a, open_hasura_client(hasura.config) as b:

        async def ensure(client: HasuraClient) -> None:
            keys.append((await Provisioner(client).ensure_app("p1")).app_key)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ensure, a)
            nursery.start_soon(ensure, b)
        record = await Provisioner(a).get_app("p1")
    assert record is not None
    assert len(keys) == 2
    assert sum(record.key_matches(k) for k in keys) == 1  # the last writer's key
    assert len(_rows(hasura, "SELECT app_id FROM amicable_meta.apps")) == 1
