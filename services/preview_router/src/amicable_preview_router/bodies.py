"""Body relays, both ways: request bodies to the upstream, response bodies to the client.

Bytes are relayed as they come, never buffered whole (Content-Length, chunked, until close).
Each wait first moves the client connection's deadline (:meth:`~.client.Client.arm`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .errors import BadRequest, RouterError, UpstreamProtocolError
from .http1 import CHUNKED, ChunkedScanner

if TYPE_CHECKING:
    from .client import Client
    from .pool import UpstreamConnection
    from .transport import Transport

_RECV = 65536


class RequestBody:
    """Relays a request body from the client to the upstream (runs as its own task)."""

    def __init__(self, client: Client, conn: UpstreamConnection, length: int) -> None:
        self.client = client
        self.conn = conn
        self.length = length
        self.done = False

    async def relay(self, idle_s: float, on_failure: trio.CancelScope) -> None:
        try:
            if self.length == CHUNKED:
                error = BadRequest(400, "bad chunk")
                await relay_chunked(self.client.io, self.conn, self.client, idle_s, error)
            else:
                await relay_exact(self.client, self.conn, self.length, idle_s)
            self.done = True
        except (trio.BrokenResourceError, trio.ClosedResourceError, RouterError):
            on_failure.cancel()


async def relay_exact(client: Client, dst: Transport, length: int, idle_s: float) -> None:
    src = client.io
    first = min(length, len(src.buf))
    if first:
        client.arm(idle_s)
        await dst.send_all(bytes(src.buf[:first]))
        del src.buf[:first]
    remaining = length - first
    while remaining:
        client.arm(idle_s)
        data = await src.receive_some(min(remaining, _RECV))
        if not data:
            raise UpstreamProtocolError("body ended early")
        remaining -= len(data)
        client.arm(idle_s)
        await dst.send_all(data)


async def relay_chunked(
    src: Transport,
    dst: Transport,
    client: Client,
    idle_s: float,
    error: Exception,
    prefix: bytes = b"",
) -> None:
    scanner = ChunkedScanner()
    buf = src.buf
    while True:
        consumed, done = scanner.scan(buf, error)
        if consumed or prefix:
            client.arm(idle_s)
            await dst.send_all(prefix + buf[:consumed])
            del buf[:consumed]
            prefix = b""
        if done:
            return
        client.arm(idle_s)
        if not await src.fill():
            raise UpstreamProtocolError("chunked body ended early")


async def relay_response_body(
    client: Client, conn: UpstreamConnection, framing: int, head: bytes, idle_s: float
) -> None:
    """Send the client-bound response ``head``, then the body framed by ``framing``.

    Raises:
        UpstreamProtocolError: the upstream ended a framed body early or broke its chunking.
    """
    buf = conn.buf
    dst = client.io
    if framing >= 0:
        first = min(framing, len(buf))
        await dst.send_all(head + buf[:first])
        del buf[:first]
        remaining = framing - first
        while remaining:
            client.arm(idle_s)
            data = await conn.receive_some(min(remaining, _RECV))
            if not data:
                raise UpstreamProtocolError("response body ended early")
            remaining -= len(data)
            client.arm(idle_s)
            await dst.send_all(data)
    elif framing == CHUNKED:
        error = UpstreamProtocolError("malformed chunked response body")
        await relay_chunked(conn, dst, client, idle_s, error, prefix=head)
    else:
        client.arm(idle_s)
        await dst.send_all(head + buf)
        buf.clear()
        while True:
            client.arm(idle_s)
            data = await conn.receive_some(_RECV)
            if not data:
                return
            client.arm(idle_s)
            await dst.send_all(data)
