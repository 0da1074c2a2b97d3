"""The relay between replicas survives a dropped ``LISTEN`` connection, on a real PostgreSQL:
two stores (two replicas), the holder's :class:`TurnRelay` publishing, the other's following
through its own listener, whose backend is terminated mid-way. Nothing is polled here (the
lease time is ten minutes): only notifications, and the listener's wake-up after it
reconnects, can bring events over in time."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import trio
from amicable_agent.sessions.lease import LeaseSettings, Notifier, TurnLease
from amicable_agent.sessions.relay import TurnRelay
from amicable_agent.store.postgres import LISTEN_APPLICATION, open_postgres_store
from amicable_protocol.messages import MessageType, ServerMessage, TextData
from amicable_testing.postgres import PostgresServer

#: Lease time: its polls (a third of it) never fire during the test.
TTL_S = 600.0


def text(value: str, pid: str) -> ServerMessage:
    return ServerMessage(type=MessageType.AGENT_PARTIAL, data=TextData(text=value), session_id=pid)


def listeners(url: str) -> list[int]:
    """The backends of this database's listeners."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND pid <> pg_backend_pid()",
            (LISTEN_APPLICATION,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def terminate(url: str, pids: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def until(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    with trio.fail_after(timeout_s):
        while not check():
            await trio.sleep(0.02)
    assert check(), what


def relay(pid: str, store: Any, name: str, got: list[str]) -> tuple[TurnRelay, TurnLease]:
    notifier = Notifier()
    lease = TurnLease(pid, store, LeaseSettings(replica_id=name, ttl_s=TTL_S), notifier)
    return TurnRelay(
        pid, store, store.fenced(pid, lease.fence), lease, notifier,
        deliver=lambda m: got.append(str(getattr(m.data, "text", ""))),
        submit=lambda *_: None,
    ), lease  # fmt: skip


async def test_a_dropped_listener_reconnects_and_the_events_of_the_gap_still_arrive(
    postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="amicable_agent.store.postgres")
    url = postgres_server.create_database()
    async with open_postgres_store(url) as one, open_postgres_store(url) as two:
        two.listen_retry_s = 3.0  # a gap wide enough to publish into
        pid = str((await one.create_project("Relayed", template_id="vite")).project_id)
        holder_saw: list[str] = []
        got: list[str] = []
        holder, holder_lease = relay(pid, one, "one", holder_saw)
        follower, _ = relay(pid, two, "two", got)
        await holder_lease.acquire()
        async with trio.open_nursery() as nursery:
            await nursery.start(two.listen, follower._notifier.notify)
            nursery.start_soon(holder.publish)
            nursery.start_soon(follower.follow)
            await until(lambda: ("events", pid) in follower._notifier._events, "following")
            holder.offer(text("before", pid))
            await until(lambda: got == ["before"], f"relayed before the drop: {got}")

            (backend,) = listeners(url)
            terminate(url, [backend])
            await until(lambda: listeners(url) == [], "the listener's backend is gone")
            start = await one.wire_events_after(pid, -1)
            holder.offer(text("gap 1", pid))
            holder.offer(text("gap 2", pid))
            written = start
            while len(written) < 2:
                written = await one.wire_events_after(pid, start[0][0])
                await trio.sleep(0.02)
            # Published while nobody listened: their NOTIFY reached no replica.
            assert listeners(url) == [], "the listener came back before the gap was published"
            assert got == ["before"]
            await until(lambda: got == ["before", "gap 1", "gap 2"], f"caught up: {got}")
            (again,) = listeners(url)
            assert again != backend

            holder.offer(text("after", pid))
            await until(lambda: got[-1:] == ["after"], f"relayed after reconnecting: {got}")
            nursery.cancel_scope.cancel()
    assert got == ["before", "gap 1", "gap 2", "after"]
    assert holder_saw == []  # the holder never hears its own events back
    logged = caplog.text
    assert "the LISTEN connection to PostgreSQL failed" in logged
    assert "listening to PostgreSQL again after" in logged


async def test_a_reconnect_wakes_every_waiter() -> None:
    notifier = Notifier()
    woken: list[str] = []

    async def wait(what: str, project: str) -> None:
        await notifier.wait(what, project, TTL_S)
        woken.append(f"{what}:{project}")

    async with trio.open_nursery() as nursery:
        for what, project in (("events", "a"), ("lease", "b"), ("request", "a")):
            nursery.start_soon(wait, what, project)
        await until(lambda: len(notifier._events) == 3, "three waiters")
        notifier.notify("events:other")  # another project's: wakes nobody
        await trio.sleep(0.05)
        assert woken == []
        notifier.notify("*:")
    assert sorted(woken) == ["events:a", "lease:b", "request:a"]
