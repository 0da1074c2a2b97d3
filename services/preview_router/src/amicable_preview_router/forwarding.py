"""Upstream forwarding: one resolved request's exchange with the preview's dev server.

Borrow an upstream connection from the pool (or connect), send the rewritten head, relay
the request body, read the response head, relay the response body and give the connection
back to the pool when it is clean. A request without a body that meets a reused connection
closed under it is retried once on a fresh one. A ``101`` turns the client connection into a
two-way splice (``tunnel.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .bodies import RequestBody, relay_response_body
from .client import RELAY, UPSTREAM
from .errors import UpstreamProtocolError
from .http1 import (
    MAX_RESPONSE_HEAD,
    UNTIL_CLOSE,
    build_client_response,
    connection_tokens,
    is_websocket_upgrade,
    parse_response_head,
    response_body_length,
    upstream_request_tail,
)
from .replies import bad_gateway, local
from .tunnel import splice

if TYPE_CHECKING:
    from .client import Client
    from .config import RouterConfig
    from .http1 import RequestHead, ResponseHead
    from .metrics import Metrics
    from .pool import UpstreamConnection, UpstreamPool
    from .resolver import Upstream
    from .routing import Route
    from .transport import Poller


class _NoResponse(Exception):
    """The upstream closed before sending a single byte (retryable on a reused connection)."""


class Forwarder:
    """Sends resolved requests upstream and relays the answers, for one router.

    Args:
        config: the router configuration.
        pool: idle upstream connections.
        metrics: counters to update.
        poller: registers new upstream connections (as the server does client ones).
    """

    def __init__(
        self,
        config: RouterConfig,
        pool: UpstreamPool,
        metrics: Metrics,
        poller: Poller | None,
    ) -> None:
        self._config = config
        self._pool = pool
        self._metrics = metrics
        self._poller = poller
        self._proto = config.forwarded_proto.encode()
        self._idle_s = config.http_idle_timeout_s

    def upstream_head(self, client: Client, req: RequestHead, tokens: frozenset[bytes]) -> bytes:
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

    async def forward(
        self, client: Client, req: RequestHead, route: Route, upstream: Upstream | None
    ) -> bool:
        """Send a resolved request upstream and relay the answer (True keeps the client).

        ``upstream`` None (no such preview) is answered 404 here.

        Cancellation: the upstream connection in use is closed, never returned to the pool.
        """
        body_len = route.body_length
        tokens = route.tokens
        client_ka = route.keep_alive
        if upstream is None:
            local_keep = client_ka and body_len == 0
            head_only = req.method == b"HEAD"
            return await local(
                self._metrics, client, 404, b"no such preview\n", local_keep, head_only
            )
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
            out_head = self.upstream_head(client, req, tokens)
        client.phase = UPSTREAM
        if body_len == 0:
            return await self.exchange(client, req, upstream, out_head, client_ka, websocket)
        buf = client.io.buf
        if 0 < body_len <= len(buf):
            # The whole Content-Length body came with the head: one send, no relay task.
            # Not retried on a stale pooled connection (the upstream may have acted on it).
            out_head += buf[:body_len]
            del buf[:body_len]
            return await self.exchange(
                client, req, upstream, out_head, client_ka, False, retry=False
            )
        return await self._exchange_with_body(client, req, upstream, out_head, body_len, client_ka)

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

    async def exchange(
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

        ``sent_on``: the head already went to this connection except ``unsent``. Unless
        ``retry`` is False (a body went with the head), a request that meets a reused
        connection closed under it before any answer is sent again once on a fresh one.

        Cancellation: as :meth:`forward`.
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
                        return await bad_gateway(self._metrics, client, req, client_ka)
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
                    return await bad_gateway(self._metrics, client, req, client_ka)
                except UpstreamProtocolError:
                    return await bad_gateway(self._metrics, client, req, client_ka)
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
            return await bad_gateway(self._metrics, client, req, False)
        try:
            try:
                await conn.send_all(out_head)
            except trio.BrokenResourceError:
                return await bad_gateway(self._metrics, client, req, False)
            body = RequestBody(client, conn, body_len)
            keep = False
            async with trio.open_nursery() as nursery:
                nursery.start_soon(body.relay, self._idle_s, nursery.cancel_scope)
                try:
                    resp = await self._read_response_head(conn)
                except (_NoResponse, UpstreamProtocolError):
                    nursery.cancel_scope.cancel()
                    return await bad_gateway(self._metrics, client, req, False)
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
                await relay_response_body(client, conn, framing, head, self._idle_s)
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
