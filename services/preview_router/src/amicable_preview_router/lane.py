"""Keep-alive requests served inside the poller's readiness handling (no task switch).

A client connection that was served once waits, parked, for its next request
(:meth:`Lane.park`). While it is parked it offers the :class:`~.transport.Poller` an
``on_readable`` hook, as WebSocket tunnels do. The common case of a browser or a benchmark
fetching resources one after another then runs entirely in the poller's task:

1. the client socket reports readable; the hook reads it, and when the read holds exactly
   one complete request head without a body (GET or HEAD, HTTP/1.1, keep-alive, a preview
   Host whose routing decision is memoised and whose upstream the resolver knows without
   I/O), it rewrites the head, takes an idle pooled upstream connection and sends it there;
2. the upstream socket reports readable; its hook reads the answer, and when it holds a
   complete final response head and a Content-Length body that is entirely in the buffer, it
   rewrites the head, sends head and body to the client in one ``send``, counts the response,
   returns the upstream connection to the pool and goes back to waiting.

Everything else wakes the client's task, which carries on from exactly where the hook left
(:attr:`Lane.state`): with the bytes read so far in the client's buffer (partial heads,
bodies, pipelining, non-preview hosts, resolver misses, anything unparsable), with a request
whose upstream is resolved but that has no idle connection to go to (``STAGED``), with a
request sent (or partly sent) upstream and the answer not handled yet (``SENT``: 1xx,
chunked, until-close, large or incomplete bodies, upstream errors, end of stream, a client
that went away), or with a response that the client did not take at once (``SENDING``: the
task finishes it with back-pressure). Deadlines stay the connection's own cancel scope: a
timeout or a cancellation wakes the parked task, which closes the upstream connection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from trio.lowlevel import reschedule

from .client import IDLE, LOCAL, RELAY, UPSTREAM
from .errors import BadRequest, ResolverError, UpstreamProtocolError
from .http1 import (
    MAX_RESPONSE_HEAD,
    build_client_response,
    connection_tokens,
    parse_request_head,
    parse_response_head,
    response_body_length,
)
from .resolver import Miss
from .routing import route_request

if TYPE_CHECKING:
    from collections.abc import Callable

    from .client import Client
    from .config import RouterConfig
    from .http1 import RequestHead
    from .metrics import Metrics
    from .pool import UpstreamConnection, UpstreamPool
    from .resolver import Resolver, Upstream
    from .routing import Route

log = logging.getLogger(__name__)

_RECV = 65536

# Lane states: what the parked task finds when it wakes up.
NONE, STAGED, SENT, SENDING = range(4)


class LaneRouter:
    """What the lanes of one router share: its configuration, pool, resolver and counters.

    ``upstream_head`` builds the head sent upstream (``Router._upstream_head``).
    """

    __slots__ = (
        "base_domain",
        "idle_s",
        "limit",
        "metrics",
        "pool",
        "resolver",
        "upstream_head",
    )

    def __init__(
        self,
        config: RouterConfig,
        resolver: Resolver,
        pool: UpstreamPool,
        metrics: Metrics,
        upstream_head: Callable[[Client, RequestHead, frozenset[bytes]], bytes],
    ) -> None:
        self.base_domain = config.base_domain
        self.idle_s = config.http_idle_timeout_s
        self.limit = config.max_header_bytes
        self.resolver = resolver
        self.pool = pool
        self.metrics = metrics
        self.upstream_head = upstream_head


class Lane:
    """One client connection's in-poller request/response step and its hand-over state.

    After :meth:`park` returns, :attr:`state` tells the task what is left to do:

    - ``NONE``: nothing was taken over; the client's buffer holds what was read (maybe
      nothing: the task reads and sees end of stream, an error or more data).
    - ``STAGED``: :attr:`req` (counted) with :attr:`route` and :attr:`upstream` (may be
      ``None``: no such preview) still has to be sent; :attr:`out_head` when known.
    - ``SENT``: :attr:`out_head` went to :attr:`conn` except :attr:`unsent`; the answer is
      in ``conn.buf`` or still to come.
    - ``SENDING``: the response is counted and read completely; :attr:`unsent` of it must
      still reach the client, then :attr:`conn` goes back to the pool if :attr:`reuse`.
    """

    __slots__ = (
        "client",
        "clock",
        "conn",
        "io",
        "on_client",
        "on_upstream",
        "out_head",
        "req",
        "reuse",
        "route",
        "shared",
        "state",
        "unsent",
        "upstream",
    )

    def __init__(self, shared: LaneRouter, client: Client) -> None:
        self.shared = shared
        self.client = client
        self.io = client.io
        self.state = NONE
        self.req: RequestHead | None = None
        self.route: Route | None = None
        self.upstream: Upstream | None = None
        self.out_head = b""
        self.conn: UpstreamConnection | None = None
        self.unsent: bytes | memoryview = b""
        self.reuse = False
        # The clock's own method: trio.current_time() is three calls deep.
        self.clock = trio.lowlevel.current_clock().current_time
        # Bound once: the poller calls these for every event.
        self.on_client = self.on_client_readable
        self.on_upstream = self.on_upstream_readable

    async def park(self) -> int:
        """Wait for the next request, serving it in the poller while that is possible.

        Returns the lane state (see the class docs); the caller resets it with :meth:`take`.

        Cancellation (the connection's deadline, or shutdown): an upstream connection the
        lane holds is closed and the cancellation propagates.
        """
        io = self.io
        io.on_readable = self.on_client
        try:
            await io.wait_readable()
        except BaseException:
            conn = self.conn
            if conn is not None:
                # A request in flight (or its answer) cannot be finished: drop the connection.
                self.conn = None
                conn.close()
            raise
        finally:
            io.on_readable = None
            conn = self.conn
            if conn is not None:
                conn.on_readable = None
        return self.state

    def take(self) -> None:
        """Forget the hand-over (the task has taken it)."""
        self.state = NONE
        self.req = None
        self.route = None
        self.upstream = None
        self.conn = None
        self.unsent = b""
        self.out_head = b""

    def _hand_over(self, state: int) -> bool:
        """Stop the in-poller work and wake the parked task with ``state``."""
        self.state = state
        io = self.io
        io.on_readable = None
        conn = self.conn
        if conn is not None:
            conn.on_readable = None
        waiter = io.waiter
        if waiter is not None:
            io.waiter = None
            reschedule(waiter)
        return True

    # --- client side ------------------------------------------------------------------------

    def on_client_readable(self) -> bool:
        """The client socket reported readable (called by the poller; True = handled)."""
        try:
            return self._client_readable()
        except Exception:
            return self._fail()

    def on_upstream_readable(self) -> bool:
        """The upstream socket reported readable (called by the poller; True = handled)."""
        try:
            return self._upstream_readable()
        except Exception:
            return self._fail()

    def _fail(self) -> bool:
        """A bug in the in-poller path: end this connection only, never the poller (which
        serves every other connection of the worker). The parked task wakes to a closed
        transport and finishes the connection."""
        log.exception("the keep-alive lane failed; closing this client connection")
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.on_readable = None
            conn.close()
        self.io.on_readable = None
        self.io.close()
        return True

    def _client_readable(self) -> bool:
        io = self.io
        if self.conn is not None:
            # A request is in flight: leave whatever comes next (a pipelined request) in the
            # socket; ``ready`` stays set and is checked once the response went out. End of
            # stream is handed to the task, which still delivers the answer if it can.
            if io.ended:
                return self._hand_over(SENT)
            return True
        if io.ended:
            return self._hand_over(NONE)
        io.ready = False
        try:
            data = io.sock.recv(_RECV)
        except BlockingIOError:
            return True
        except OSError:
            io.ready = True  # the task's own recv sees the error (or end of stream)
            return self._hand_over(NONE)
        if not data:
            io.ready = True
            return self._hand_over(NONE)
        if len(data) == _RECV or io.buf:
            io.ready = len(data) == _RECV  # more may be waiting (see Poller)
            return self._give_back(data)
        return self._request(data)

    def _give_back(self, data: bytes) -> bool:
        """Hand the bytes read to the task, which handles them from the start."""
        self.io.buf += data
        return self._hand_over(NONE)

    def _request(self, data: bytes) -> bool:
        # Works on the bytes of the read itself: the client's buffer is empty while it waits.
        shared = self.shared
        idx = data.find(b"\r\n\r\n")
        # Exactly one complete head and nothing after it: no body bytes, no pipelining.
        if idx <= 0 or idx + 4 != len(data) or idx > shared.limit or data[:2] == b"\r\n":
            return self._give_back(data)
        try:
            req = parse_request_head(data[:idx])
        except BadRequest:
            return self._give_back(data)  # the task parses it again and answers the error
        if req.method != b"GET" and req.method != b"HEAD":
            return self._give_back(data)
        try:
            route = route_request(req, shared.base_domain)
        except BadRequest:
            return self._give_back(data)  # the task routes it again and answers the error
        if not route.plain:
            return self._give_back(data)
        try:
            upstream = shared.resolver.cached(route.match)
        except ResolverError:
            return self._give_back(data)  # the task asks again and answers 503
        if upstream is Miss.MISS:
            return self._give_back(data)  # the task resolves (I/O)
        # Committed: from here on the request is this lane's (and counted once).
        shared.metrics.requests += 1
        client = self.client
        now = self.clock()
        client.now = now
        client.req = req
        client.phase = LOCAL
        client.arm_at(now, shared.idle_s)
        self.req = req
        self.route = route
        self.upstream = upstream
        if upstream is None:
            return self._hand_over(STAGED)  # 404 page: the task answers it
        out_head = self.out_head = shared.upstream_head(client, req, route.tokens)
        conn = shared.pool.take_idle(upstream.key, now)
        if conn is None:
            return self._hand_over(STAGED)  # the task connects
        if conn.ready or conn.ended:
            # Something arrived on the idle connection (usually its end): not usable.
            conn.ready = False
            try:
                stray = conn.sock.recv(1)
            except BlockingIOError:
                stray = None
            except OSError:
                stray = b""
            if stray is not None or conn.ended:
                conn.close()
                return self._hand_over(STAGED)
        self.conn = conn
        client.phase = UPSTREAM  # a deadline from here on means 502
        try:
            sent = conn.sock.send(out_head)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # the task's send raises and retries on a fresh connection
        if sent < len(out_head):
            self.unsent = memoryview(out_head)[sent:]
            return self._hand_over(SENT)
        self.unsent = b""
        conn.on_readable = self.on_upstream
        return True

    # --- upstream side ----------------------------------------------------------------------

    def _upstream_readable(self) -> bool:
        conn = self.conn
        if conn is None:
            return True  # pragma: no cover - the hook is removed with the connection
        if conn.ended:
            return self._hand_over(SENT)  # the task reads what is left and the end
        conn.ready = False
        try:
            data = conn.sock.recv(_RECV)
        except BlockingIOError:
            return True
        except OSError:
            conn.ready = True
            return self._hand_over(SENT)
        if not data:
            conn.ready = True
            return self._hand_over(SENT)
        buf = conn.buf
        if len(data) == _RECV:
            conn.ready = True
            buf += data
            return self._hand_over(SENT)  # large: the task streams it
        if buf:  # the first part of the head came in an earlier read
            buf += data
            data = bytes(buf)
            buf.clear()
        # From here the answer is in ``data``; a hand-over puts it back into the buffer.
        idx = data.find(b"\r\n\r\n")
        if idx < 0:
            buf += data
            if len(buf) > MAX_RESPONSE_HEAD:
                return self._hand_over(SENT)
            return True  # a partial head: wait for the rest here
        try:
            resp = parse_response_head(data[:idx])
        except UpstreamProtocolError:
            buf += data
            return self._hand_over(SENT)
        req = self.req
        assert req is not None
        if resp.status < 200:
            buf += data
            return self._hand_over(SENT)  # 1xx (and an unsolicited 101)
        try:
            framing = response_body_length(req.method, resp)
        except UpstreamProtocolError:
            framing = -3
        if framing < 0 or framing != len(data) - idx - 4:
            buf += data
            return self._hand_over(SENT)  # chunked, until close, not all here, or extra
        tokens = connection_tokens(resp)
        reuse = resp.version == b"HTTP/1.1" and b"close" not in tokens
        out = build_client_response(resp, close=False, tokens=tokens) + data[idx + 4 :]
        client = self.client
        client.phase = RELAY
        self.shared.metrics.responses[resp.status // 100] += 1
        io = self.io
        try:
            sent = io.sock.send(out)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # the task's send raises and ends the connection
        if sent < len(out):
            self.unsent = memoryview(out)[sent:]
            self.reuse = reuse
            return self._hand_over(SENDING)
        conn.on_readable = None
        self.conn = None
        self.req = None
        if reuse:
            self.shared.pool.release(conn, client.now)
        else:
            conn.close()
        client.served = True
        client.phase = IDLE
        # Idle from about now: the request arrived a moment ago (one-second granularity).
        client.arm_at(client.now, self.shared.idle_s)
        if io.ready or io.ended:
            return self._hand_over(NONE)  # the next request is already there: the task reads
        return True
