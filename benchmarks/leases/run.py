"""Lease benchmarks: what one turn at a time across replicas costs, as ratios against a
baseline measured in the same run.

* **fenced writes**: the store writes of a turn (conversation and state saves, turn events,
  batches of relayed broadcasts) through the session's fenced view of the store (every call
  first reads the lease row, locked, in the same transaction) against the same writes
  through the store itself. On SQLite and on a real PostgreSQL (``amicable_testing``'s
  throwaway server). Base and head alternate turn by turn.
* **relay latency**: two "replicas" (two PostgreSQL stores, each with its own ``LISTEN``
  connection, as two agent processes have) in one process. The holder's broadcast goes to an
  editor socket of its own (a real loopback WebSocket: the baseline) and through the relay
  (:class:`~amicable_agent.sessions.relay.TurnRelay`: ``turn_events`` + ``NOTIFY`` -> the
  other replica reads the events -> its editor socket). Measured per event, one at a time,
  and for a burst of a turn's streamed partials (time until the last one arrives).

No assertions on time: it prints medians and ratios.

Run: ``.venv/bin/python benchmarks/leases/run.py [--turns N] [--events N] [--burst N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from amicable_agent.sessions.lease import LeaseSettings, Notifier, TurnLease
from amicable_agent.sessions.relay import TurnRelay
from amicable_agent.store.postgres import open_postgres_store
from amicable_agent.store.sqlite import open_sqlite_store
from amicable_protocol.messages import (
    MessageType,
    ServerMessage,
    TextData,
    decode_server_message,
    encode_server_message,
)
from amicable_testing.postgres import PostgresServer
from trio_websocket import WebSocketRequest, open_websocket_url, serve_websocket

#: The lease time: long, so no poll ever stands in for a notification.
TTL_S = 600.0


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:8.2f} ms"


def ratio(head: list[float], base: list[float]) -> float:
    return statistics.median(head) / statistics.median(base)


# --- fenced writes --------------------------------------------------------------------------


async def one_turn(store: Any, pid: str, n: int) -> float:
    """The writes of one turn (roughly what a short turn with two tool calls makes)."""
    conversation = [{"role": "user", "content": f"request {n}"}]
    start = time.perf_counter()
    await store.append_turn_event(pid, "turn_started", {"n": n})
    for step in range(3):
        conversation.append({"role": "assistant", "content": f"step {step} " * 40})
        await store.append_wire_events(
            pid, [{"t": 1, "f": f'{{"n": {n}, "i": {i}}}'} for i in range(5)]
        )
        await store.save_conversation(pid, conversation)
        await store.save_state(pid, "hitl", {"pending": None, "step": step})
    await store.append_turn_event(pid, "turn_completed", {"n": n})
    return time.perf_counter() - start


async def fenced_writes(name: str, store: Any, turns: int) -> None:
    pid = str((await store.create_project("Bench", template_id="vite")).project_id)
    notifier = Notifier()
    lease = TurnLease(pid, store, LeaseSettings(replica_id="bench", ttl_s=TTL_S), notifier)
    await lease.acquire()
    fenced = store.fenced(pid, lease.fence)
    plain: list[float] = []
    checked: list[float] = []
    for n in range(3):  # warm both paths
        await one_turn(store, pid, n)
        await one_turn(fenced, pid, n)
    for n in range(turns):
        first, second = (store, fenced) if n % 2 == 0 else (fenced, store)
        for which in (first, second):
            took = await one_turn(which, pid, n)
            (checked if which is fenced else plain).append(took)
        await store.prune_wire_events(pid, -1.0)
    print(f"[{name}] a turn's writes, unfenced  median {ms(plain)}")
    print(f"[{name}] a turn's writes, fenced    median {ms(checked)}")
    print(f"[{name}] ratio fenced/unfenced {ratio(checked, plain):.2f}x  ({turns} turns each)")


# --- relay latency --------------------------------------------------------------------------


@asynccontextmanager
async def editor_socket(
    nursery: trio.Nursery, on_frame: Callable[[str], None]
) -> AsyncIterator[Callable[[str], Awaitable[None]]]:
    """A real loopback WebSocket: yields ``send(frame)``; the client calls ``on_frame``."""
    send_ch, recv_ch = trio.open_memory_channel[str](4096)

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        async for frame in recv_ch:
            await ws.send_message(frame)

    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    port = server.port
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as client:

        async def reader() -> None:
            while True:
                on_frame(str(await client.get_message()))

        nursery.start_soon(reader)
        yield send_ch.send


def partial(pid: str, n: int) -> ServerMessage:
    return ServerMessage(
        type=MessageType.AGENT_PARTIAL, data=TextData(text=f"#{n} " + "x" * 80), session_id=pid
    )


def make_relay(
    pid: str, store: Any, name: str, deliver: Callable[[ServerMessage], None]
) -> tuple[TurnRelay, TurnLease, Notifier]:
    """One replica's session side: its lease and its relay."""
    notifier = Notifier()
    lease = TurnLease(pid, store, LeaseSettings(replica_id=name, ttl_s=TTL_S), notifier)
    relay = TurnRelay(pid, store, store.fenced(pid, lease.fence), lease, notifier, deliver,
                      lambda *_: None)  # fmt: skip
    return relay, lease, notifier


