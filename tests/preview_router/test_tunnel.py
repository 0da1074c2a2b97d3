"""The WebSocket splice: frames relayed inside the poller, back-pressure, big frames, ends.

Real TCP loopback pairs on both sides of two :class:`Transport` objects registered with a
real :class:`Poller`, spliced as the proxy does (the caller closes both when it returns).
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from amicable_preview_router import tunnel
from amicable_preview_router.transport import Poller, Transport


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    return near, far


class Tunnel:
    """``client`` <-> [router transports, spliced] <-> ``upstream``; peers are Trio sockets."""

    def __init__(self, poller: Poller, *, small_buffers: bool = False) -> None:
        client, router_client = _tcp_pair()
        router_upstream, upstream = _tcp_pair()
        if small_buffers:
            # Fill quickly: the router's send towards the upstream blocks after a few KB.
            router_upstream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            router_client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.client_side = Transport(router_client)
        self.upstream_side = Transport(router_upstream)
        poller.register(self.client_side)
        poller.register(self.upstream_side)
        self.client_raw = client
        self.client = trio.socket.from_stdlib_socket(client)
        self.upstream = trio.socket.from_stdlib_socket(upstream)
        self.done = trio.Event()

    async def run(self, idle_timeout_s: float = 3600.0) -> None:
        try:
            await tunnel.splice(self.client_side, self.upstream_side, idle_timeout_s=idle_timeout_s)
        finally:
            self.client_side.close()
            self.upstream_side.close()
            self.done.set()

    def close_peers(self) -> None:
        self.client.close()
        self.upstream.close()


@pytest.fixture
async def poller(nursery: trio.Nursery) -> Poller:
    poller = Poller()
    await nursery.start(poller.run)
    return poller


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts what the in-poller relay step did: handled in place, or left a blocked send."""
    counts = {"handled": 0, "blocked": 0, "woke": 0}
    original = tunnel._Relay.on_readable

    def counting(self: tunnel._Relay) -> bool:
        handled = original(self)
        if handled:
            counts["handled"] += 1
        else:
            counts["woke"] += 1
        if self.pending is not None:
            counts["blocked"] += 1
        return handled

    monkeypatch.setattr(tunnel._Relay, "on_readable", counting)
    return counts


async def _recv_exactly(sock: trio.socket.SocketType, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        data = await sock.recv(65536)
        assert data, f"end of stream after {len(got)} of {n} bytes"
        got += data
    return bytes(got)


async def test_ping_pong_frames_are_relayed_in_the_poller_in_order(
    poller: Poller, spy: dict[str, int]
) -> None:
    t = Tunnel(poller)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(t.run)
        with trio.fail_after(10):
            for i in range(100):
                ping = f"ping {i}".encode()
                await t.client.send(ping)
                assert await _recv_exactly(t.upstream, len(ping)) == ping
                pong = f"pong {i}!".encode()
                await t.upstream.send(pong)
                assert await _recv_exactly(t.client, len(pong)) == pong
        # The pumps stay parked: (nearly) every frame was relayed by the poller itself.
        assert spy["handled"] >= 100
        t.close_peers()
    assert t.done.is_set()


async def test_blocked_peer_gets_back_pressure_and_loses_nothing(
    poller: Poller, spy: dict[str, int]
) -> None:
    t = Tunnel(poller, small_buffers=True)
    raw = t.client_raw  # non-blocking (Trio made it so): sends that would block raise
    async with trio.open_nursery() as nursery:
        nursery.start_soon(t.run)
        await trio.testing.wait_all_tasks_blocked()
        # The upstream reads nothing: write small frames until the client cannot write
        # more with everything quiet, i.e. the router stopped reading because its own send
        # would block. (A router that buffered without bound would never get here.)
        written = bytearray()
        counter = 0
        with trio.fail_after(20):
            while True:
                frame = b"%08d" % counter + b"." * 1016
                counter += 1
                try:
                    sent = raw.send(frame)
                except BlockingIOError:
                    await trio.testing.wait_all_tasks_blocked(0.05)
                    try:
                        sent = raw.send(frame)
                    except BlockingIOError:
                        break
                written += frame[:sent]
        assert spy["blocked"] >= 1, "the in-poller send never blocked"
        # Now the upstream drains everything: every byte arrives, in order.
        with trio.fail_after(20):
            got = await _recv_exactly(t.upstream, len(written))
        assert got == bytes(written)
        # And the tunnel still works afterwards, both ways.
        with trio.fail_after(10):
            await t.client.send(b"after")
            assert await _recv_exactly(t.upstream, 5) == b"after"
            await t.upstream.send(b"back")
            assert await _recv_exactly(t.client, 4) == b"back"
        t.close_peers()


async def test_large_frames_both_ways_at_once(poller: Poller) -> None:
    t = Tunnel(poller)
    up = bytes(range(256)) * 8192  # 2 MiB
    down = bytes(reversed(range(256))) * 12288  # 3 MiB
    results: dict[str, bytes] = {}

    async def send(sock: trio.socket.SocketType, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[await sock.send(view[:100_000]) :]

    async def receive(name: str, sock: trio.socket.SocketType, n: int) -> None:
        results[name] = await _recv_exactly(sock, n)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(t.run)
        with trio.fail_after(30):
            async with trio.open_nursery() as io:
                io.start_soon(send, t.client, up)
                io.start_soon(send, t.upstream, down)
                io.start_soon(receive, "at upstream", t.upstream, len(up))
                io.start_soon(receive, "at client", t.client, len(down))
        assert results["at upstream"] == up
        assert results["at client"] == down
        t.close_peers()


@pytest.mark.parametrize("closing", ["client", "upstream"])
async def test_half_close_delivers_last_bytes_then_ends_both_sides(
    poller: Poller, closing: str
) -> None:
    t = Tunnel(poller)
    closer, other = (t.client, t.upstream) if closing == "client" else (t.upstream, t.client)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(t.run)
        with trio.fail_after(10):
            await closer.send(b"hello")
            assert await _recv_exactly(other, 5) == b"hello"
            await closer.send(b"last words")
            closer.shutdown(socket.SHUT_WR)
            assert await _recv_exactly(other, 10) == b"last words"
            assert await other.recv(100) == b""  # the router closed the other side
            await t.done.wait()
            assert await closer.recv(100) == b""  # and ours
        t.close_peers()


async def test_frames_relayed_in_the_poller_keep_the_tunnel_from_idling_out(
    poller: Poller, autojump_clock: trio.testing.MockClock
) -> None:
    t = Tunnel(poller)
    idle = 10.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(t.run, idle)
        for _ in range(5):  # 30 s of traffic, a frame every 6 s
            await trio.sleep(6)
            await t.client.send(b"tick")
            assert await _recv_exactly(t.upstream, 4) == b"tick"
        last = trio.current_time()
        assert not t.done.is_set()
        assert await t.upstream.recv(100) == b""  # silence: the idle timeout closes it
        # One-second granularity: closed between idle-1 and idle after the last frame.
        assert idle - 1.0 <= trio.current_time() - last <= idle + 0.5
        t.close_peers()
