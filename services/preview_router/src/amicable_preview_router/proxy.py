"""The proxied path: one client connection, its requests, and their upstream exchanges.

Per request: read and strictly parse the head, classify ``Host``, resolve the preview, borrow
an upstream connection from the pool, send the rewritten head, relay the body bytes, read the
response head, relay the response body bytes (Content-Length, chunked or until-close) and
return the upstream connection to the pool when it is clean. A ``101`` turns the connection
into a two-way splice. No framework and no body buffering anywhere on this path.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

import trio

from .errors import BadRequest, ResolverError, RouterError, UpstreamProtocolError
from .http1 import (
    CHUNKED,
    UNTIL_CLOSE,
    ChunkedScanner,
    RequestHead,
    ResponseHead,
    build_client_response,
    build_upstream_request,
    connection_tokens,
    is_websocket_upgrade,
    parse_request_head,
    parse_response_head,
    request_body_length,
    response_body_length,
    simple_response,
)
from .pool import BufferedStream, UpstreamConnection
from .routing import HostKind, classify_host
from .tunnel import splice

if TYPE_CHECKING:
    from .config import RouterConfig
    from .metrics import Metrics
    from .pool import UpstreamPool
    from .resolver import Resolver, Upstream

log = logging.getLogger(__name__)

_RECV = 65536
_MAX_RESPONSE_HEAD = 64 * 1024
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


class _RequestBody:
    """Relays a request body from the client to the upstream (runs as its own task)."""

    def __init__(self, client: BufferedStream, conn: UpstreamConnection, length: int) -> None:
        self.client = client
        self.conn = conn
        self.length = length
        self.done = False

    async def relay(self, idle_s: float, on_failure: trio.CancelScope) -> None:
        try:
            if self.length == CHUNKED:
                await _relay_chunked(
                    self.client, self.conn.stream, idle_s, BadRequest(400, "bad chunk")
                )
            else:
                await _relay_exact(self.client, self.conn.stream, self.length, idle_s)
            self.done = True
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, RouterError):
            on_failure.cancel()


async def _relay_exact(
    src: BufferedStream, dst: trio.SocketStream, length: int, idle_s: float
) -> None:
    first = min(length, len(src.buf))
    if first:
        with trio.fail_after(idle_s):
            await dst.send_all(bytes(src.buf[:first]))
        del src.buf[:first]
    remaining = length - first
    while remaining:
        with trio.fail_after(idle_s):
            data = await src.stream.receive_some(min(remaining, _RECV))
        if not data:
            raise UpstreamProtocolError("body ended early")
        remaining -= len(data)
        with trio.fail_after(idle_s):
            await dst.send_all(data)


async def _relay_chunked(
    src: BufferedStream,
    dst: trio.SocketStream,
    idle_s: float,
    error: Exception,
    prefix: bytes = b"",
) -> None:
    scanner = ChunkedScanner()
    buf = src.buf
    while True:
        consumed, done = scanner.scan(buf, error)
        if consumed or prefix:
            with trio.fail_after(idle_s):
                await dst.send_all(prefix + buf[:consumed])
            del buf[:consumed]
            prefix = b""
        if done:
            return
        with trio.fail_after(idle_s):
            if not await src.fill():
                raise UpstreamProtocolError("chunked body ended early")


class Router:
    """Serves client connections (the ``serve_listeners`` handler); owns nothing but counters.

    Args:
        config: the router configuration.
        resolver: host -> upstream.
        pool: idle upstream connections.
        metrics: counters to update.
    """

    def __init__(
        self, config: RouterConfig, resolver: Resolver, pool: UpstreamPool, metrics: Metrics
    ) -> None:
        self._config = config
        self._resolver = resolver
        self._pool = pool
        self._metrics = metrics
        self._proto = config.forwarded_proto.encode()
        self._idle_s = config.http_idle_timeout_s

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        """Serve one client connection until either side closes it.

        Cancellation: the connection, its upstream connection and any tunnel close at once.
        """
        metrics = self._metrics
        try:
            if metrics.connections_open >= self._config.max_connections:
                metrics.connections_rejected += 1
                await self._reply(stream, 503, b"too many connections\n", close=True)
                return
            metrics.connections_open += 1
            try:
                await self._serve(stream)
            finally:
                metrics.connections_open -= 1
        except* (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.TooSlowError,
            OSError,
            RouterError,
        ):
            pass  # this client is done; the server goes on
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        client = BufferedStream(stream)
        peer_ip = str(stream.socket.getpeername()[0])
        trusted = self._is_trusted(peer_ip)
        while True:
            try:
                raw = await self._read_request_head(client)
                if raw is None:
                    return
                keep = await self._handle(client, parse_request_head(raw), peer_ip, trusted)
            except BadRequest as exc:
                self._metrics.requests += 1
                await self._reply(stream, exc.status, f"{exc.reason}\n".encode(), close=True)
                return
            if not keep:
                return

    def _is_trusted(self, peer_ip: str) -> bool:
        if not self._config.trusted_proxies:
            return False
        addr = ipaddress.ip_address(peer_ip)
        return any(addr in net for net in self._config.trusted_proxies)

    async def _read_request_head(self, client: BufferedStream) -> bytes | None:
        buf = client.buf
        if not buf:
            # Keep-alive wait: an idle client is dropped silently.
            with trio.move_on_after(self._idle_s):
                if not await client.fill():
                    return None
            if not buf:
                return None
        limit = self._config.max_header_bytes
        with trio.move_on_after(self._config.header_timeout_s):
            start = 0
            while True:
                while buf[:2] == b"\r\n":  # tolerated stray CRLF between requests
                    del buf[:2]
                idx = buf.find(b"\r\n\r\n", start)
                if idx >= 0:
                    if idx > limit:
                        raise BadRequest(431, "request head too large")
                    head = bytes(buf[:idx])
                    del buf[: idx + 4]
                    return head
                if len(buf) > limit:
                    raise BadRequest(431, "request head too large")
                start = max(0, len(buf) - 3)
                if not await client.fill():
                    if buf:
                        raise BadRequest(400, "connection closed inside the request head")
                    return None
        raise BadRequest(408, "request head not received in time")

    async def _handle(
        self, client: BufferedStream, req: RequestHead, peer_ip: str, trusted: bool
    ) -> bool:
        self._metrics.requests += 1
        hosts = req.values(b"host")
        if len(hosts) != 1:
            raise BadRequest(400, "exactly one Host header is required")
        match = classify_host(hosts[0], self._config.base_domain)
        body_len = request_body_length(req)
        tokens = connection_tokens(req)
        client_ka = req.version == b"HTTP/1.1" and b"close" not in tokens
        local_keep = client_ka and body_len == 0
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
            upstream = await self._resolver.resolve(match)
        except ResolverError as exc:
            log.warning("resolver failed for %s: %s", match.host, exc)
            return await self._local(
                client, 503, b"preview resolver unavailable\n", local_keep, head_only
            )
        if upstream is None:
            return await self._local(client, 404, b"no such preview\n", local_keep, head_only)
        websocket = is_websocket_upgrade(req, tokens)
        out_head = build_upstream_request(
            req,
            tokens,
            client_ip=peer_ip.encode(),
            proto=self._proto,
            trusted=trusted,
            websocket=websocket,
        )
        if body_len == 0:
            return await self._exchange(client, req, upstream, out_head, client_ka, websocket)
        return await self._exchange_with_body(client, req, upstream, out_head, body_len, client_ka)

    # --- upstream exchanges ----------------------------------------------------------------

    async def _exchange(
        self,
        client: BufferedStream,
        req: RequestHead,
        upstream: Upstream,
        out_head: bytes,
        client_ka: bool,
        websocket: bool,
    ) -> bool:
        for attempt in (0, 1):
            try:
                conn = await self._pool.acquire(upstream.key)
            except (OSError, trio.TooSlowError):
                return await self._bad_gateway(client, req, client_ka)
            try:
                try:
                    with trio.fail_after(self._idle_s):
                        await conn.stream.send_all(out_head)
                    resp = await self._read_response_head(conn)
                except (_NoResponse, trio.BrokenResourceError, trio.ClosedResourceError):
                    conn.close()
                    if conn.reused and attempt == 0:
                        continue  # the upstream closed an idle connection under us: retry once
                    return await self._bad_gateway(client, req, client_ka)
                except (trio.TooSlowError, UpstreamProtocolError):
                    return await self._bad_gateway(client, req, client_ka)
                return await self._respond(client, req, conn, resp, client_ka, websocket, None)
            finally:
                if not conn.pooled:
                    conn.close()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange_with_body(
        self,
        client: BufferedStream,
        req: RequestHead,
        upstream: Upstream,
        out_head: bytes,
        body_len: int,
        client_ka: bool,
    ) -> bool:
        try:
            conn = await self._pool.acquire(upstream.key)
        except (OSError, trio.TooSlowError):
            return await self._bad_gateway(client, req, False)
        try:
            try:
                with trio.fail_after(self._idle_s):
                    await conn.stream.send_all(out_head)
            except (trio.BrokenResourceError, trio.TooSlowError):
                return await self._bad_gateway(client, req, False)
            body = _RequestBody(client, conn, body_len)
            keep = False
            async with trio.open_nursery() as nursery:
                nursery.start_soon(body.relay, self._idle_s, nursery.cancel_scope)
                try:
                    resp = await self._read_response_head(conn)
                except (_NoResponse, trio.TooSlowError, UpstreamProtocolError):
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
        with trio.fail_after(self._idle_s):
            while True:
                idx = buf.find(b"\r\n\r\n", start)
                if idx >= 0:
                    break
                if len(buf) > _MAX_RESPONSE_HEAD:
                    raise UpstreamProtocolError("response head too large")
                start = max(0, len(buf) - 3)
                if not await conn.fill():
                    if buf:
                        raise UpstreamProtocolError("upstream closed inside the response head")
                    raise _NoResponse
        head = parse_response_head(bytes(buf[:idx]))
        del buf[: idx + 4]
        return head

    async def _respond(
        self,
        client: BufferedStream,
        req: RequestHead,
        conn: UpstreamConnection,
        resp: ResponseHead,
        client_ka: bool,
        websocket: bool,
        body: _RequestBody | None,
    ) -> bool:
        released = False
        try:
            while 100 <= resp.status < 200 and resp.status != 101:
                await self._send(client.stream, build_client_response(resp, close=False))
                resp = await self._read_response_head(conn)
            if resp.status == 101:
                if not websocket:
                    raise UpstreamProtocolError("unsolicited 101")
                self._metrics.response(101)
                await self._tunnel(client, conn, resp)
                return False
            framing = response_body_length(req.method, resp)
            upstream_ka = (
                framing != UNTIL_CLOSE
                and resp.version == b"HTTP/1.1"
                and req.version == b"HTTP/1.1"
                and b"close" not in connection_tokens(resp)
            )
            keep = client_ka and framing != UNTIL_CLOSE
            head = build_client_response(resp, close=not keep)
            self._metrics.response(resp.status)
            await self._relay_response_body(client.stream, conn, framing, head)
            if upstream_ka and (body is None or body.done) and not conn.buf:
                self._pool.release(conn)
                released = True
            return keep
        except (_NoResponse, UpstreamProtocolError, trio.TooSlowError) as exc:
            self._metrics.upstream_errors += 1
            raise UpstreamProtocolError(f"upstream failed mid-response: {exc!r}") from exc
        finally:
            if not released:
                conn.close()

    async def _relay_response_body(
        self, dst: trio.SocketStream, conn: UpstreamConnection, framing: int, head: bytes
    ) -> None:
        buf = conn.buf
        idle_s = self._idle_s
        if framing >= 0:
            first = min(framing, len(buf))
            await self._send(dst, head + buf[:first])
            del buf[:first]
            remaining = framing - first
            while remaining:
                with trio.fail_after(idle_s):
                    data = await conn.stream.receive_some(min(remaining, _RECV))
                if not data:
                    raise UpstreamProtocolError("response body ended early")
                remaining -= len(data)
                await self._send(dst, data)
        elif framing == CHUNKED:
            error = UpstreamProtocolError("malformed chunked response body")
            await _relay_chunked(conn, dst, idle_s, error, prefix=head)
        else:
            await self._send(dst, head + buf)
            buf.clear()
            while True:
                with trio.fail_after(idle_s):
                    data = await conn.stream.receive_some(_RECV)
                if not data:
                    return
                await self._send(dst, data)

    async def _tunnel(
        self, client: BufferedStream, conn: UpstreamConnection, resp: ResponseHead
    ) -> None:
        await self._send(
            client.stream, build_client_response(resp, close=False, upgrade=True) + conn.buf
        )
        conn.buf.clear()
        if client.buf:
            await self._send(conn.stream, bytes(client.buf))
            client.buf.clear()
        self._metrics.websockets_open += 1
        self._metrics.websockets_total += 1
        try:
            await splice(client.stream, conn.stream, idle_timeout_s=self._config.ws_idle_timeout_s)
        finally:
            self._metrics.websockets_open -= 1

    # --- local answers ---------------------------------------------------------------------

    async def _send(self, stream: trio.SocketStream, data: bytes | bytearray) -> None:
        with trio.fail_after(self._idle_s):
            await stream.send_all(data)

    async def _reply(
        self, stream: trio.SocketStream, status: int, body: bytes, *, close: bool
    ) -> None:
        self._metrics.response(status)
        await self._send(stream, simple_response(status, _REASONS[status], body, close=close))

    async def _local(
        self,
        client: BufferedStream,
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
        await self._send(client.stream, response)
        return keep

    async def _bad_gateway(self, client: BufferedStream, req: RequestHead, keep: bool) -> bool:
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
        await self._send(client.stream, response)
        return keep
