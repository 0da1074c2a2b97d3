"""A lean HTTP/1.1 transport on raw Trio streams for the Anthropic SDK's ``httpx2`` client.

The SDK still builds and sends every request (auth headers, base URL, timeouts, status
errors as ``anthropic.APIStatusError``); only the bytes on the wire go through
:class:`LeanTransport` instead of httpcore + h11. A streamed Messages response is tens of
small chunked writes per second per session, and the generic stack spends more CPU per chunk
than parsing the event itself. Here a chunk costs one ``receive_some`` and a few slices.

The agent's sandbox runtime client (:mod:`amicable_agent.sandboxes.runtime_client`) sends through it
too: it writes its own request heads and reads whole answers with :meth:`LeanTransport.fetch`.

Scope: HTTP/1.1 over TCP or TLS (ALPN ``http/1.1``), keep-alive pooling per origin,
``Content-Length`` / chunked / read-until-close bodies, ``identity`` encoding only (the
transport asks for it). Proxies are not handled here: ``httpx2`` mounts its own proxy
transport for URLs that an environment proxy covers, so those requests never reach this one.
Errors are ``httpx2`` transport errors (``ConnectError``, ``ReadTimeout``,
``RemoteProtocolError`` …), which the SDK maps to ``APIConnectionError`` /
``APITimeoutError`` and :mod:`amicable_agent.loop.llm` retries.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import httpx2
import trio

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable

_MAX_HEAD = 64 * 1024
#: Methods :meth:`LeanTransport.fetch` may send again after a broken reused connection.
_IDEMPOTENT = frozenset((b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS"))
_RECEIVE = 64 * 1024
_MAX_IDLE_PER_ORIGIN = 100  # the SDK's default keep-alive limit
_Origin = tuple[bytes, bytes, int]
#: ``response.extensions`` key of the :class:`LeanResponseStream` of a response.
BODY = "amicable_lean_body"


class _BodyTooLarge(httpx2.RemoteProtocolError):
    """A response body is larger than the caller accepts (:meth:`LeanTransport.fetch`)."""


class _Connection:
    """One HTTP/1.1 connection; ``buffer`` holds bytes read past the previous message."""

    __slots__ = ("buffer", "origin", "receive", "reused", "stream")

    def __init__(self, origin: _Origin, stream: trio.abc.Stream) -> None:
        self.origin = origin
        self.stream = stream
        self.buffer = b""
        self.reused = False
        # Plain TCP reads the trio socket directly: SocketStream.receive_some adds a
        # generator context manager and a conflict check per call (errors are OSError).
        self.receive: Callable[[int], Awaitable[bytes | bytearray]] = (
            stream.socket.recv if isinstance(stream, trio.SocketStream) else stream.receive_some
        )


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType:
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    assert isinstance(transport, trio.SocketStream)
    return transport.socket


def _discard(conn: _Connection) -> None:
    """Close a pooled connection at once (no TLS close_notify: it is already dead)."""
    _socket_of(conn.stream).close()


def _timeouts(request: httpx2.Request) -> tuple[float, float, float]:
    raw = request.extensions.get("timeout") or {}
    inf = float("inf")

    def get(key: str) -> float:
        value = raw.get(key)
        return inf if value is None else float(value)

    return get("connect"), get("read"), get("write")


class LeanTransport(httpx2.AsyncBaseTransport):
    """An ``httpx2`` transport for plain HTTP/1.1 request/response traffic on Trio.

    Args:
        ssl_context: for ``https`` origins; defaults to ``httpx2``'s default context.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._idle: defaultdict[_Origin, list[_Connection]] = defaultdict(list)
        self._closed = False

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            ctx = httpx2.create_ssl_context()
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl_context = ctx
        return self._ssl_context

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` and return the response with its body still streaming."""
        if self._closed:
            raise httpx2.ConnectError("the transport is closed", request=request)
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx2.UnsupportedProtocol(f"unsupported scheme {scheme!r}", request=request)
        port = url.port or (443 if scheme == b"https" else 80)
        origin: _Origin = (scheme, url.raw_host, port)
        connect_s, read_s, write_s = _timeouts(request)
        head = self._head(request)
        body = await request.aread()
        conn, status, reason, headers = await self._exchange(
            origin, head, body, (connect_s, read_s, write_s), request
        )
        stream = LeanResponseStream(self, conn, request, headers, read_s)
        return httpx2.Response(
            status_code=status,
            headers=headers,
            stream=stream,
            # httpx2 wraps ``stream``; the extension lets a reader iterate it directly.
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason, BODY: stream},
        )

    async def fetch(
        self,
        origin: tuple[bytes, bytes, int],
        head: bytes,
        body: bytes,
        *,
        max_body: int | None = None,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send a prebuilt request and read the whole response: (status, headers, body).

        With ``max_body``, a response declaring or sending more raises
        :class:`_BodyTooLarge` (the connection is closed): the peer may be a compromised
        sandbox, and the body is held in memory.

        ``origin`` is ``(b"http" | b"https", host, port)``; ``head`` is the complete request
        head (request line, ``Host``, ``Content-Length`` …, ending in an empty line). No
        timeouts here: the caller owns the deadline (cancelling closes the connection).
        Errors are the same ``httpx2`` transport errors as :meth:`handle_async_request`'s.
        A request that is not idempotent (``POST``, e.g. an exec) is never sent twice: if a
        reused connection breaks after the request went out, the error is raised.
        """
        if self._closed:
            raise httpx2.ConnectError("the transport is closed")
        inf = float("inf")
        resend = head.split(b" ", 1)[0] in _IDEMPOTENT
        conn, status, _, headers = await self._exchange(
            origin, head, body, (inf, inf, inf), None, resend_after_send=resend
        )
        stream = LeanResponseStream(self, conn, None, headers, inf, is_head=head[:5] == b"HEAD ")
        parts: list[bytes] = []
        size = 0
        try:
            if max_body is not None and (stream.declared_length or 0) > max_body:
                raise _BodyTooLarge(f"the response declares more than {max_body} bytes")
            async for piece in stream:
                size += len(piece)
                if max_body is not None and size > max_body:
                    raise _BodyTooLarge(f"the response is larger than {max_body} bytes")
                parts.append(piece)
        except BaseException:
            await stream.aclose()
            raise
        return status, headers, parts[0] if len(parts) == 1 else b"".join(parts)

    async def _exchange(
        self,
        origin: _Origin,
        head: bytes,
        body: bytes,
        timeouts: tuple[float, float, float],
        request: httpx2.Request | None,
        *,
        resend_after_send: bool = True,
    ) -> tuple[_Connection, int, bytes, list[tuple[bytes, bytes]]]:
        """Send head + body on a pooled (or new) connection and read the response head.

        A pooled connection the server had closed is replaced and the request sent again —
        after a failed *read* only if ``resend_after_send`` (the server may have acted on it).
        """
        connect_s, read_s, write_s = timeouts
        while True:
            conn = self._take_idle(origin)
            fresh = conn is None
            if conn is None:
                conn = await self._connect(origin, connect_s, request)
            sent = False
            try:
                with trio.fail_after(write_s):
                    await conn.stream.send_all(head + body if len(body) < 65536 else head)
                    if len(body) >= 65536:
                        await conn.stream.send_all(body)
                sent = True
                status, reason, headers = await self._read_head(conn, read_s, request)
            except (trio.BrokenResourceError, trio.ClosedResourceError, httpx2.ReadError) as exc:
                await trio.aclose_forcefully(conn.stream)
                retry = not fresh and not isinstance(exc, httpx2.ReadTimeout)
                if retry and (resend_after_send or not sent):
                    continue  # a pooled connection the server had closed: try a new one
                if isinstance(exc, httpx2.HTTPError):
                    raise
                raise httpx2.WriteError(str(exc) or "connection lost", request=request) from exc
            except trio.TooSlowError as exc:
                await trio.aclose_forcefully(conn.stream)
                raise httpx2.WriteTimeout("timed out sending the request", request=request) from exc
            except BaseException:
                await trio.aclose_forcefully(conn.stream)
                raise
            return conn, status, reason, headers

    @staticmethod
    def _head(request: httpx2.Request) -> bytes:
        target = request.url.raw_path
        lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
        has_host = False
        for name, value in request.headers.raw:
            lower = name.lower()
            if lower == b"host":
                has_host = True
            elif lower == b"accept-encoding":
                continue  # bodies are read as they arrive: no content codings
            lines.append(name + b": " + value)
        if not has_host:
            lines.insert(1, b"Host: " + request.url.netloc)
        lines.append(b"Accept-Encoding: identity")
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            # An idle connection that is readable was closed by the server (or sent
            # something unasked): never send a request on it.
            if conn.buffer or _socket_of(conn.stream).is_readable():
                _discard(conn)
                continue
            conn.reused = True
            return conn
        return None

    async def _connect(
        self, origin: _Origin, timeout_s: float, request: httpx2.Request | None
    ) -> _Connection:
        scheme, host, port = origin
        hostname = host.decode("ascii")
        try:
            with trio.fail_after(timeout_s):
                tcp = await trio.open_tcp_stream(hostname, port)
                tcp.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
                tcp.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_KEEPALIVE, 1)
                stream: trio.abc.Stream = tcp
                if scheme == b"https":
                    tls = trio.SSLStream(tcp, self._ssl(), server_hostname=hostname)
                    try:
                        await tls.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(tcp)
                        raise
                    stream = tls
        except trio.TooSlowError as exc:
            raise httpx2.ConnectTimeout(
                f"connecting to {hostname}:{port} timed out", request=request
            ) from exc
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpx2.ConnectError(
                f"cannot connect to {hostname}:{port}: {exc}", request=request
            ) from exc
        return _Connection(origin, stream)

    async def _receive(
        self, conn: _Connection, timeout_s: float, request: httpx2.Request | None
    ) -> bytes:
        # A bare CancelScope: ``fail_after`` is a generator context manager, and this runs
        # once per streamed chunk.
        scope = trio.CancelScope(deadline=trio.current_time() + timeout_s)
        try:
            with scope:
                return bytes(await conn.receive(_RECEIVE))  # no copy for bytes
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx2.ReadError(str(exc) or "connection lost", request=request) from exc
        raise httpx2.ReadTimeout("timed out reading the response", request=request)

    async def _read_head(
        self, conn: _Connection, timeout_s: float, request: httpx2.Request | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        data = conn.buffer
        while True:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > _MAX_HEAD:
                    raise httpx2.RemoteProtocolError("response head too large", request=request)
                chunk = await self._receive(conn, timeout_s, request)
                if not chunk:
                    raise httpx2.ReadError("server closed the connection", request=request)
                data += chunk
                continue
            head, data = data[:end], data[end + 4 :]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise httpx2.RemoteProtocolError("malformed status line", request=request)
            status = int(parts[1])
            if 100 <= status < 200:  # informational (100 Continue): the real answer follows
                continue
            headers = []
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep:
                    raise httpx2.RemoteProtocolError("malformed header line", request=request)
                headers.append((name.strip(), value.strip()))
            conn.buffer = data
            return status, parts[2] if len(parts) > 2 else b"", headers

    def _release(self, conn: _Connection) -> bool:
        """Pool ``conn`` for the next request; False if it must be closed instead."""
        idle = self._idle[conn.origin]
        if self._closed or len(idle) >= _MAX_IDLE_PER_ORIGIN:
            return False
        idle.append(conn)
        return True

    async def aclose(self) -> None:
        """Close every pooled connection."""
        self._closed = True
        idle = [c for conns in self._idle.values() for c in conns]
        self._idle.clear()
        for conn in idle:
            await trio.aclose_forcefully(conn.stream)


class LeanResponseStream(httpx2.AsyncByteStream):
    """A response body from :class:`LeanTransport`: yields the payload bytes as they arrive
    (chunked framing removed). :mod:`amicable_agent.loop.llm` iterates it directly.

    It is its own iterator (no async generator to finalise when a reader stops early);
    :meth:`aclose` closes a connection whose body was not read to the end.
    """

    def __init__(
        self,
        transport: LeanTransport,
        conn: _Connection,
        request: httpx2.Request | None,
        headers: list[tuple[bytes, bytes]],
        read_s: float,
        *,
        is_head: bool = False,
    ) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        self._request = request
        self._read_s = read_s
        self._length: int | None = None
        self._chunked = False
        self._keep_alive = True
        for name, value in headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                self._chunked = b"chunked" in value.lower()
            elif lower == b"content-length" and value.isdigit():
                self._length = int(value)
            elif lower == b"connection" and b"close" in value.lower():
                self._keep_alive = False
        if is_head or (request is not None and request.method == "HEAD"):
            self._length = 0
        if not self._chunked and self._length is None:
            self._keep_alive = False  # the body ends when the server closes
        self._buf, conn.buffer = conn.buffer, b""
        self._sized = self._length is not None
        # Bytes left of the current chunk, or of a sized body.
        self._remaining = self._length or 0
        self._need_crlf = False  # a chunk's data was read; its CRLF was not
        self._done = False

    @property
    def declared_length(self) -> int | None:
        """The ``Content-Length`` of the body, if it has one."""
        return self._length

    def __aiter__(self) -> LeanResponseStream:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        if not self._done:
            if self._chunked:
                piece = await self._next_chunked(conn)
            elif self._sized:
                piece = await self._next_sized(conn)
            else:
                piece = await self._next_until_close(conn)
            if piece:
                return piece
        self._conn = None
        if self._keep_alive:
            conn.buffer, self._buf = self._buf, b""
            if self._transport._release(conn):
                raise StopAsyncIteration
        await trio.aclose_forcefully(conn.stream)
        raise StopAsyncIteration

    async def _more(self, conn: _Connection) -> bytes:
        chunk = await self._transport._receive(conn, self._read_s, self._request)
        if not chunk:
            raise httpx2.RemoteProtocolError(
                "the server closed the connection mid-response", request=self._request
            )
        return chunk

    async def _next_sized(self, conn: _Connection) -> bytes:
        if not self._remaining:
            self._done = True
            return b""
        data = self._buf or await self._more(conn)
        piece, self._buf = data[: self._remaining], data[self._remaining :]
        self._remaining -= len(piece)
        if not self._remaining:
            self._done = True
        return piece

    async def _next_until_close(self, conn: _Connection) -> bytes:
        data, self._buf = self._buf, b""
        if not data:
            data = await self._transport._receive(conn, self._read_s, self._request)
        if not data:
            self._done = True
        return data

    async def _next_chunked(self, conn: _Connection) -> bytes:
        # Returns what has arrived before waiting for more; in the common case (one chunk
        # per receive) that is a find and two slices per chunk.
        out: list[bytes] = []
        data = self._buf
        while True:
            if self._remaining:
                if not data:
                    if out:
                        break
                    data = await self._more(conn)
                    continue
                piece = data[: self._remaining]
                data = data[len(piece) :]
                self._remaining -= len(piece)
                out.append(piece)
                self._need_crlf = not self._remaining
                continue
            if self._need_crlf:
                if len(data) < 2:
                    if out:
                        break
                    data += await self._more(conn)
                    continue
                if data[:2] != b"\r\n":
                    raise httpx2.RemoteProtocolError("malformed chunk", request=self._request)
                data = data[2:]
                self._need_crlf = False
                continue
            end = data.find(b"\r\n")
            if end < 0:
                if out:
                    break
                if len(data) > 1024:
                    raise httpx2.RemoteProtocolError("malformed chunk size", request=self._request)
                data += await self._more(conn)
                continue
            try:
                size = int(data[:end].split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise httpx2.RemoteProtocolError(
                    "malformed chunk size", request=self._request
                ) from None
            if size == 0:  # the last chunk: skip trailers up to the empty line
                stop = data.find(b"\r\n\r\n", end)
                if stop < 0:
                    if out:
                        break
                    if len(data) > _MAX_HEAD:
                        raise httpx2.RemoteProtocolError(
                            "trailers too large", request=self._request
                        )
                    data += await self._more(conn)
                    continue
                data = data[stop + 4 :]
                self._done = True
                break
            data = data[end + 2 :]
            self._remaining = size
        self._buf = data
        return out[0] if len(out) == 1 else b"".join(out)

    async def aclose(self) -> None:
        """Abandon the body: the connection is closed (the server stops sending)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await trio.aclose_forcefully(conn.stream)
