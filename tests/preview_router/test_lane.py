"""Keep-alive requests served inside the poller (``lane.py``) and every hand-over from it to
the connection's task, against a scripted raw upstream and real loopback sockets."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from amicable_preview_router import proxy
from amicable_preview_router.lane import NONE, SENDING, SENT, STAGED, Lane
from amicable_preview_router.metrics import Metrics
from amicable_preview_router.server import serve
from amicable_protocol.preview import PreviewResolution
from amicable_testing.fake_resolver import FakeResolver

from .conftest import BASE, LoopbackServer, RouterUnderTest, make_config

RAW = f"raw.{BASE}"


@attrs.define
class RawUpstream(LoopbackServer):
    """An HTTP/1.1 upstream written out byte by byte, so tests control how answers arrive.

    Routes: ``/small`` (Content-Length, one send), ``/upload`` (reads the body),
    ``/chunked``, ``/big?n=N`` and ``/size?n=N`` (N body bytes), ``/split`` (the head in two
    sends, the second after ``gate`` gets a message), ``/hang`` (answers after ``gate``),
    ``/trickle`` (head and part of the body, the rest a little later), ``/close`` (answers
    with ``Connection: close`` and closes).
    """

    targets: list[bytes] = attrs.Factory(list)
    gate_send: trio.MemorySendChannel[None] = attrs.field(init=False)
    gate_recv: trio.MemoryReceiveChannel[None] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.gate_send, self.gate_recv = trio.open_memory_channel[None](100)

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            body, buf = buf[:length], buf[length:]
            method, target, _ = head.split(b"\r\n")[0].split(b" ")
            self.targets.append(target)
            if not await self._answer(stream, method, target, body):
                return

    async def _answer(
        self, stream: trio.SocketStream, method: bytes, target: bytes, body: bytes
    ) -> bool:
        path, _, query = target.partition(b"?")
        if path in (b"/big", b"/size"):
            n = int(query.split(b"=")[1])
            payload = bytes(i % 251 for i in range(n))
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + payload)
        elif path == b"/upload":
            reply = b"got %d" % len(body)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(reply))
            await stream.send_all(reply)
        elif path == b"/chunked":
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
        elif path == b"/split":
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Le")
            await self.gate_recv.receive()
            await stream.send_all(b"ngth: 5\r\nX-Split: yes\r\n\r\nsplit")
        elif path == b"/hang":
            await self.gate_recv.receive()
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
        elif path == b"/trickle":
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ntric")
            await trio.sleep(0.01)  # the rest may or may not come in a second read
            await stream.send_all(b"kle...")
        elif path == b"/close":
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nclosed"
            )
            return False
        else:
            reply = b"ok " + target
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nKeep-Alive: timeout=5\r\n\r\n"
            await stream.send_all(head % len(reply) + (b"" if method == b"HEAD" else reply))
        return True


@attrs.define
class LaneLog:
    """What the lanes did: requests answered in the poller, hand-overs by state."""

    served: int = 0
    upstream_calls: int = 0
    in_flight: int = 0
    handed: list[int] = attrs.Factory(list)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Poll ``condition`` (it turns true through loopback I/O) for up to 10 s."""
        with trio.fail_after(10):
            while not condition():
                await trio.sleep(0.001)


@pytest.fixture
def lane_log(monkeypatch: pytest.MonkeyPatch) -> LaneLog:
    log = LaneLog()
    upstream_hook = Lane.on_upstream_readable
    client_hook = Lane.on_client_readable
    hand_over = Lane._hand_over

    def on_upstream(self: Lane) -> bool:
        log.upstream_calls += 1
        before = self.conn
        result = upstream_hook(self)
        if before is not None and self.conn is None:
            log.served += 1
        return result

    def on_client(self: Lane) -> bool:
        before = self.conn
        result = client_hook(self)
        if before is None and self.conn is not None and self.state == NONE:
            log.in_flight += 1
        return result

    def record(self: Lane, state: int) -> bool:
        log.handed.append(state)
        return hand_over(self, state)

    monkeypatch.setattr(Lane, "on_upstream_readable", on_upstream)
    monkeypatch.setattr(Lane, "on_client_readable", on_client)
    monkeypatch.setattr(Lane, "_hand_over", record)
    return log


