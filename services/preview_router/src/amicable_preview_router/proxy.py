"""The proxied path: one client connection, its requests, and their upstream exchanges.

Per request: read and strictly parse the head, classify ``Host``, resolve the preview, borrow
an upstream connection from the pool, send the rewritten head, relay the body bytes, read the
response head, relay the response body bytes (Content-Length, chunked or until-close) and
return the upstream connection to the pool when it is clean. A ``101`` turns the connection
into a two-way splice. No framework and no body buffering anywhere on this path.

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

from .client import HEAD, IDLE, LOCAL, RELAY, UPSTREAM, Client, RequestBody, relay_chunked
from .errors import BadRequest, ResolverError, RouterError, UpstreamProtocolError
from .http1 import (
    CHUNKED,
    UNTIL_CLOSE,
    RequestHead,
    ResponseHead,
    build_client_response,
    connection_tokens,
    is_websocket_upgrade,
    parse_request_head,
    parse_response_head,
    response_body_length,
    simple_response,
    upstream_request_tail,
)
from .lane import MAX_RESPONSE_HEAD, NONE, SENDING, SENT, STAGED, Lane, LaneRouter
from .resolver import Miss
from .routing import HostKind, route_request
from .tunnel import splice

if TYPE_CHECKING:
    from .config import RouterConfig
    from .metrics import Metrics
    from .pool import UpstreamConnection, UpstreamPool
    from .resolver import Resolver, Upstream
    from .routing import Route
    from .transport import Poller, Transport

log = logging.getLogger(__name__)

_RECV = 65536
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_STARTING_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Preview starting</title>
<style>body{font:16px system-ui,sans-serif;color:#444;display:grid;place-items:center;height:90vh}</style>
</head><body><div><h1>The preview is starting&hellip;</h1>
<p>The dev server is not answering yet (it may be starting or it is down).
This page retries by itself.</p></div></body></html>
"""
_PLAIN_502 = b"502 Bad Gateway: the preview's dev server is not reachable (starting or down)\n"


class _NoResponse(Exception):
    """The upstream closed before sending a single byte (retryable on a reused connection)."""


