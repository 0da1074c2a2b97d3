"""Real loopback servers for the preview router tests.

* ``H11Upstream``: a scripted HTTP/1.1 dev-server stand-in (h11), counting connections.
* a trio-websocket echo server (closes with the code a client asks for).
* ``FakeResolver`` (the package's public fake) mapping labels to those upstreams.
* the router itself, started with ``nursery.start(serve, config)`` on port 0.
"""

from __future__ import annotations

import hashlib
import json
import socket
from typing import Any

import attrs
import h11
import pytest
import trio
from amicable_preview_router.config import RouterConfig
from amicable_preview_router.metrics import Metrics
from amicable_preview_router.server import serve
from amicable_protocol.preview import PreviewResolution
from amicable_testing.fake_resolver import FakeResolver
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

BASE = "preview.localhost"
TOKEN = "s3cret-token"


@attrs.define
class LoopbackServer:
    """A TCP server on a free loopback port that counts and tracks its connections;
    subclasses answer one connection in :meth:`_serve_one` (its errors end only it)."""

    port: int = 0
    connections: int = 0
    closed: int = 0
    streams: set[trio.SocketStream] = attrs.Factory(set)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def close_all(self) -> None:
        """Close every connection (as a dev server's keep-alive timeout would)."""
        for stream in list(self.streams):
            await stream.aclose()

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        self.streams.add(stream)
        try:
            async with stream:
                await self._serve_one(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            self.streams.discard(stream)
            self.closed += 1

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        raise NotImplementedError


@attrs.define
class H11Upstream(LoopbackServer):
    """A small HTTP/1.1 server whose routes tests script; ``proceed`` paces streaming routes."""

    requests: list[dict[str, Any]] = attrs.Factory(list)
    proceed_send: trio.MemorySendChannel[None] | None = None
    proceed_recv: trio.MemoryReceiveChannel[None] | None = None

    def __attrs_post_init__(self) -> None:
        self.proceed_send, self.proceed_recv = trio.open_memory_channel[None](100)

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = await self._next(conn, stream)
            if isinstance(event, (h11.ConnectionClosed, type(None))):
                return
            assert isinstance(event, h11.Request)
            self.requests.append(
                {
                    "method": event.method.decode(),
                    "target": event.target.decode(),
                    "headers": [(k.decode(), v.decode()) for k, v in event.headers],
                }
            )
            await self._route(conn, stream, event)
            if conn.our_state is h11.MUST_CLOSE:
                return
            while conn.their_state is not h11.DONE:
                if isinstance(await self._next(conn, stream), h11.ConnectionClosed):
                    return
            conn.start_next_cycle()

    async def _next(self, conn: h11.Connection, stream: trio.SocketStream) -> Any:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
                continue
            return event

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, *events: Any) -> None:
        for event in events:
            data = conn.send(event)
            if data:
                await stream.send_all(data)

    async def _route(
        self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request
    ) -> None:
        path = req.target.decode().split("?")[0]
        assert self.proceed_recv is not None
        if path == "/headers":
            body = json.dumps(self.requests[-1]["headers"]).encode()
            await self._send(
                conn,
                stream,
                h11.Response(status_code=200, headers=[("content-length", str(len(body)))]),
                h11.Data(data=body),
                h11.EndOfMessage(),
            )
        elif path == "/slow":
            await self._send(
                conn,
                stream,
                h11.Response(status_code=200, headers=[("content-type", "text/plain")]),
            )
            for i in range(3):
                await self._send(conn, stream, h11.Data(data=f"chunk{i}\n".encode()))
                await self.proceed_recv.receive()
            await self._send(conn, stream, h11.EndOfMessage())
        elif path == "/sse":
            headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
            await self._send(conn, stream, h11.Response(status_code=200, headers=headers))
            for i in range(3):
                await self._send(
                    conn, stream, h11.Data(data=f"event: tick\ndata: {i}\n\n".encode())
                )
                await self.proceed_recv.receive()
            await self._send(conn, stream, h11.EndOfMessage())
        elif path == "/echo":
            # Streams the request body back while it still arrives (both directions at once).
            await self._send(conn, stream, h11.Response(status_code=200, headers=[]))
            while True:
                event = await self._next(conn, stream)
                if isinstance(event, h11.Data):
                    await self._send(conn, stream, h11.Data(data=bytes(event.data)))
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return
            await self._send(conn, stream, h11.EndOfMessage())
        elif path == "/upload":
            total = 0
            digest = hashlib.sha256()
            while True:
                event = await self._next(conn, stream)
                if isinstance(event, h11.Data):
                    total += len(event.data)
                    digest.update(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return
            body = f"{total} {digest.hexdigest()}".encode()
            await self._send(
                conn,
                stream,
                h11.Response(status_code=200, headers=[("content-length", str(len(body)))]),
                h11.Data(data=body),
                h11.EndOfMessage(),
            )
        elif path == "/big":
            size = int(req.target.decode().split("=")[1])
            await self._send(
                conn, stream, h11.Response(status_code=200, headers=[("content-length", str(size))])
            )
            block = b"x" * 65536
            sent = 0
            while sent < size:
                part = block[: min(65536, size - sent)]
                await self._send(conn, stream, h11.Data(data=part))
                sent += len(part)
            await self._send(conn, stream, h11.EndOfMessage())
        elif path == "/until-close":
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
            await stream.aclose()
            raise trio.BrokenResourceError
        else:
            body = b"hello from upstream"
            await self._send(
                conn,
                stream,
                h11.Response(
                    status_code=200,
                    headers=[
                        ("content-length", str(len(body))),
                        ("keep-alive", "timeout=5"),
                        ("x-upstream", "yes"),
                    ],
                ),
                *([] if req.method == b"HEAD" else [h11.Data(data=body)]),
                h11.EndOfMessage(),
            )


async def _ws_echo(request: WebSocketRequest) -> None:
    ws = await request.accept(subprotocol=(list(request.proposed_subprotocols) or [None])[0])
    try:
        while True:
            message = await ws.get_message()
            if isinstance(message, str) and message.startswith("close:"):
                await ws.aclose(code=int(message.split(":")[1]), reason="asked to")
                return
            await ws.send_message(message)
    except ConnectionClosed:
        return


@attrs.frozen
class RouterUnderTest:
    """A running router and what it routes to."""

    port: int
    config: RouterConfig
    metrics: Metrics
    upstream: H11Upstream
    resolver: FakeResolver
    ws_port: int


def free_port_refusing() -> int:
    """A loopback port nothing listens on (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def upstream(nursery: trio.Nursery) -> H11Upstream:
    server = H11Upstream()
    await nursery.start(server.serve)
    return server


@pytest.fixture
async def ws_port(nursery: trio.Nursery) -> int:
    server = await nursery.start(serve_websocket, _ws_echo, "127.0.0.1", 0, None)
    return int(server.port)


@pytest.fixture
async def resolver(nursery: trio.Nursery, upstream: H11Upstream, ws_port: int) -> FakeResolver:
    fake = FakeResolver(
        token=TOKEN,
        answers={
            f"app.{BASE}": PreviewResolution("app", f"http://127.0.0.1:{upstream.port}"),
            f"ws.{BASE}": PreviewResolution("ws", f"http://127.0.0.1:{ws_port}"),
            f"down.{BASE}": PreviewResolution("down", f"http://127.0.0.1:{free_port_refusing()}"),
            f"broken.{BASE}": 500,
        },
    )
    await nursery.start(fake.serve)
    return fake


def make_config(resolver: FakeResolver, **overrides: Any) -> RouterConfig:
    """A loopback router config using ``resolver``."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "base_domain": BASE,
        "resolver_url": resolver.url,
        "resolver_token": TOKEN,
        **overrides,
    }
    return RouterConfig(**values)


@pytest.fixture
async def router(
    nursery: trio.Nursery, upstream: H11Upstream, resolver: FakeResolver, ws_port: int
) -> RouterUnderTest:
    config = make_config(resolver)
    metrics = Metrics()
    port = await nursery.start(
        lambda task_status: serve(config, metrics=metrics, task_status=task_status)
    )
    return RouterUnderTest(port, config, metrics, upstream, resolver, ws_port)


async def raw_exchange(
    port: int, data: bytes, *, read_until_close: bool = True, deadline_s: float = 10
) -> bytes:
    """Send raw bytes to the router and return everything it answers until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        out = b""
        with trio.fail_after(deadline_s):
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                out += chunk
                if not read_until_close and b"\r\n\r\n" in out:
                    break
        return out
