"""Slow clients, oversized heads, idle connections and the connection limit."""

from __future__ import annotations

import trio
from amicable_preview_router.metrics import Metrics
from amicable_preview_router.server import serve
from amicable_testing.fake_resolver import FakeResolver

from .conftest import BASE, RouterUnderTest, make_config, raw_exchange

APP = f"app.{BASE}"


async def _read_all(stream: trio.SocketStream) -> bytes:
    out = b""
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return out
        if not chunk:
            return out
        out += chunk


async def test_slow_loris_head_gets_408_after_the_header_timeout(
    router: RouterUnderTest, autojump_clock: object
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    async with stream:
        start = trio.current_time()
        await stream.send_all(f"GET / HTTP/1.1\r\nHost: {APP}\r\n".encode())
        for _ in range(3):  # trickle a byte now and then, never finishing the head
            await trio.sleep(2)
            await stream.send_all(b"X")
        out = await _read_all(stream)
        elapsed = trio.current_time() - start
    assert out.startswith(b"HTTP/1.1 408 ")
    assert router.config.header_timeout_s <= elapsed < router.config.header_timeout_s + 1
    assert router.upstream.requests == []


async def test_idle_keep_alive_connection_is_closed_silently(
    router: RouterUnderTest, autojump_clock: object
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    async with stream:
        await stream.send_all(f"GET / HTTP/1.1\r\nHost: {APP}\r\n\r\n".encode())
        first = b""
        while not first.endswith(b"hello from upstream"):
            first += await stream.receive_some(65536)
        start = trio.current_time()
        assert await _read_all(stream) == b""
        # Timeouts have a one-second granularity.
        assert trio.current_time() - start >= router.config.http_idle_timeout_s - 1


async def test_oversized_head_gets_431_and_is_not_proxied(router: RouterUnderTest) -> None:
    filler = b"X-Filler: " + b"a" * router.config.max_header_bytes + b"\r\n"
    out = await raw_exchange(
        router.port, f"GET / HTTP/1.1\r\nHost: {APP}\r\n".encode() + filler + b"\r\n"
    )
    assert out.startswith(b"HTTP/1.1 431 ")
    assert router.upstream.requests == []


async def test_head_just_under_the_limit_is_proxied(router: RouterUnderTest) -> None:
    base = f"GET / HTTP/1.1\r\nHost: {APP}\r\nConnection: close\r\nX-Filler: ".encode()
    filler = b"a" * (router.config.max_header_bytes - len(base) - 10)
    out = await raw_exchange(router.port, base + filler + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")


async def test_connections_over_the_limit_are_refused(
    nursery: trio.Nursery, resolver: FakeResolver
) -> None:
    config = make_config(resolver, max_connections=2)
    metrics = Metrics()
    port = await nursery.start(
        lambda task_status: serve(config, metrics=metrics, task_status=task_status)
    )
    held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    for stream in held:  # an answered keep-alive request proves the connection is counted
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        with trio.fail_after(10):
            assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
    assert metrics.connections_open == 2
    out = await raw_exchange(port, f"GET / HTTP/1.1\r\nHost: {APP}\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 503 ")
    assert metrics.connections_rejected == 1
    for stream in held:
        await stream.aclose()


async def test_upstream_that_never_answers_gets_502_after_the_idle_timeout(
    nursery: trio.Nursery, resolver: FakeResolver, autojump_clock: object
) -> None:
    # A "dev server" that accepts and then says nothing.
    silent = await trio.open_tcp_listeners(0, host="127.0.0.1")
    silent_port = silent[0].socket.getsockname()[1]
    accepted: list[trio.SocketStream] = []

    async def hold(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        await trio.sleep_forever()

    nursery.start_soon(trio.serve_listeners, hold, silent)
    from amicable_protocol.preview import PreviewResolution

    resolver.answers[f"mute.{BASE}"] = PreviewResolution("mute", f"http://127.0.0.1:{silent_port}")
    config = make_config(resolver)
    port = await nursery.start(serve, config)
    start = trio.current_time()
    out = await raw_exchange(
        port,
        f"GET / HTTP/1.1\r\nHost: mute.{BASE}\r\nConnection: close\r\n\r\n".encode(),
        deadline_s=600,
    )
    assert out.startswith(b"HTTP/1.1 502 ")
    assert trio.current_time() - start >= config.http_idle_timeout_s
    assert len(accepted) == 1
