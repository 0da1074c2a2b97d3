"""Turn leases in the store (migration 6), on SQLite and on a real PostgreSQL: one holder at a
time, tokens that only grow, fenced writes refused once the lease moved on, the request queue
and the relayed events (with ``NOTIFY`` on PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.errors import LeaseLost
from amicable_agent.sessions.lease import Fence, LeaseSettings, Notifier, TurnLease
from amicable_agent.store.postgres import open_postgres_store
from amicable_agent.store.sqlite import open_sqlite_store
from amicable_testing.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        async with open_sqlite_store(tmp_path / "leases.db") as sqlite:
            yield sqlite
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        async with open_postgres_store(server.create_database()) as pg:
            yield pg


async def project(store: Any) -> str:
    return str((await store.create_project("Leased", template_id="vite")).project_id)


async def test_one_holder_at_a_time_and_tokens_only_grow(store: Any) -> None:
    pid = await project(store)
    first = await store.acquire_lease(pid, "a", 60.0)
    assert first == 1
    assert await store.acquire_lease(pid, "b", 60.0) is None  # a holds it
    assert await store.renew_lease(pid, first, 60.0)
    assert await store.release_lease(pid, first)
    second = await store.acquire_lease(pid, "b", 60.0)
    assert second == 2
    holder, token, _ = await store.lease_of(pid)
    assert (holder, token) == ("b", 2)
    assert not await store.renew_lease(pid, first, 60.0)  # a's token is stale
    assert not await store.release_lease(pid, first)  # and cannot give b's lease away
    assert (await store.lease_of(pid))[0] == "b"


async def test_an_expired_lease_is_taken_over_and_the_old_holders_writes_are_refused(
    store: Any,
) -> None:
    pid = await project(store)
    old_fence, new_fence = Fence(), Fence()
    old_view = store.fenced(pid, old_fence)
    new_view = store.fenced(pid, new_fence)
    old_fence.token = await store.acquire_lease(pid, "old", 0.05)
    await old_view.save_conversation(pid, [{"role": "user", "content": "hi"}])
    await trio.sleep(0.1)  # the old holder stopped renewing (paused)
    new_fence.token = await store.acquire_lease(pid, "new", 60.0)
    assert new_fence.token == 2
    await new_view.save_conversation(pid, [{"role": "user", "content": "from new"}])
    refused = store.refused_writes
    for write in (
        old_view.save_conversation(pid, [{"role": "user", "content": "stale"}]),
        old_view.append_chat(pid, "assistant", "stale"),
        old_view.save_state(pid, "k", "stale"),
        old_view.append_turn_event(pid, "turn_finished", {}),
        old_view.append_wire_events(pid, [{"t": 1, "f": "{}"}]),
        old_view.take_turn_requests(pid),
    ):
        with pytest.raises(LeaseLost, match="moved on"):
            await write
    assert store.refused_writes == refused + 6
    assert await store.load_conversation(pid) == [{"role": "user", "content": "from new"}]
    assert await store.load_state(pid, "k") is None
    assert await store.chat_history(pid) == []
    # The renewal of the resumed old holder fails too: it learns it lost the lease.
    assert not await store.renew_lease(pid, old_fence.token, 60.0)


async def test_requests_are_taken_once_in_order_by_the_holder(store: Any) -> None:
    pid = await project(store)
    await store.queue_turn_request(pid, "user", {"text": "one"}, "sub-1")
    await store.queue_turn_request(pid, "cancel", {}, None)
    await store.queue_turn_request(pid, "user", {"text": "two"}, "sub-2")
    fence = Fence()
    holder = store.fenced(pid, fence)
    fence.token = await store.acquire_lease(pid, "h", 60.0)
    taken = await holder.take_turn_requests(pid)
    assert taken == [
        ("user", {"text": "one"}, "sub-1"),
        ("cancel", {}, None),
        ("user", {"text": "two"}, "sub-2"),
    ]
    assert await holder.take_turn_requests(pid) == []


async def test_relayed_events_are_read_after_an_id_in_order(store: Any) -> None:
    pid = await project(store)
    ((start, _),) = await store.wire_events_after(pid, -1)
    await store.append_turn_event(pid, "turn_started", {})  # not a relayed event
    await store.append_wire_events(pid, [{"t": 1, "f": "a"}, {"t": 1, "f": "b"}])
    await store.append_wire_events(pid, [{"t": 1, "f": "c"}])
    events = await store.wire_events_after(pid, start)
    assert [p["f"] for _, p in events] == ["a", "b", "c"]
    ids = [seq for seq, _ in events]
    assert ids == sorted(ids)
    assert [p["f"] for _, p in await store.wire_events_after(pid, ids[0])] == ["b", "c"]
    # Relayed events are not part of the audit trail, and old ones are pruned.
    assert await store.turn_events(pid) == [("turn_started", {})]
    assert await store.prune_wire_events(pid, 3600.0) == 0
    assert await store.prune_wire_events(pid, -1.0) == 3
    assert await store.wire_events_after(pid, start) == []
    assert await store.turn_events(pid) == [("turn_started", {})]


async def test_postgres_notifies_listeners_of_events_requests_and_releases(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database()
    async with open_postgres_store(url) as listener, open_postgres_store(url) as writer:
        pid = await project(writer)
        heard: list[str] = []
        got = trio.Event()

        def on_notify(payload: str) -> None:
            heard.append(payload)
            if len(heard) >= 3:
                got.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(listener.listen, on_notify)
            token = await writer.acquire_lease(pid, "w", 60.0)
            await writer.append_wire_events(pid, [{"t": token, "f": "x"}])
            await writer.queue_turn_request(pid, "user", {"text": "hi"}, None)
            await writer.release_lease(pid, token)
            with trio.fail_after(20):
                await got.wait()
            nursery.cancel_scope.cancel()
        assert heard == [f"events:{pid}", f"request:{pid}", f"lease:{pid}"]


async def test_a_waiting_session_takes_the_lease_when_the_holder_releases_it(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database()
    async with open_postgres_store(url) as one, open_postgres_store(url) as two:
        pid = await project(one)
        notifier = Notifier()
        # A long lease: only the release notification can wake the waiter in time.
        settings = LeaseSettings(replica_id="two", ttl_s=600.0)
        waiter = TurnLease(pid, two, settings, notifier)
        token = await one.acquire_lease(pid, "one", 600.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(two.listen, notifier.notify)
            acquired: list[int] = []

            async def wait() -> None:
                acquired.append(await waiter.acquire())

            nursery.start_soon(wait)
            await trio.sleep(0.3)
            assert acquired == []
            await one.release_lease(pid, token)
            with trio.fail_after(20):
                while not acquired:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
        assert acquired == [token + 1]
        assert waiter.holding


async def test_snapshot_writes_of_a_stale_holder_are_refused(store: Any) -> None:
    pid = await project(store)
    fence = Fence()
    store.register_fence(pid, fence)
    fence.token = await store.acquire_lease(pid, "old", 0.05)
    snap = {"kind": "full", "head_sha": "a" * 40, "base_sha": None, "size_bytes": 3,
            "sha256": "0" * 64, "blob": "db:one", "expect_head": None}  # fmt: skip
    await store.put_snapshot_part(pid, "db:one", 0, b"abc")
    await store.append_snapshot(pid, **snap)
    await trio.sleep(0.1)
    assert await store.acquire_lease(pid, "new", 60.0) == 2  # the old holder was paused
    with pytest.raises(LeaseLost):
        await store.put_snapshot_part(pid, "db:two", 0, b"def")
    with pytest.raises(LeaseLost):
        await store.append_snapshot(
            pid, **{**snap, "kind": "incremental", "head_sha": "b" * 40, "base_sha": "a" * 40,
                    "blob": "db:two", "expect_head": "a" * 40},
        )  # fmt: skip
    assert [r.head_sha for r in await store.snapshot_chain(pid)] == ["a" * 40]
    assert await store.snapshot_part("db:two", 0) is None
    store.unregister_fence(pid, fence)
    await store.put_snapshot_part(pid, "db:two", 0, b"def")  # no session here holds it now


async def test_a_restarted_single_process_takes_its_predecessors_lease_at_once(
    tmp_path: Path,
) -> None:
    """SQLite is one process's store: a lease left by a process that died (no release)
    belongs to nobody alive, so the restarted agent does not wait for it to expire."""
    async with open_sqlite_store(tmp_path / "one.db") as before:
        pid = await project(before)
        assert await before.acquire_lease(pid, "agent-before", 600.0) == 1
    async with open_sqlite_store(tmp_path / "one.db") as after:
        lease = TurnLease(pid, after, LeaseSettings(replica_id="agent-after"), Notifier())
        with trio.fail_after(10):
            assert await lease.acquire() == 2
        assert (await after.lease_of(pid))[0] == "agent-after"