class Editors:
    """When each partial reached the holder's own editor and the other replica's."""

    def __init__(self) -> None:
        self.arrived: dict[tuple[str, int], float] = {}

    def stamp(self, where: str) -> Callable[[str], None]:
        def on_frame(frame: str) -> None:
            text = str(getattr(decode_server_message(frame).data, "text", ""))
            self.arrived[(where, int(text[1:].split(" ", 1)[0]))] = time.perf_counter()

        return on_frame

    async def arrival(self, where: str, n: int) -> float:
        with trio.fail_after(30):
            while (where, n) not in self.arrived:  # noqa: ASYNC110 - the reader task sets it
                await trio.sleep(0.0005)
        return self.arrived[(where, n)]


async def measure(
    editors: Editors, broadcast: Callable[[int], Awaitable[float]], events: int, burst: int
) -> None:
    local: list[float] = []
    relayed: list[float] = []
    for n in range(events + 5):
        start = await broadcast(n)
        done_local = await editors.arrival("local", n) - start
        done_relayed = await editors.arrival("relayed", n) - start
        if n >= 5:  # warm-up
            local.append(done_local)
            relayed.append(done_relayed)
        await trio.sleep(0.01)
    first, last = events + 5, events + 5 + burst - 1
    start = time.perf_counter()
    for n in range(first, last + 1):
        await broadcast(n)
        await trio.lowlevel.checkpoint()  # a stream yields between partials
    burst_local = await editors.arrival("local", last) - start
    burst_relayed = await editors.arrival("relayed", last) - start
    print(f"one event, holder's own editor (local broadcast)  median {ms(local)}")
    print(f"one event, editor on another replica (relayed)    median {ms(relayed)}")
    print(f"ratio relayed/local per event {ratio(relayed, local):.1f}x  ({events} events)")
    print(f"burst of {burst} partials, last one: local {burst_local * 1000:.1f} ms, "
          f"relayed {burst_relayed * 1000:.1f} ms, ratio {burst_relayed / burst_local:.1f}x")  # fmt: skip


async def relay_latency(url: str, events: int, burst: int) -> None:
    editors = Editors()
    async with (
        open_postgres_store(url) as holder_store,
        open_postgres_store(url) as other_store,
        trio.open_nursery() as nursery,
        editor_socket(nursery, editors.stamp("local")) as local_send,
        editor_socket(nursery, editors.stamp("relayed")) as remote_send,
    ):
        pid = str((await holder_store.create_project("Bench", template_id="vite")).project_id)
        remote_in, remote_out = trio.open_memory_channel[ServerMessage](4096)

        async def forward() -> None:  # the other replica's session -> its editor
            async for msg in remote_out:
                await remote_send(encode_server_message(msg))

        nursery.start_soon(forward)
        holder, holder_lease, _ = make_relay(pid, holder_store, "holder", lambda m: None)
        other, _, other_notifier = make_relay(pid, other_store, "other", remote_in.send_nowait)
        await holder_lease.acquire()
        await nursery.start(other_store.listen, other_notifier.notify)
        nursery.start_soon(holder.publish)
        nursery.start_soon(other.follow)
        with trio.fail_after(30):
            while ("events", pid) not in other_notifier._events:  # noqa: ASYNC110
                await trio.sleep(0.01)

        async def broadcast(n: int) -> float:
            msg = partial(pid, n)
            start = time.perf_counter()
            await local_send(encode_server_message(msg))  # the holder's own editor
            holder.offer(msg)  # the relay
            return start

        await measure(editors, broadcast, events, burst)
        nursery.cancel_scope.cancel()


async def main(turns: int, events: int, burst: int, only: str | None) -> None:
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    with (
        tempfile.TemporaryDirectory(prefix="amicable-lease-bench-") as tmp,
        PostgresServer() as server,
    ):
        if only in (None, "writes"):
            print("== a turn's store writes: fenced vs unfenced")
            async with open_sqlite_store(Path(tmp) / "store.db") as sqlite:
                await fenced_writes("sqlite", sqlite, turns)
            async with open_postgres_store(server.create_database()) as pg:
                await fenced_writes("postgres", pg, turns)
        if only in (None, "relay"):
            print("== relay: an editor on another replica vs one on the holder")
            await relay_latency(server.create_database(), events, burst)
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40, help="turns per variant (writes)")
    parser.add_argument("--events", type=int, default=100, help="events timed one by one")
    parser.add_argument("--burst", type=int, default=200, help="partials in the burst")
    parser.add_argument("--only", choices=("writes", "relay"), help="run one benchmark")
    args = parser.parse_args()
    trio.run(main, args.turns, args.events, args.burst, args.only)
