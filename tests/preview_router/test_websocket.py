"""WebSocket upgrades tunnelled through the router to a real trio-websocket server."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, wrap_client_stream

from .conftest import BASE, RouterUnderTest, raw_exchange


async def test_websocket_echo_and_close_code_propagate(router: RouterUnderTest) -> None:
    async with trio.open_nursery() as nursery:
        stream = await trio.open_tcp_stream("127.0.0.1", router.port)
        ws = await wrap_client_stream(
            nursery, stream, f"ws.{BASE}", "/socket", subprotocols=["vite-hmr"]
        )
        assert ws.subprotocol == "vite-hmr"
        with trio.fail_after(10):
            await ws.send_message("hello")
            assert await ws.get_message() == "hello"
            await ws.send_message(b"\x00binary\xff")
            assert await ws.get_message() == b"\x00binary\xff"
            big = "z" * 300_000
            await ws.send_message(big)
            assert await ws.get_message() == big
            assert router.metrics.websockets_open == 1
            await ws.send_message("close:4001")
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
        assert info.value.reason.code == 4001
        assert info.value.reason.reason == "asked to"
        # The upstream's TCP close ended the tunnel without any help from the client.
        await trio.testing.wait_all_tasks_blocked(0.05)
        assert router.metrics.websockets_open == 0
        await stream.aclose()  # trio-websocket leaves the stream open after a remote close
    assert router.metrics.websockets_total == 1


async def test_client_close_propagates_to_the_upstream(router: RouterUnderTest) -> None:
    async with trio.open_nursery() as nursery:
        stream = await trio.open_tcp_stream("127.0.0.1", router.port)
        ws = await wrap_client_stream(nursery, stream, f"ws.{BASE}", "/")
        await ws.send_message("ping")
        assert await ws.get_message() == "ping"
        with trio.fail_after(10):
            await ws.aclose(code=4321)
        assert ws.closed is not None
        assert ws.closed.code == 4321  # the upstream echoed our close frame through the tunnel
        await stream.aclose()


async def test_upgrade_to_something_else_is_not_tunnelled(router: RouterUnderTest) -> None:
    out = await raw_exchange(
        router.port,
        f"GET / HTTP/1.1\r\nHost: app.{BASE}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert out.startswith(b"HTTP/1.1 200 ")
    seen = {k.lower(): v for k, v in router.upstream.requests[-1]["headers"]}
    assert "upgrade" not in seen
    assert "connection" not in seen


async def test_websocket_idle_tunnel_is_closed(
    router: RouterUnderTest, autojump_clock: object
) -> None:
    # The tunnel closes after AMICABLE_PREVIEW_WS_IDLE_TIMEOUT_S of silence both ways.
    async with trio.open_nursery() as nursery:
        stream = await trio.open_tcp_stream("127.0.0.1", router.port)
        ws = await wrap_client_stream(nursery, stream, f"ws.{BASE}", "/")
        await ws.send_message("x")
        assert await ws.get_message() == "x"
        start = trio.current_time()
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
        assert trio.current_time() - start >= router.config.ws_idle_timeout_s
        await stream.aclose()
