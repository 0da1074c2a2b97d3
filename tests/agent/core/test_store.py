"""The stores (SQLite, and PostgreSQL on a real server): migrations, slugs, soft delete,
chat/conversation/state, persistence across reopening."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from amicable_agent.store.base import Store, slugify
from amicable_agent.store.postgres import open_postgres_store
from amicable_agent.store.sqlite import MIGRATIONS, migrate, open_sqlite_store
from amicable_testing.postgres import PostgresServer

OpenStore = Callable[[], AbstractAsyncContextManager[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens the same (initially empty) database each time it is called."""
    if request.param == "sqlite":
        yield lambda: open_sqlite_store(tmp_path / "store.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield lambda: open_postgres_store(url)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("My Todo App", "my-todo-app"),
        ("  --Hello,   World!!  ", "hello-world"),
        ("", "project"),
        ("ÄÖÜ", "project"),
        ("x" * 80, "x" * 50),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_migrations_are_versioned_and_idempotent(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    assert migrate(conn) == len(MIGRATIONS)
    assert migrate(conn) == len(MIGRATIONS)
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    conn.close()


async def test_projects_slugs_rename_soft_delete(open_store: OpenStore) -> None:
    async with open_store() as store:
        a = await store.create_project("Todo App", template_id="vite")
        b = await store.create_project("Todo App", template_id="vite")
        assert a.slug == "todo-app"
        assert b.slug != a.slug
        assert b.slug.startswith("todo-app-")
        assert (await store.get_project_by_slug(b.slug)) == b
        renamed = await store.rename_project(a.project_id, "Shop")
        assert renamed is not None
        assert (renamed.slug, renamed.name) == ("shop", "Shop")
        assert (await store.list_projects())[0].project_id == a.project_id
        await store.set_sandbox_id(a.project_id, "amicable-abc")
        assert (await store.get_project(a.project_id)).sandbox_id == "amicable-abc"  # type: ignore[union-attr]
        assert await store.soft_delete_project(a.project_id) is not None
        assert await store.get_project(a.project_id) is None
        assert await store.soft_delete_project(a.project_id) is None
        assert [p.project_id for p in await store.list_projects()] == [b.project_id]
        again = await store.create_project("Shop", template_id="vite")
        assert again.slug == "shop", "a deleted project's slug is free again"
        with pytest.raises(ValueError, match="already exists"):
            await store.create_project("x", template_id="vite", project_id=b.project_id)


async def test_chat_conversation_state_events_persist(open_store: OpenStore) -> None:
    async with open_store() as store:
        p = await store.create_project("App", template_id="vite", project_id="sess-1")
        for i in range(25):
            await store.append_chat(p.project_id, "user" if i % 2 == 0 else "assistant", f"m{i}")
        await store.save_conversation(p.project_id, [{"role": "user", "content": "hi"}])
        await store.save_state(p.project_id, "hitl_pending", {"interrupt_id": "i1"})
        await store.append_turn_event(p.project_id, "turn_started", {"n": 1})
    async with open_store() as store:
        history = await store.chat_history("sess-1")
        assert len(history) == 20
        assert history[0].text == "m5"
        assert history[-1].text == "m24"
        assert await store.load_conversation("sess-1") == [{"role": "user", "content": "hi"}]
        assert await store.load_state("sess-1", "hitl_pending") == {"interrupt_id": "i1"}
        await store.save_state("sess-1", "hitl_pending", None)
        assert await store.load_state("sess-1", "hitl_pending") is None
        assert await store.turn_events("sess-1") == [("turn_started", {"n": 1})]
        await store.purge_project("sess-1")
        assert await store.chat_history("sess-1") == []


async def test_a_store_from_an_older_build_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.executescript(f"BEGIN; {MIGRATIONS[0]}; INSERT INTO schema_version VALUES (1); COMMIT;")
    conn.execute(
        "INSERT INTO projects VALUES ('p-1', 'Old', 'old', 'vite', NULL, NULL, 1.0, 1.0, NULL)"
    )
    conn.close()
    async with open_sqlite_store(path) as store:
        assert (await store.get_project("p-1")).name == "Old"  # type: ignore[union-attr]
    conn = sqlite3.connect(path)
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    indexes = {r[1] for r in conn.execute("PRAGMA index_list('turn_events')")}
    assert "turn_events_project" in indexes
    # A project from before logins has no owner; the first user to log in inherits it.
    assert conn.execute("SELECT owner_sub FROM projects").fetchall() == [(None,)]
    conn.close()


async def test_identity_rows_on_both_stores(open_store: OpenStore) -> None:
    from amicable_agent.auth.identity import User

    alice = User(sub="alice-sub", email="alice@example.com", name="Alice")
    bob = User(sub="bob-sub", email="bob@example.com", name="Bob")
    async with open_store() as store:
        legacy = await store.create_project("Before logins", template_id="vite")
        await store.record_login(alice, admin_emails=())
        assert await store.project_role(legacy.project_id, "alice-sub") == "owner"  # first user
        mine = await store.create_project("Mine", template_id="vite", owner_sub="alice-sub")
        await store.add_invite(mine.project_id, "bob@example.com", "viewer")
        await store.record_login(bob, admin_emails=())  # the invite becomes a membership
        assert await store.project_role(mine.project_id, "bob-sub") == "viewer"
        assert await store.project_role(legacy.project_id, "bob-sub") is None
        members, invites = await store.members(mine.project_id)
        assert [(m.user.sub, m.role) for m in members] == [
            ("alice-sub", "owner"),
            ("bob-sub", "viewer"),
        ]
        assert invites == []
        assert [p.name for p, _ in await store.projects_of("bob-sub")] == ["Mine"]
        assert await store.count_owned_projects("alice-sub") == 2
        session = await store.create_login_session("alice-sub", 3600)
        assert await store.session_user(session) == alice
        await store.revoke_login_session(session)
        assert await store.session_user(session) is None
        expired = await store.create_login_session("alice-sub", -1)
        assert await store.session_user(expired) is None
        record, token = await store.create_api_token("alice-sub", "ci")
        assert await store.token_user(token) == alice
        assert await store.token_user(token + "x") is None
        assert not await store.delete_api_token("bob-sub", record.token_id)  # not Bob's
        assert await store.delete_api_token("alice-sub", record.token_id)
        assert await store.token_user(token) is None
        assert await store.remove_member(mine.project_id, "bob-sub")
        assert await store.project_role(mine.project_id, "bob-sub") is None
        await store.soft_delete_project(mine.project_id)
        assert await store.project_role(mine.project_id, "alice-sub") is None
