"""amicable_frontdoor.serve on loopback: the lane, the hand-over to hypercorn with the lane's
bytes replayed, per-connection fault isolation, a shutdown that is bounded while clients hold
connections open, the port reported through ``task_status``."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import amicable_frontdoor
import pytest
import trio
import trio.testing
from amicable_frontdoor import serve
from hypercorn.config import Config

BIG = 32 * 1024 * 1024  # more than loopback's socket buffers hold


class App:
    """An ASGI app that answers ``asgi <method> <path> <body length>`` (``/big``: BIG bytes)
    and records its requests and lifespan events."""

    def __init__(self) -> None:
        self.lifespan: list[str] = []
        self.requests: list[tuple[str, str, bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"].split(".")[1]
                self.lifespan.append(kind)
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.requests.append((scope["method"], scope["path"], body))
        if scope["path"] == "/big":
            payload = b"x" * BIG
        else:
            payload = f"asgi {scope['method']} {scope['path']} {len(body)}".encode()
        headers = [(b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class Lane:
    """Answers ``GET /lane...`` itself, raises on ``/boom``, hands anything else over."""

    def __init__(self) -> None:
        self.answered = 0

    async def serve(self, stream: trio.SocketStream) -> bytes | None:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data:
                    return buf or None
                buf += data
            head, _, rest = buf.partition(b"\r\n\r\n")
            target = head.split(b" ")[1]
            if target == b"/boom":
                raise RuntimeError("boom")
            if not target.startswith(b"/lane"):
                return buf
            self.answered += 1
            await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlane")
            buf = rest


def config(**overrides: Any) -> Config:
    """A hypercorn config on a free loopback port."""
    cfg = Config()
    cfg.bind = ["127.0.0.1:0"]
    cfg.accesslog = None
    for name, value in overrides.items():
        setattr(cfg, name, value)
    return cfg


def get(target: str, body: bytes = b"") -> bytes:
    method = "POST" if body else "GET"
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def responses(stream: trio.SocketStream, count: int) -> list[bytes]:
    """The bodies of the next ``count`` responses (framed by content-length)."""
    buf = b""
    bodies = []
    with trio.fail_after(30):
        while len(bodies) < count:
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                assert data, f"closed after {bodies}"
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buf) < length:
                buf += await stream.receive_some(65536)
            bodies.append(buf[:length])
            buf = buf[length:]
    return bodies


async def test_public_names() -> None:
    assert sorted(amicable_frontdoor.__all__) == ["Lane", "serve"]


async def test_port_is_reported_and_the_lane_answers(nursery: trio.Nursery) -> None:
    app, lane = App(), Lane()
    port = await nursery.start(partial(serve, app, config(), lane=lane))
    assert isinstance(port, int)
    assert port > 0
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(get("/lane/1") + get("/lane/2"))
    assert await responses(stream, 2) == [b"lane", b"lane"]
    assert (lane.answered, app.requests) == (2, [])
    await stream.aclose()


async def test_hand_over_replays_the_bytes_the_lane_read(nursery: trio.Nursery) -> None:
    app, lane = App(), Lane()
    port = await nursery.start(partial(serve, app, config(), lane=lane))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    # one send: the lane reads the POST (head and body) and the GET behind it with its own
    await stream.send_all(get("/lane") + get("/x", b"hello") + get("/y"))
    assert await responses(stream, 3) == [b"lane", b"asgi POST /x 5", b"asgi GET /y 0"]
    # the rest of the connection is hypercorn's, even for the lane's paths
    await stream.send_all(get("/lane/again"))
    assert await responses(stream, 1) == [b"asgi GET /lane/again 0"]
    assert app.requests == [
        ("POST", "/x", b"hello"),
        ("GET", "/y", b""),
        ("GET", "/lane/again", b""),
    ]
    await stream.aclose()


async def test_without_a_lane_hypercorn_serves_everything(nursery: trio.Nursery) -> None:
    app = App()
    port = await nursery.start(partial(serve, app, config()))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(get("/lane"))
    assert await responses(stream, 1) == [b"asgi GET /lane 0"]
    await stream.aclose()


async def test_a_connection_whose_handler_raises_ends_alone(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    app, lane = App(), Lane()
    port = await nursery.start(partial(serve, app, config(), lane=lane))
    held = await trio.open_tcp_stream("127.0.0.1", port)  # another client, mid-connection
    await held.send_all(get("/x"))
    assert await responses(held, 1) == [b"asgi GET /x 0"]

    failing = await trio.open_tcp_stream("127.0.0.1", port)
    with caplog.at_level(logging.WARNING, logger="amicable_frontdoor"):
        await failing.send_all(get("/boom"))
        with trio.fail_after(30):
            assert await failing.receive_some(65536) == b""  # closed, no answer
    assert any(
        r.message.startswith("connection failed") and r.exc_info is not None for r in caplog.records
    )
    await held.send_all(get("/y"))
    assert await responses(held, 1) == [b"asgi GET /y 0"]
    fresh = await trio.open_tcp_stream("127.0.0.1", port)
    await fresh.send_all(get("/lane"))
    assert await responses(fresh, 1) == [b"lane"]
    for stream in (held, failing, fresh):
        await stream.aclose()


async def test_shutdown_is_bounded_while_clients_hold_connections(
    autojump_clock: trio.abc.Clock,
) -> None:
    grace = 3.0
    app, lane = App(), Lane()
    cfg = config(graceful_timeout=grace, keep_alive_timeout=3600)
    server = trio.CancelScope()
    stopped = trio.Event()

    async def run(task_status: trio.TaskStatus[int]) -> None:
        with server:
            await serve(app, cfg, lane=lane, task_status=task_status)
        stopped.set()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(run)
        idle = await trio.open_tcp_stream("127.0.0.1", port)  # kept alive, never closed
        await idle.send_all(get("/x"))
        assert await responses(idle, 1) == [b"asgi GET /x 0"]
        stuck = await trio.open_tcp_stream("127.0.0.1", port)  # never reads its answer
        await stuck.send_all(get("/big"))
        await trio.testing.wait_all_tasks_blocked()  # hypercorn blocked in a shielded send
        assert app.requests[-1][1] == "/big"
        began = trio.current_time()
        server.cancel()
        with trio.move_on_after(2 * grace + 1):
            await stopped.wait()
        took = trio.current_time() - began
        if not stopped.is_set():
            await stuck.aclose()  # lets the hung server go, so that the test fails, not hangs
    assert stopped.is_set()
    assert took <= 2 * grace
    assert app.lifespan == ["startup", "shutdown"]
    received = 0
    with trio.fail_after(30):
        try:
            while data := await stuck.receive_some(1024 * 1024):
                received += len(data)
        except trio.BrokenResourceError:
            pass  # reset: the server closed with our request's answer unsent
    assert received < BIG
    for stream in (idle, stuck):
        await stream.aclose()
