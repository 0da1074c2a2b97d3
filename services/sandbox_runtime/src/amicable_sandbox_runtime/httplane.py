"""A raw HTTP/1.1 lane for the fast routes, in front of hypercorn on each connection.

hypercorn's path for one small response (h11's state machine, ASGI event dicts, an idle
timer restarted per request, head and body as two ``sendto``) costs as much as the work
behind ``POST /v1/exec {"command": "true"}``. :class:`HttpLane` reads request heads straight
from the socket and answers the plain requests for the routes of ``fastpath.py`` itself,
through the same :class:`~amicable_sandbox_runtime.fastpath.FastRoutes` logic (auth, limits,
status codes, bodies) the ASGI route uses, with head and body in one ``send``; then it reads
the next request on the same connection (bytes already read are kept).

Only requests it fully understands are answered here: HTTP/1.0 or 1.1, a path of the route
table (any method but ``DELETE /v1/files/...``; ``HEAD`` gets the status and headers of the
``GET`` answer, without its body), a well-formed head with CRLF line ends (checked with h11's
grammar), one ``Host`` (1.1), at most one plain ``Content-Length`` and no
``Transfer-Encoding``, ``Expect``, ``Upgrade`` or ``Connection: upgrade``; and a body only
for the routes that take one. At the first request that is not such a request (another
route, a WebSocket, a chunked body, a malformed or oversized head, a partial head at EOF)
:meth:`HttpLane.serve` returns everything read from that request on, and the caller hands
the connection to hypercorn with those bytes replayed first, so hypercorn answers it (400,
431, …) exactly as it would have.

Behaviour kept from hypercorn/the ASGI route: idle keep-alive timeout (closed without a
response), ``keep_alive_max_requests``, ``Connection: close`` and HTTP/1.0 (answered, then
closed, ``connection: close`` in the response), 413 from ``Content-Length`` before reading
the body, 408 for a body that stalls, 401 before anything else, a client that leaves during
a running exec gets its process group killed (the socket is watched for EOF, as hypercorn's
``http.disconnect``). A response sent before its request body was read (401, 413) closes
the connection, after lingering briefly so the client can read it.
"""

from __future__ import annotations

import re
import socket
import time
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import unquote
from wsgiref.handlers import format_date_time

import trio

from . import fastpath

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

    from .fastpath import FastRoutes, Headers, Reply, Route

_RECV = 64 * 1024
#: Responses with bodies up to this size go out with their head in one ``send``.
_ONE_SEND = 256 * 1024
#: After an early answer (the request body unread), how long the client may keep sending.
_LINGER_S = 1.0
_LINGER_BYTES = 4 * 1024 * 1024
# h11's grammar (h11._abnf): token, request-target = 1*VCHAR, field-value
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.([01])")
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*")
_BLANK_LINE = re.compile(rb"\n\r?\n")
#: Request headers that send the request to hypercorn.
_HAND_OVER = frozenset((b"transfer-encoding", b"expect", b"upgrade"))


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")


_STATUS_LINES = {status.value: _status_line(status.value) for status in HTTPStatus}


class _Request:
    """A parsed request head the lane answers."""

    __slots__ = ("close", "headers", "length", "method", "path", "route")

    def __init__(
        self, route: Route, method: str, path: str, headers: Headers, length: int, close: bool
    ) -> None:
        self.route = route
        self.method = method
        self.path = path
        self.headers = headers
        self.length = length
        self.close = close


class _Connection:
    """One client socket and the bytes read from it that no request has consumed yet."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    async def recv(self) -> bytes:
        """The next bytes from the client; ``b""`` at EOF or when the connection broke."""
        if self.eof:
            await trio.lowlevel.checkpoint()
            return b""
        try:
            data = await self.sock.recv(_RECV)
        except OSError:
            data = b""
        if not data:
            self.eof = True
        return data

    async def send(self, data: bytes) -> bool:
        """Send all of ``data``; False when the connection broke."""
        try:
            sent = await self.sock.send(data)
            if sent < len(data):
                view = memoryview(data)
                while sent < len(data):
                    sent += await self.sock.send(view[sent:])
        except OSError:
            return False
        return True

    async def until_gone(self) -> None:
        """Return when the client closes its side (for a running exec); bytes that arrive
        meanwhile (a pipelined request) are kept, up to a bound, then no longer read."""
        while len(self.buf) <= 2 * _RECV:
            data = await self.recv()
            if not data:
                return
            self.buf += data
        await trio.sleep_forever()

    async def linger(self) -> None:
        """Half-close, then read and drop what the client still sends, briefly, so that
        closing with unread bytes does not reset the connection under the response."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        dropped = len(self.buf)
        self.buf = b""
        with trio.move_on_after(_LINGER_S):
            while dropped < _LINGER_BYTES:
                data = await self.recv()
                if not data:
                    return
                dropped += len(data)


