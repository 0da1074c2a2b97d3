"""One client connection's state (its deadline scope and phase) and the request-body relays
the proxied path (``proxy.py``) uses."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from .errors import BadRequest, RouterError, UpstreamProtocolError
from .http1 import CHUNKED, ChunkedScanner, RequestHead

if TYPE_CHECKING:
    from .pool import UpstreamConnection
    from .transport import Transport

_RECV = 65536

#: Connection phases (:attr:`Client.phase`): what a deadline expiry means. ``HEAD``: inside
#: a request head (408); ``UPSTREAM``: waiting for the upstream (502); otherwise a silent
#: close. ``IDLE`` between requests, ``LOCAL`` while routing or answering locally, ``RELAY``
#: while relaying a response.
IDLE, HEAD, LOCAL, UPSTREAM, RELAY = range(5)


class Client:
    """Per-connection state: the client stream, its deadline scope and its current phase."""

    __slots__ = (
        "deadline",
        "io",
        "ip",
        "now",
        "peer_ip",
        "phase",
        "req",
        "scope",
        "served",
        "tail",
        "tail_fields",
        "trusted",
    )

    def __init__(self, io: Transport, peer_ip: str, trusted: bool) -> None:
        self.io = io
        self.peer_ip = peer_ip
        self.ip = peer_ip.encode()
        self.trusted = trusted
        # The upstream head after the request line for the field block seen last (a
        # keep-alive client usually repeats its block): reused while the block is the same.
        self.tail_fields: object = None
        self.tail = b""
        self.scope = trio.CancelScope()
        self.deadline = math.inf
        self.now = 0.0  # trio.current_time() when the current request head arrived
        self.phase = IDLE
        self.req: RequestHead | None = None
        self.served = False  # a response was sent: the next request cannot be here yet

    def arm(self, seconds: float) -> None:
        """Let the next wait last at most ``seconds`` (give or take one second).

        Moving a deadline later by less than a second is skipped: timeouts get a one-second
        granularity and a request costs one or two deadline updates instead of a dozen.
        """
        deadline = trio.current_time() + seconds
        if deadline < self.deadline or deadline - self.deadline > 1.0:
            self.deadline = self.scope.deadline = deadline

    def arm_at(self, now: float, seconds: float) -> None:
        """:meth:`arm` with the caller's recent reading of the clock."""
        deadline = now + seconds
        if deadline < self.deadline or deadline - self.deadline > 1.0:
            self.deadline = self.scope.deadline = deadline

    def disarm(self) -> None:
        """No deadline (an upgraded connection keeps its own)."""
        self.deadline = self.scope.deadline = math.inf


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
