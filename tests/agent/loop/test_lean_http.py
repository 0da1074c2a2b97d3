"""LeanTransport (lean_http): HTTP/1.1 framing, keep-alive, stale connections, timeouts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx2
import pytest
import trio
import trio.lowlevel
import trio.testing
from amicable_agent.lean_http import BODY, LeanResponseStream, LeanTransport

Handler = Callable[[trio.SocketStream, int], Awaitable[None]]


async def _read_request(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            size = int(line.split(b":")[1])
            while len(body) < size:
                body += await stream.receive_some(65536)
    return head


class Server:
    """A scripted raw HTTP server on port 0; counts connections, records request heads."""

    def __init__(self, handler: Callable[[Server, trio.SocketStream, int], Awaitable[None]]):
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.closed = trio.Event()

    async def serve(self, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async def handle(stream: trio.SocketStream) -> None:
            self.connections += 1
            async with stream:
                await self.handler(self, stream, self.connections)

        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handle, listeners)
            task_status.started(f"http://127.0.0.1:{port}")


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n"
)


async def _bytewise(server: Server, stream: trio.SocketStream, n: int) -> None:
    while head := await _read_request(stream):
        server.heads.append(head)
        for i in range(len(CHUNKED)):  # every possible split of the framing
            await stream.send_all(CHUNKED[i : i + 1])
            await trio.lowlevel.checkpoint()


async def test_chunked_body_split_anywhere_and_connection_reused() -> None:
    server = Server(_bytewise)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        async with httpx2.AsyncClient(transport=LeanTransport()) as client:
            for _ in range(2):
                async with client.stream("POST", url + "/v1/messages", json={"a": 1}) as resp:
                    assert resp.status_code == 200
                    assert isinstance(resp.extensions[BODY], LeanResponseStream)
                    body = b"".join([c async for c in resp.extensions[BODY]])
                    assert body == b"hello world"
        assert server.connections == 1  # keep-alive: the second request reused it
        assert b"POST /v1/messages HTTP/1.1" in server.heads[0]
        assert b"Accept-Encoding: identity" in server.heads[0]
        nursery.cancel_scope.cancel()


async def _close_after_one(server: Server, stream: trio.SocketStream, n: int) -> None:
    head = await _read_request(stream)
    server.heads.append(head)
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    # then close: the client's pooled connection is stale


async def test_a_stale_pooled_connection_is_replaced_transparently() -> None:
    server = Server(_close_after_one)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        async with httpx2.AsyncClient(transport=LeanTransport()) as client:
            first = await client.get(url + "/a")
            await trio.sleep(0.05)  # let the server's close arrive
            second = await client.get(url + "/b")
        assert first.content == second.content == b"ok"
        assert server.connections == 2
        nursery.cancel_scope.cancel()


async def _sized_in_pieces(server: Server, stream: trio.SocketStream, n: int) -> None:
    while await _read_request(stream):
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await trio.sleep(0.01)
        await stream.send_all(b"defghij")


async def test_a_sized_body_in_pieces_then_the_next_request() -> None:
    server = Server(_sized_in_pieces)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        async with httpx2.AsyncClient(transport=LeanTransport()) as client:
            bodies = [(await client.get(url + "/")).content for _ in range(3)]
        assert bodies == [b"abcdefghij"] * 3
        assert server.connections == 1
        nursery.cancel_scope.cancel()


async def _stall(server: Server, stream: trio.SocketStream, n: int) -> None:
    await _read_request(stream)
    await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    await trio.sleep_forever()


async def test_a_stalled_body_raises_read_timeout(autojump_clock: trio.testing.MockClock) -> None:
    server = Server(_stall)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        chunks: list[bytes] = []

        async def read_all(body: LeanResponseStream) -> None:
            async for chunk in body:
                chunks.append(chunk)

        async with (
            httpx2.AsyncClient(transport=LeanTransport(), timeout=30) as client,
            client.stream("GET", url + "/") as resp,
        ):
            with pytest.raises(httpx2.ReadTimeout):
                await read_all(resp.extensions[BODY])
            assert chunks == [b"abc"]
        nursery.cancel_scope.cancel()


async def _stream_until_closed(server: Server, stream: trio.SocketStream, n: int) -> None:
    await _read_request(stream)
    await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
        while True:
            await stream.send_all(b"1\r\nx\r\n")
            await trio.sleep(0.01)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        server.closed.set()


async def test_closing_a_response_mid_body_closes_the_connection() -> None:
    server = Server(_stream_until_closed)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        async with (
            httpx2.AsyncClient(transport=LeanTransport()) as client,
            client.stream("GET", url + "/") as resp,
        ):
            async for chunk in resp.extensions[BODY]:
                assert chunk.startswith(b"x")
                break
        with trio.fail_after(10):
            await server.closed.wait()  # the server saw the client go away
        nursery.cancel_scope.cancel()


async def test_connection_refused_is_a_connect_error() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()  # nothing listens there now
    async with httpx2.AsyncClient(transport=LeanTransport()) as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_https_with_a_verified_certificate(tmp_path) -> None:
    # The production path (api.anthropic.com): TLS, ALPN http/1.1, certificate checked.
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is not installed (Debian package openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await trio.run_process(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        capture_stdout=True, capture_stderr=True,
    )  # fmt: skip
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.set_alpn_protocols(["http/1.1"])
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.set_alpn_protocols(["http/1.1"])
    alpn: list[str | None] = []

    async def handle(tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, server_ctx, server_side=True)
        try:
            async with stream:
                while b"\r\n\r\n" not in await stream.receive_some(65536):
                    pass
                alpn.append(stream.selected_alpn_protocol())
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
        except trio.BrokenResourceError:
            pass  # the client rejected our certificate

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        transport = LeanTransport(ssl_context=client_ctx)
        async with httpx2.AsyncClient(transport=transport) as client:
            response = await client.get(f"https://localhost:{port}/")
            assert response.content == b"secure"
        assert alpn == ["http/1.1"]
        # A certificate the client does not trust is a connection error.
        async with httpx2.AsyncClient(transport=LeanTransport()) as client:
            with pytest.raises(httpx2.ConnectError):
                await client.get(f"https://localhost:{port}/")
        nursery.cancel_scope.cancel()
