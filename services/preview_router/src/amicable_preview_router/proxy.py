"""The proxied path: one client connection and its requests.

Per request: read and strictly parse the head, decide its route (``routing.py``), answer
locally what is not for a preview (``replies.py``), resolve the preview and forward the
request (``forwarding.py``: upstream connection, body relays, response, WebSocket splice).
A keep-alive connection waits for its next request in a lane (``lane.py``), which serves the
common case in the poller and hands everything else back here. No framework and no body
buffering anywhere on this path.

Timeouts: each client connection runs inside one cancel scope whose deadline is moved before
every wait (idle keep-alive, request head, upstream answer, body I/O). Entering a fresh cancel
scope per socket operation costs more than the rest of a small request together, so the hot
path only moves a deadline. What a timeout means follows from the phase the connection was in
(408 inside a request head, 502 while waiting for the upstream, a silent close otherwise).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

import trio

from .client import HEAD, IDLE, LOCAL, UPSTREAM, Client
from .errors import BadRequest, ResolverError, RouterError
from .forwarding import Forwarder
from .http1 import parse_request_head
from .lane import NONE, SENDING, SENT, STAGED, Lane, LaneRouter
from .replies import bad_gateway, local, reply
from .resolver import Miss
from .routing import HostKind, route_request

if TYPE_CHECKING:
    from .config import RouterConfig
    from .http1 import RequestHead
    from .metrics import Metrics
    from .pool import UpstreamPool
    from .resolver import Resolver
    from .transport import Poller, Transport

log = logging.getLogger(__name__)


class Router:
    """Serves client connections (the ``serve_listeners`` handler); owns nothing but counters.

    Reads and routes each request, answers locally what is not for a preview, resolves the
    preview and hands the request to its :class:`~.forwarding.Forwarder`. A keep-alive
    connection waits for its next request in a :class:`~.lane.Lane`, which may serve it in
    the poller.

    Args:
        config: the router configuration.
        resolver: host -> upstream.
        pool: idle upstream connections.
        metrics: counters to update.
        poller: registers new upstream connections (as the server does client ones).
    """

    def __init__(
        self,
        config: RouterConfig,
        resolver: Resolver,
        pool: UpstreamPool,
        metrics: Metrics,
        *,
        poller: Poller | None = None,
    ) -> None:
        self._config = config
        self._resolver = resolver
        self._pool = pool
        self._metrics = metrics
        self._base_domain = config.base_domain
        self._idle_s = config.http_idle_timeout_s
        forwarder = Forwarder(config, pool, metrics, poller)
        # Bound once: called for every request that is not served in the poller.
        self._forward = forwarder.forward
        self._exchange = forwarder.exchange
        # Keep-alive requests served inside the poller (lane.py) need the poller's hooks.
        self._lanes: LaneRouter | None = None
        if poller is not None:
            self._lanes = LaneRouter(config, resolver, pool, metrics, forwarder.upstream_head)

    async def handle_connection(self, stream: Transport) -> None:
        """Serve one client connection until either side closes it.

        Cancellation: the connection, its upstream connection and any tunnel close at once.
        """
        metrics = self._metrics
        try:
            if metrics.connections_open >= self._config.max_connections:
                metrics.connections_rejected += 1
                with trio.move_on_after(1):
                    await reply(metrics, stream, 503, b"too many connections\n", close=True)
                return
            metrics.connections_open += 1
            try:
                peer_ip = stream.peer_ip()
                client = Client(stream, peer_ip, self._is_trusted(peer_ip))
                with client.scope:
                    await self._serve(client)
                if client.scope.cancelled_caught:
                    await self._timed_out(client)
            finally:
                metrics.connections_open -= 1
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError, RouterError):
            pass  # this client is done; the server goes on
        finally:
            stream.close()

    async def _timed_out(self, client: Client) -> None:
        with trio.move_on_after(1):
            if client.phase == HEAD:
                await reply(
                    self._metrics,
                    client.io,
                    408,
                    b"request head not received in time\n",
                    close=True,
                )
            elif client.phase == UPSTREAM and client.req is not None:
                await bad_gateway(self._metrics, client, client.req, False)

    async def _serve(self, client: Client) -> None:
        idle_s = self._idle_s
        io = client.io
        buf = io.buf
        limit = self._config.max_header_bytes
        lanes = self._lanes
        lane: Lane | None = None  # made when the connection first waits for a request
        while True:
            client.phase = IDLE
            client.arm(idle_s)
            try:
                if not buf and client.served and lanes is not None:
                    if lane is None:
                        lane = Lane(lanes, client)
                    if await lane.park() != NONE:
                        keep = await self._resume(client, lane)
                        if not keep:
                            return
                        continue
                if not buf and not await io.fill(wait=client.served):
                    return  # keep-alive connection closed (or idle, by the deadline)
                idx = buf.find(b"\r\n\r\n")
                if 0 < idx <= limit and buf[:2] != b"\r\n":
                    raw = bytes(buf[:idx])  # the whole head came in one read
                    del buf[: idx + 4]
                else:
                    got = await self._read_request_head(client)
                    if got is None:
                        return
                    raw = got
                client.now = trio.current_time()
                client.req = req = parse_request_head(raw)
                client.phase = LOCAL
                keep = await self._handle(client, req)
                client.served = True
            except BadRequest as exc:
                self._metrics.requests += 1
                client.arm(1.0)
                await reply(
                    self._metrics, client.io, exc.status, f"{exc.reason}\n".encode(), close=True
                )
                return
            if not keep:
                return

    def _is_trusted(self, peer_ip: str) -> bool:
        if not self._config.trusted_proxies:
            return False
        addr = ipaddress.ip_address(peer_ip)
        return any(addr in net for net in self._config.trusted_proxies)

    async def _read_request_head(self, client: Client) -> bytes | None:
        io = client.io
        buf = io.buf
        if not buf and not await io.fill(wait=client.served):
            return None  # keep-alive connection closed (or idle, by the deadline)
        client.phase = HEAD
        limit = self._config.max_header_bytes
        start = 0
        waited = False
        while True:
            while buf[:2] == b"\r\n":  # tolerated stray CRLF between requests
                del buf[:2]
            idx = buf.find(b"\r\n\r\n", start)
            if idx >= 0:
                if idx > limit:
                    raise BadRequest(431, "request head too large")
                head = bytes(buf[:idx])
                del buf[: idx + 4]
                if waited:
                    client.arm(self._idle_s)
                return head
            if len(buf) > limit:
                raise BadRequest(431, "request head too large")
            start = max(0, len(buf) - 3)
            if not waited:
                # The rest of the head must arrive within the header timeout (slow-loris).
                client.arm(self._config.header_timeout_s)
                waited = True
            if not await io.fill():
                if buf:
                    raise BadRequest(400, "connection closed inside the request head")
                return None

    async def _resume(self, client: Client, lane: Lane) -> bool:
        """Carry on with what the lane handed over (see ``Lane``); True keeps the connection."""
        state = lane.state
        req = lane.req
        conn = lane.conn
        unsent = lane.unsent
        route = lane.route
        upstream = lane.upstream
        out_head = lane.out_head
        reuse = lane.reuse
        lane.take()
        client.served = True
        if state == SENDING:
            assert conn is not None
            try:
                await client.io.send_all(unsent)
            except BaseException:
                conn.close()
                raise
            if reuse and not conn.buf:
                self._pool.release(conn, client.now)
            else:
                conn.close()
            return True
        assert req is not None
        assert route is not None
        if state == STAGED:
            return await self._forward(client, req, route, upstream)
        assert state == SENT
        assert conn is not None
        assert upstream is not None
        return await self._exchange(
            client, req, upstream, out_head, True, False, sent_on=conn, unsent=unsent
        )

    async def _handle(self, client: Client, req: RequestHead) -> bool:
        self._metrics.requests += 1
        route = route_request(req, self._base_domain)
        match = route.match
        local_keep = route.keep_alive and route.body_length == 0
        head_only = req.method == b"HEAD"
        if match.kind is not HostKind.PREVIEW:
            if match.kind is HostKind.FOREIGN and req.method in (b"GET", b"HEAD"):
                path = req.target.split(b"?", 1)[0]
                if path == b"/healthz":
                    return await local(self._metrics, client, 200, b"ok\n", local_keep, head_only)
                if path == b"/metrics":
                    body = self._metrics.render().encode()
                    ctype = b"text/plain; version=0.0.4; charset=utf-8"
                    return await local(
                        self._metrics, client, 200, body, local_keep, head_only, ctype
                    )
            return await local(self._metrics, client, 404, b"not found\n", local_keep, head_only)
        try:
            upstream = self._resolver.cached(match)
            if upstream is Miss.MISS:
                client.arm(self._config.resolver_timeout_s + 1)
                upstream = await self._resolver.resolve(match)
                client.arm(self._idle_s)
        except ResolverError as exc:
            log.warning("resolver failed for %s: %s", match.host, exc)
            return await local(
                self._metrics, client, 503, b"preview resolver unavailable\n", local_keep, head_only
            )
        return await self._forward(client, req, route, upstream)