@pytest.fixture
async def raw(nursery: trio.Nursery, resolver: FakeResolver) -> RawUpstream:
    server = RawUpstream()
    await nursery.start(server.serve)
    resolver.answers[RAW] = PreviewResolution("raw", f"http://127.0.0.1:{server.port}")
    return server


class Client:
    """A keep-alive client that reads Content-Length and chunked responses exactly."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def send(self, method: str, target: str, host: str = RAW, body: bytes = b"") -> None:
        head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        await self.stream.send_all(head.encode() + b"\r\n" + body)

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("router closed the connection")
        self.buf += data

    async def response(
        self, *, head_only: bool = False, within: float = 10
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        with trio.fail_after(within):
            while b"\r\n\r\n" not in self.buf:
                await self._more()
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ")[1])
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if head_only:
                return status, headers, b""
            if headers.get(b"transfer-encoding") == b"chunked":
                while not self.buf.endswith(b"0\r\n\r\n"):
                    await self._more()
                body, self.buf = self.buf, b""
                return status, headers, body
            length = int(headers.get(b"content-length", b"0"))
            while len(self.buf) < length:
                await self._more()
            body, self.buf = self.buf[:length], self.buf[length:]
            return status, headers, body

    async def get(self, target: str, **kw: Any) -> tuple[int, dict[bytes, bytes], bytes]:
        await self.send("GET", target, **kw)
        return await self.response()


def _pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


# (method, target, host, request body, expected status, expected body)
_SEQUENCE: list[tuple[str, str, str, bytes, int, bytes]] = [
    ("GET", "/small?1", RAW, b"", 200, b"ok /small?1"),  # first request: the task
    ("GET", "/small?2", RAW, b"", 200, b"ok /small?2"),  # poller
    ("POST", "/upload", RAW, b"x" * 1000, 200, b"got 1000"),  # body: task
    ("GET", "/small?3", RAW, b"", 200, b"ok /small?3"),  # poller
    ("GET", "/chunked", RAW, b"", 200, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),  # SENT
    ("GET", "/small?4", RAW, b"", 200, b"ok /small?4"),  # poller
    ("GET", "/big?n=300000", RAW, b"", 200, _pattern(300000)),  # large: SENT
    ("HEAD", "/small?5", RAW, b"", 200, b""),  # poller
    ("GET", "/trickle", RAW, b"", 200, b"trickle..."),  # poller or SENT
    ("GET", "/healthz", "127.0.0.1", b"", 200, b"ok\n"),  # not a preview: task
    ("GET", "/small?6", f"nosuch.{BASE}", b"", 404, b"no such preview\n"),  # resolver miss
    ("GET", "/small?6", f"nosuch.{BASE}", b"", 404, b"no such preview\n"),  # cached: STAGED
    ("GET", "/close", RAW, b"", 200, b"closed"),  # poller (or SENT with the end)
    ("GET", "/small?7", RAW, b"", 200, b"ok /small?7"),  # no idle connection: STAGED
    ("GET", "/small?8", RAW, b"", 200, b"ok /small?8"),  # poller
]
_LANE_SERVED_AT_LEAST = 5  # ?2 ?3 ?4 HEAD ?8


async def _run_sequence(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        client = Client(stream)
        for method, target, host, body, status, expected in _SEQUENCE:
            await client.send(method, target, host=host, body=body)
            got_status, headers, got = await client.response(head_only=method == "HEAD")
            assert (got_status, got) == (status, expected), target
            assert b"connection" not in headers, target
            if method == "HEAD":
                assert headers[b"content-length"] == b"%d" % len(f"ok {target}")


async def test_keep_alive_client_alternates_between_poller_and_task_paths_with_equal_counters(
    nursery: trio.Nursery,
    router: RouterUnderTest,
    raw: RawUpstream,
    lane_log: LaneLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _run_sequence(router.port)
    assert lane_log.served >= _LANE_SERVED_AT_LEAST
    assert SENT in lane_log.handed
    assert STAGED in lane_log.handed
    assert NONE in lane_log.handed
    # The same conversation through a router without lanes counts exactly the same.
    monkeypatch.setattr(proxy, "LaneRouter", lambda *args: None)
    task_metrics = Metrics()
    config = make_config(router.resolver)
    port = await nursery.start(
        lambda task_status: serve(config, metrics=task_metrics, task_status=task_status)
    )
    served = lane_log.served
    await _run_sequence(port)
    assert lane_log.served == served  # really the task path this time
    await lane_log.wait_for(lambda: router.metrics.connections_open == 0)
    await lane_log.wait_for(lambda: task_metrics.connections_open == 0)
    lane_stats = attrs.evolve(router.metrics.statistics(), resolver_cache_misses=0)
    task_stats = attrs.evolve(task_metrics.statistics(), resolver_cache_misses=0)
    assert lane_stats == task_stats
    assert lane_stats.requests == len(_SEQUENCE)
    assert lane_stats.responses_by_class["2xx"] == len(_SEQUENCE) - 2


async def test_heads_split_across_reads_both_ways(
    router: RouterUnderTest, raw: RawUpstream, lane_log: LaneLog
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    async with stream:
        client = Client(stream)
        assert (await client.get("/small?a"))[2] == b"ok /small?a"
        # A request head in two reads: the lane hands the first part to the task.
        handed = len(lane_log.handed)
        await stream.send_all(b"GET /small?b HTTP/1.1\r\nHo")
        await lane_log.wait_for(lambda: len(lane_log.handed) > handed)
        assert lane_log.handed[-1] == NONE
        await stream.send_all(f"st: {RAW}\r\n\r\n".encode())
        assert (await client.response())[2] == b"ok /small?b"
        # A response head in two reads: the lane waits for the rest in the poller.
        served = lane_log.served
        calls = lane_log.upstream_calls
        await client.send("GET", "/split")
        # The first read of the upstream socket after this request holds the first part.
        await lane_log.wait_for(lambda: lane_log.upstream_calls > calls)
        assert lane_log.handed[-1] == NONE  # nothing was handed over for it
        await raw.gate_send.send(None)
        status, headers, body = await client.response()
        assert (status, body, headers[b"x-split"]) == (200, b"split", b"yes")
        assert lane_log.served == served + 1
        assert (await client.get("/small?c"))[2] == b"ok /small?c"
    assert raw.connections == 1


async def test_upstream_that_closes_after_a_response(
    router: RouterUnderTest, raw: RawUpstream, lane_log: LaneLog
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    async with stream:
        client = Client(stream)
        assert (await client.get("/small?a"))[2] == b"ok /small?a"
        status, headers, body = await client.get("/close")
        assert (status, body) == (200, b"closed")
        assert b"connection" not in headers  # the client's connection stays open
        assert (await client.get("/small?b"))[2] == b"ok /small?b"
        assert raw.connections == 2
        # The upstream drops its idle keep-alive connection: the next request still works.
        await raw.close_all()
        await lane_log.wait_for(lambda: raw.closed == 2)
        assert (await client.get("/small?c"))[2] == b"ok /small?c"
        assert (await client.get("/small?d"))[2] == b"ok /small?d"
    assert raw.connections == 3
    assert router.metrics.upstream_errors == 0
    assert router.metrics.responses[2] == 5


async def test_client_that_closes_while_its_request_is_in_the_poller(
    router: RouterUnderTest, raw: RawUpstream, lane_log: LaneLog
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    client = Client(stream)
    assert (await client.get("/small?a"))[2] == b"ok /small?a"
    await client.send("GET", "/hang")
    await lane_log.wait_for(lambda: raw.targets[-1:] == [b"/hang"])
    assert lane_log.in_flight == 1
    await stream.aclose()
    await lane_log.wait_for(lambda: SENT in lane_log.handed)  # the task takes over
    await raw.gate_send.send(None)  # the answer comes; the client is gone
    await lane_log.wait_for(lambda: router.metrics.connections_open == 0)
    # The answer was read completely, so the upstream connection is clean: it went back to
    # the pool (or was closed, when the send to the gone client failed). Either way the
    # next client is served.
    again = Client(await trio.open_tcp_stream("127.0.0.1", router.port))
    async with again.stream:
        assert (await again.get("/small?b"))[2] == b"ok /small?b"
    assert router.metrics.requests == 3


async def test_response_to_a_client_that_does_not_read_is_finished_with_back_pressure(
    router: RouterUnderTest, raw: RawUpstream, lane_log: LaneLog
) -> None:
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", router.port))
    stream = trio.SocketStream(sock)
    async with stream:
        client = Client(stream)
        assert (await client.get("/small?a"))[2] == b"ok /small?a"
        size = 30000
        sent = 0
        # Ask again and again without reading until the router cannot send a response at once.
        while SENDING not in lane_log.handed:
            assert sent < 2000, "the client's buffers never filled"
            done = lane_log.served + len(lane_log.handed)
            await client.send("GET", f"/size?n={size}")
            sent += 1
            await lane_log.wait_for(lambda: lane_log.served + len(lane_log.handed) > done)  # noqa: B023
        assert lane_log.served >= 1
        for _ in range(sent):
            status, _, body = await client.response()
            assert (status, body) == (200, _pattern(size))
        assert (await client.get("/small?b"))[2] == b"ok /small?b"
    assert raw.connections == 1
    assert router.metrics.responses[2] == sent + 2


async def test_timeout_while_the_request_is_in_the_poller_gives_502_and_closes_upstream(
    router: RouterUnderTest, raw: RawUpstream, lane_log: LaneLog, autojump_clock: object
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    async with stream:
        client = Client(stream)
        assert (await client.get("/small?a"))[2] == b"ok /small?a"
        await client.send("GET", "/hang")
        await lane_log.wait_for(lambda: raw.targets[-1:] == [b"/hang"])
        assert lane_log.in_flight == 1
        status, headers, _ = await client.response(within=120)  # after the 60 s idle timeout
        assert status == 502
        assert headers[b"connection"] == b"close"
    await raw.gate_send.send(None)  # the late answer meets a closed connection
    await lane_log.wait_for(lambda: raw.closed == 1)
    assert router.metrics.upstream_errors == 1
    assert router.metrics.responses[5] == 1


async def test_a_request_forwarded_by_the_poller_carries_the_same_head_as_the_task_path(
    router: RouterUnderTest, lane_log: LaneLog
) -> None:
    # The first request on a connection goes through the task; the next ones through the
    # poller. Hop-by-hop headers, client-sent forwarding headers and the headers named in
    # Connection are dropped the same way, and X-Forwarded-* are ours.
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    request = (
        f"GET /headers HTTP/1.1\r\nHost: app.{BASE}\r\nConnection: keep-alive, x-secret\r\n"
        "X-Secret: 1\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
        "Forwarded: for=6.6.6.6\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
        "Proxy-Authorization: Basic eA==\r\nAccept: text/html\r\n\r\n"
    ).encode()
    bodies = []
    async with stream:
        client = Client(stream)
        for _ in range(3):
            in_flight = lane_log.in_flight
            await stream.send_all(request)
            status, _, body = await client.response()
            assert status == 200
            bodies.append(body)
        assert lane_log.in_flight == in_flight + 1  # the poller sent the last one upstream
    assert bodies[0] == bodies[1] == bodies[2]
    names = [name for name, _ in json.loads(bodies[2])]
    assert names == [
        "host",
        "accept",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    ]
    assert dict(json.loads(bodies[2]))["x-forwarded-for"] == "127.0.0.1"
    assert dict(json.loads(bodies[2]))["x-forwarded-proto"] == "http"


@pytest.mark.parametrize("side", ["client", "upstream"])
async def test_a_bug_in_the_lane_ends_only_that_connection(
    router: RouterUnderTest,
    raw: RawUpstream,
    lane_log: LaneLog,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    side: str,
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    client = Client(stream)
    assert (await client.get("/small?a"))[2] == b"ok /small?a"  # the task; then the lane waits

    def bug(self: Lane) -> bool:
        raise RuntimeError("a bug in the lane")

    monkeypatch.setattr(Lane, f"_{side}_readable", bug)
    await client.send("GET", "/small?b")
    with trio.fail_after(10), pytest.raises((EOFError, trio.BrokenResourceError)):
        await client.response()  # the router closed this connection instead of crashing
    await stream.aclose()
    assert "the keep-alive lane failed" in caplog.text
    monkeypatch.undo()
    # the worker (and its poller) still serve other connections
    again = Client(await trio.open_tcp_stream("127.0.0.1", router.port))
    async with again.stream:
        assert (await again.get("/small?c"))[2] == b"ok /small?c"
        assert (await again.get("/small?d"))[2] == b"ok /small?d"
    await lane_log.wait_for(lambda: router.metrics.connections_open == 0)
