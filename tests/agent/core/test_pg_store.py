"""The PostgreSQL store on a real server: shared by replicas, concurrent migration and slugs,
a server restart, an unreachable server, and the agent serving from it."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.errors import ConfigError, StoreUnavailable
from amicable_agent.store.postgres import MIGRATIONS, open_postgres_store
from amicable_testing.postgres import PostgresServer


async def test_two_replicas_share_one_database(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    async with open_postgres_store(url) as one, open_postgres_store(url) as two:
        made = await one.create_project("Shared", template_id="vite", project_id="p-1")
        assert await two.get_project("p-1") == made
        await two.append_chat("p-1", "user", "from replica two")
        await two.save_state("p-1", "hitl_pending", {"interrupt_id": "i-9"})
        assert [e.text for e in await one.chat_history("p-1")] == ["from replica two"]
        assert await one.load_state("p-1", "hitl_pending") == {"interrupt_id": "i-9"}
        assert await two.soft_delete_project("p-1") is not None
        assert await one.get_project("p-1") is None


async def test_replicas_starting_together_migrate_once(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    opened: list[Any] = []

    async def start() -> None:
        async with open_postgres_store(url) as store:
            opened.append(store)
            await store.list_projects()

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(start)
    assert len(opened) == 4
    with psycopg.connect(url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


async def test_concurrent_creates_get_distinct_slugs(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    async with open_postgres_store(url) as one, open_postgres_store(url) as two:
        made: list[Any] = []

        async def create(store: Any) -> None:
            made.append(await store.create_project("Same Name", template_id="vite"))

        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(create, one if i % 2 else two)
        slugs = [p.slug for p in made]
        assert len(set(slugs)) == 12
        assert "same-name" in slugs
        assert sorted(p.slug for p in await one.list_projects()) == sorted(slugs)


async def test_a_server_restart_is_survived(tmp_path: Any) -> None:
    with PostgresServer() as server:
        url = server.create_database()
        async with open_postgres_store(url, ping_after_s=0) as store:
            await store.create_project("Before", template_id="vite", project_id="p-1")
            server.stop()
            with pytest.raises(StoreUnavailable, match="PostgreSQL store"):
                await store.get_project("p-1")
            server.start()
            # pooled connections died with the server; they are replaced, not reused
            project = await store.get_project("p-1")
            assert project is not None
            assert project.name == "Before"
            await store.create_project("After", template_id="vite", project_id="p-2")
            assert {p.project_id for p in await store.list_projects()} == {"p-1", "p-2"}


async def test_an_unreachable_server_is_a_clear_error(tmp_path: Any) -> None:
    url = f"postgresql://nobody@/x?host={tmp_path}&port=5432"
    with pytest.raises(StoreUnavailable, match="cannot open the PostgreSQL store"):
        async with open_postgres_store(url):
            pass


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("sqlite:////var/lib/a.db", True),
        ("postgresql://u:p@db:5432/amicable", True),
        ("postgres://u@db/amicable", True),
        ("mysql://u:secret@db/x", False),
        ("/var/lib/a.db", False),
    ],
)
def test_database_url_is_checked_at_start(value: str, ok: bool) -> None:
    env = {"AMICABLE_DATABASE_URL": value}
    if ok:
        config = AgentConfig.from_env(env)
        assert (config.postgres_url is not None) == value.startswith("postgres")
        assert "secret" not in repr(config)
        assert ":p@" not in repr(config)
    else:
        with pytest.raises(ConfigError, match="unsupported scheme") as caught:
            AgentConfig.from_env(env)
        assert "secret" not in str(caught.value)


async def test_the_agent_serves_from_postgres(
    agent_factory: Any, postgres_server: PostgresServer
) -> None:
    url = postgres_server.create_database()
    async with (
        agent_factory(config={"database_url": url}) as running,
        httpx.AsyncClient(base_url=running.http, trust_env=False) as client,
    ):
        made = await client.post("/api/projects", json={"name": "From PG"})
        assert made.status_code == 200, made.text
        project_id = made.json()["project_id"]
    async with open_postgres_store(url) as store:
        project = await store.get_project(project_id)
    assert project is not None
    assert project.name == "From PG"
    # a second agent (a replica, or the next start) lists it
    async with (
        agent_factory(config={"database_url": url}) as running,
        httpx.AsyncClient(base_url=running.http, trust_env=False) as client,
    ):
        listed = (await client.get("/api/projects")).json()
    assert [p["project_id"] for p in listed["projects"]] == [project_id]


async def test_api_answers_503_while_the_database_is_down(agent_factory: Any) -> None:
    with PostgresServer() as server:
        url = server.create_database()
        async with (
            agent_factory(config={"database_url": url}) as running,
            httpx.AsyncClient(base_url=running.http, trust_env=False) as client,
        ):
            server.stop()
            down = await client.get("/api/projects")
            assert down.status_code == 503
            assert down.json()["error"] == "store_unavailable"
            server.start()
            up = await client.get("/api/projects")
            assert up.status_code == 200