class HttpLane:
    """Answers fast-route requests on raw connections; hands the rest to hypercorn.

    Args:
        fast: the route logic shared with the ASGI app.
        config: hypercorn's config (head size limit, keep-alive timeout and request limit,
            ``date``/``server`` headers), so both paths behave alike.
    """

    def __init__(self, fast: FastRoutes, config: HypercornConfig) -> None:
        self.fast = fast
        self.max_head = int(config.h11_max_incomplete_size)
        self.keep_alive_s = float(config.keep_alive_timeout)
        self.max_requests = int(config.keep_alive_max_requests)
        self._date = bool(config.include_date_header)
        self._server = b"server: hypercorn-h11\r\n" if config.include_server_header else b""
        self._date_cache = (0, b"")

    async def serve(self, stream: trio.SocketStream) -> bytes | None:
        """Answer requests on ``stream`` while they are for the lane.

        Returns the bytes read from the first request it does not answer on (for hypercorn
        to replay), or ``None`` when the connection is finished (the caller closes it).
        """
        conn = _Connection(stream.socket)
        served = 0
        while True:
            end = -1
            scanned = 0  # the blank line is not before this (a head sent bytewise stays linear)
            with trio.move_on_after(self.keep_alive_s):
                while True:
                    found = _BLANK_LINE.search(conn.buf, scanned)
                    if found is not None:
                        end = found.start()
                        break
                    if len(conn.buf) > self.max_head:
                        return conn.buf  # hypercorn answers 431
                    scanned = max(0, len(conn.buf) - 2)
                    data = await conn.recv()
                    if not data:
                        return conn.buf or None  # a partial head: hypercorn's 400
                    conn.buf += data
            if end < 0:
                return None  # idle past the keep-alive timeout: closed without a response
            if end > self.max_head:
                return conn.buf
            request = self._parse(conn.buf, end)
            if request is None:
                return conn.buf
            served += 1
            if served >= self.max_requests:
                request.close = True
            if not await self._answer(conn, request, end + 3):
                return None

    def _parse(self, buf: bytes, end: int) -> _Request | None:
        """The request whose head ends at ``end`` (the blank line's LF), if the lane takes it."""
        if end < 1 or buf[end - 1] != 13 or buf[end + 1] != 13:  # bare LF line ends
            return None
        lines = buf[: end - 1].split(b"\r\n")
        first = _REQUEST_LINE.fullmatch(lines[0])
        if first is None:
            return None
        method = first[1].decode("ascii")
        raw_path = first[2].split(b"?", 1)[0]
        path = unquote(raw_path.decode("ascii"))  # as hypercorn builds the ASGI scope path
        route = self.fast.route(method, path)
        if route is None:
            return None
        http10 = first[3] == b"0"
        close = http10  # h11 keeps no HTTP/1.0 connection alive
        length: int | None = None
        hosts = 0
        headers: Headers = []
        for line in lines[1:]:
            field = _FIELD.fullmatch(line)
            if field is None:
                return None
            name = field[1].lower()
            value = field[2]
            if name == b"content-length":
                if length is not None or not value.isdigit():
                    return None
                length = int(value)
            elif name == b"host":
                hosts += 1
            elif name == b"connection":
                tokens = [t.strip() for t in value.lower().split(b",")]
                if b"upgrade" in tokens:
                    return None
                if b"close" in tokens:
                    close = True
            elif name in _HAND_OVER:
                return None
            headers.append((name, value))
        if hosts > 1 or (hosts == 0 and not http10):
            return None  # HTTP/1.1 requires exactly one Host (h11 answers 400)
        if length and not route.body:
            return None  # a body the route would not read: hypercorn keeps the framing
        return _Request(route, method, path, headers, length or 0, close)

    async def _answer(self, conn: _Connection, request: _Request, start: int) -> bool:
        """Answer the request whose body starts at ``conn.buf[start:]``; whether the
        connection stays open for the next one."""
        fast = self.fast
        route = request.route
        need = request.length
        buf = conn.buf
        head = request.method == "HEAD"
        early = fast.precheck(route, request.headers, need)
        if early is not None:
            if len(buf) - start >= need:  # the whole (small) body is here: drop it
                conn.buf = buf[start + need :]
                return await self._reply(conn, early, request.close, head) and not request.close
            conn.buf = buf[start:]
            if await self._reply(conn, early, True, head):
                await conn.linger()
            return False
        if len(buf) - start >= need:
            body = buf[start : start + need]
            conn.buf = buf[start + need :]
        else:
            parts = bytearray(buf[start:])
            conn.buf = b""
            with trio.move_on_after(fastpath.BODY_TIMEOUT_S):
                while len(parts) < need:
                    data = await conn.recv()
                    if not data:
                        return False  # the client left mid-body: nobody to answer
                    parts += data
            if len(parts) < need:
                await self._reply(conn, fastpath.BODY_TIMEOUT_REPLY, True, head)
                return False
            body = bytes(parts[:need])
            conn.buf = bytes(parts[need:])
        reply = await fast.answer(
            route, request.method, request.path, request.headers, body, conn.until_gone
        )
        if reply is None:
            return False  # the client left during the exec (its group was killed)
        return await self._reply(conn, reply, request.close, head) and not request.close

    async def _reply(self, conn: _Connection, reply: Reply, close: bool, head: bool) -> bool:
        """Write ``reply`` (one ``send`` when it fits; only status and headers for ``head``, a
        ``HEAD`` request); False when the connection broke."""
        body = reply.body
        parts = [
            _STATUS_LINES.get(reply.status) or _status_line(reply.status),
            b"content-type: ",
            reply.content_type,
            b"\r\ncontent-length: ",
            str(len(body)).encode("ascii"),
            b"\r\n",
        ]
        for name, value in reply.extra:
            parts += (name, b": ", value, b"\r\n")
        if self._date:
            parts.append(self._date_line())
        parts.append(self._server)
        if close:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if head:
            return await conn.send(b"".join(parts))
        if len(body) <= _ONE_SEND:
            parts.append(body)
            return await conn.send(b"".join(parts))
        return await conn.send(b"".join(parts)) and await conn.send(body)

    def _date_line(self) -> bytes:
        now = int(time.time())
        second, line = self._date_cache
        if second != now:
            line = b"date: " + format_date_time(now).encode("ascii") + b"\r\n"
            self._date_cache = (now, line)
        return line