class Router:
    """Serves client connections (the ``serve_listeners`` handler); owns nothing but counters.

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
        self._poller = poller
        self._config = config
        self._resolver = resolver
        self._pool = pool
        self._metrics = metrics
        self._base_domain = config.base_domain
        self._proto = config.forwarded_proto.encode()
        self._idle_s = config.http_idle_timeout_s
        # Keep-alive requests served inside the poller (lane.py) need the poller's hooks.
        self._lanes: LaneRouter | None = None
        if poller is not None:
            self._lanes = LaneRouter(config, resolver, pool, metrics, self._upstream_head)

    async def handle_connection(self, stream: Transport) -> None:
        """Serve one client connection until either side closes it.

        Cancellation: the connection, its upstream connection and any tunnel close at once.
        """
        metrics = self._metrics
        try:
            if metrics.connections_open >= self._config.max_connections:
                metrics.connections_rejected += 1
                with trio.move_on_after(1):
                    await self._reply(stream, 503, b"too many connections\n", close=True)
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
                await self._reply(
                    client.io, 408, b"request head not received in time\n", close=True
                )
            elif client.phase == UPSTREAM and client.req is not None:
                await self._bad_gateway(client, client.req, False)

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
                await self._reply(client.io, exc.status, f"{exc.reason}\n".encode(), close=True)
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

    def _upstream_head(self, client: Client, req: RequestHead, tokens: frozenset[bytes]) -> bytes:
        """The head sent upstream for a request that is not a WebSocket upgrade."""
        fields = req.fields
        if fields is client.tail_fields:
            tail = client.tail
        else:
            tail = upstream_request_tail(
                req,
                tokens,
                client_ip=client.ip,
                proto=self._proto,
                trusted=client.trusted,
                websocket=False,
            )
            client.tail_fields = fields
            client.tail = tail
        return b"".join((req.method, b" ", req.target, b" ", req.version, tail))

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
                    return await self._local(client, 200, b"ok\n", local_keep, head_only)
                if path == b"/metrics":
                    body = self._metrics.render().encode()
                    ctype = b"text/plain; version=0.0.4; charset=utf-8"
                    return await self._local(client, 200, body, local_keep, head_only, ctype)
            return await self._local(client, 404, b"not found\n", local_keep, head_only)
        try:
            upstream = self._resolver.cached(match)
            if upstream is Miss.MISS:
                client.arm(self._config.resolver_timeout_s + 1)
                upstream = await self._resolver.resolve(match)
                client.arm(self._idle_s)
        except ResolverError as exc:
            log.warning("resolver failed for %s: %s", match.host, exc)
            return await self._local(
                client, 503, b"preview resolver unavailable\n", local_keep, head_only
            )
        return await self._forward(client, req, route, upstream)

    async def _forward(
        self, client: Client, req: RequestHead, route: Route, upstream: Upstream | None
    ) -> bool:
        """Send a resolved request upstream and relay the answer (True keeps the client)."""
        body_len = route.body_length
        tokens = route.tokens
        client_ka = route.keep_alive
        if upstream is None:
            local_keep = client_ka and body_len == 0
            head_only = req.method == b"HEAD"
            return await self._local(client, 404, b"no such preview\n", local_keep, head_only)
        websocket = b"upgrade" in tokens and is_websocket_upgrade(req, tokens)
        if websocket:
            tail = upstream_request_tail(
                req,
                tokens,
                client_ip=client.ip,
                proto=self._proto,
                trusted=client.trusted,
                websocket=True,
            )
            out_head = b"".join((req.method, b" ", req.target, b" ", req.version, tail))
        else:
            out_head = self._upstream_head(client, req, tokens)
        client.phase = UPSTREAM
        if body_len == 0:
            return await self._exchange(client, req, upstream, out_head, client_ka, websocket)
        buf = client.io.buf
        if 0 < body_len <= len(buf):
            # The whole Content-Length body came with the head: one send, no relay task.
            # Not retried on a stale pooled connection (the upstream may have acted on it).
            out_head += buf[:body_len]
            del buf[:body_len]
            return await self._exchange(
                client, req, upstream, out_head, client_ka, False, retry=False
            )
        return await self._exchange_with_body(client, req, upstream, out_head, body_len, client_ka)

    # --- upstream exchanges ----------------------------------------------------------------

    async def _acquire(self, key: tuple[str, int], now: float) -> UpstreamConnection | None:
        conn = self._pool.take_idle(key, now)
        if conn is not None:
            return conn
        try:
            conn = await self._pool.connect(key)
        except (OSError, trio.TooSlowError):
            return None
        if self._poller is not None:
            self._poller.register(conn)
        return conn

    async def _exchange(
        self,
        client: Client,
        req: RequestHead,
        upstream: Upstream,
        out_head: bytes,
        client_ka: bool,
        websocket: bool,
        *,
        retry: bool = True,
        sent_on: UpstreamConnection | None = None,
        unsent: bytes | memoryview = b"",
    ) -> bool:
        """Send ``out_head`` upstream and relay the answer (True keeps the client).

        ``sent_on``: the head already went to this connection except ``unsent``.
        """
        for attempt in (0, 1):
            conn = sent_on
            sent_on = None
            if conn is None:
                unsent = out_head
                conn = self._pool.take_idle(upstream.key, client.now)
                if conn is None:
                    conn = await self._acquire(upstream.key, client.now)
                    if conn is None:
                        return await self._bad_gateway(client, req, client_ka)
            try:
                try:
                    if unsent:
                        await conn.send_all(unsent)
                    # The answer cannot be there yet: wait for it, then parse it here when
                    # its head came in one read (the general reader is one await deeper).
                    buf = conn.buf
                    if not buf and not await conn.fill(wait=True):
                        raise _NoResponse
                    idx = buf.find(b"\r\n\r\n")
                    if 0 <= idx <= MAX_RESPONSE_HEAD:
                        resp = parse_response_head(bytes(buf[:idx]))
                        del buf[: idx + 4]
                    else:
                        resp = await self._read_response_head(conn)
                except (_NoResponse, trio.BrokenResourceError, trio.ClosedResourceError):
                    conn.close()
                    if conn.reused and attempt == 0 and retry:
                        continue  # the upstream closed an idle connection under us: retry once
                    return await self._bad_gateway(client, req, client_ka)
                except UpstreamProtocolError:
                    return await self._bad_gateway(client, req, client_ka)
                return await self._respond(client, req, conn, resp, client_ka, websocket, None)
            finally:
                if not conn.pooled:
                    conn.close()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange_with_body(
        self,
        client: Client,
        req: RequestHead,
        upstream: Upstream,
        out_head: bytes,
        body_len: int,
        client_ka: bool,
    ) -> bool:
        conn = await self._acquire(upstream.key, client.now)
        if conn is None:
            return await self._bad_gateway(client, req, False)
        try:
            try:
                await conn.send_all(out_head)
            except trio.BrokenResourceError:
                return await self._bad_gateway(client, req, False)
            body = RequestBody(client, conn, body_len)
            keep = False
            async with trio.open_nursery() as nursery:
                nursery.start_soon(body.relay, self._idle_s, nursery.cancel_scope)
                try:
                    resp = await self._read_response_head(conn)
                except (_NoResponse, UpstreamProtocolError):
                    nursery.cancel_scope.cancel()
                    return await self._bad_gateway(client, req, False)
                keep = await self._respond(client, req, conn, resp, client_ka, False, body)
                nursery.cancel_scope.cancel()  # an unfinished body is abandoned
            return keep and body.done
        finally:
            if not conn.pooled:
                conn.close()

    async def _read_response_head(self, conn: UpstreamConnection) -> ResponseHead:
        buf = conn.buf
        start = 0
        # Right after a request was sent its answer cannot be there yet: wait for it rather
        # than pay for a recv that fails (a raised BlockingIOError) first.
        wait = not buf
        while True:
            idx = buf.find(b"\r\n\r\n", start)
            if idx >= 0:
                break
            if len(buf) > MAX_RESPONSE_HEAD:
                raise UpstreamProtocolError("response head too large")
            start = max(0, len(buf) - 3)
            if not await conn.fill(wait=wait):
                if buf:
                    raise UpstreamProtocolError("upstream closed inside the response head")
                raise _NoResponse
        head = parse_response_head(bytes(buf[:idx]))
        del buf[: idx + 4]
        return head

    async def _respond(
        self,
        client: Client,
        req: RequestHead,
        conn: UpstreamConnection,
        resp: ResponseHead,
        client_ka: bool,
        websocket: bool,
        body: RequestBody | None,
    ) -> bool:
        released = False
        stream = client.io
        try:
            while 100 <= resp.status < 200 and resp.status != 101:
                await stream.send_all(build_client_response(resp, close=False))
                client.arm(self._idle_s)
                resp = await self._read_response_head(conn)
            client.phase = RELAY
            if resp.status == 101:
                if not websocket:
                    raise UpstreamProtocolError("unsolicited 101")
                self._metrics.response(101)
                await self._tunnel(client, conn, resp)
                return False
            framing = response_body_length(req.method, resp)
            tokens = connection_tokens(resp)
            upstream_ka = (
                framing != UNTIL_CLOSE
                and resp.version == b"HTTP/1.1"
                and req.version == b"HTTP/1.1"
                and b"close" not in tokens
            )
            keep = client_ka and framing != UNTIL_CLOSE
            head = build_client_response(resp, close=not keep, tokens=tokens)
            self._metrics.responses[resp.status // 100] += 1  # the status line allows 1xx-5xx
            buf = conn.buf
            if framing == len(buf):  # the whole body came with the head: one send
                await stream.send_all(head + buf)
                buf.clear()
            else:
                await self._relay_response_body(client, conn, framing, head)
            if upstream_ka and (body is None or body.done) and not conn.buf:
                self._pool.release(conn, client.now)
                released = True
            return keep
        except (_NoResponse, UpstreamProtocolError) as exc:
            self._metrics.upstream_errors += 1
            raise UpstreamProtocolError(f"upstream failed mid-response: {exc!r}") from exc
        finally:
            if not released:
                conn.close()

    async def _relay_response_body(
        self, client: Client, conn: UpstreamConnection, framing: int, head: bytes
    ) -> None:
        buf = conn.buf
        dst = client.io
        idle_s = self._idle_s
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

    async def _tunnel(self, client: Client, conn: UpstreamConnection, resp: ResponseHead) -> None:
        client.arm(self._idle_s)
        head = build_client_response(resp, close=False, upgrade=True)
        await client.io.send_all(head + conn.buf)
        conn.buf.clear()
        if client.io.buf:
            await conn.send_all(bytes(client.io.buf))
            client.io.buf.clear()
        client.disarm()  # the splice keeps its own (WebSocket) idle deadline
        self._metrics.websockets_open += 1
        self._metrics.websockets_total += 1
        try:
            await splice(client.io, conn, idle_timeout_s=self._config.ws_idle_timeout_s)
        finally:
            self._metrics.websockets_open -= 1

    # --- local answers ---------------------------------------------------------------------

    async def _reply(self, stream: Transport, status: int, body: bytes, *, close: bool) -> None:
        self._metrics.response(status)
        await stream.send_all(simple_response(status, _REASONS[status], body, close=close))

    async def _local(
        self,
        client: Client,
        status: int,
        body: bytes,
        keep: bool,
        head_only: bool,
        content_type: bytes = b"text/plain; charset=utf-8",
    ) -> bool:
        self._metrics.response(status)
        response = simple_response(
            status,
            _REASONS[status],
            body,
            content_type=content_type,
            close=not keep,
            head_only=head_only,
        )
        await client.io.send_all(response)
        return keep

    async def _bad_gateway(self, client: Client, req: RequestHead, keep: bool) -> bool:
        self._metrics.upstream_errors += 1
        html = any(b"text/html" in v for v in req.values(b"accept"))
        self._metrics.response(502)
        response = simple_response(
            502,
            "Bad Gateway",
            _STARTING_PAGE if html else _PLAIN_502,
            content_type=b"text/html; charset=utf-8" if html else b"text/plain; charset=utf-8",
            close=not keep,
            head_only=req.method == b"HEAD",
            extra=b"Retry-After: 2\r\n",
        )
        client.phase = LOCAL
        await client.io.send_all(response)
        return keep
