"""The public port's lane: editor WebSockets served directly on Trio streams.

Every frame of a streamed turn to every editor goes out through this path, so it is kept
short: :class:`RawWebSocket` writes ready-made frame bytes with one ``send_all`` (several
queued messages in one write), with no ASGI queue, task hop or per-frame lock in between.
The handshake, incoming frames, pings and the close handshake go through ``wsproto``.

The public port is served by ``amicable_frontdoor`` with :class:`WebSocketLane` in front of
hypercorn: the lane reads the first request head of each connection; a WebSocket upgrade
for one of the editor paths is served here, anything else (and every later request on that
connection) goes to hypercorn's connection handler with the bytes already read replayed, so
HTTP routes (and the app's own WebSocket routes, a fallback) behave exactly as under
``hypercorn.trio.serve``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from amicable_agent.sessions import frame_bytes

log = logging.getLogger(__name__)

_MAX_HEAD = 16 * 1024
_RECEIVE = 64 * 1024
CLOSE_TOO_BIG = 1009


class RawWebSocket:
    """A server WebSocket on a Trio stream; the ``SocketLike`` of :mod:`amicable_agent.http.ws`.

    ``receive`` is called by one task and ``send``/``send_frames`` by another; the reader's
    own writes (pong, close reply) take turns with them without a checkpoint in the common
    case. When the peer closes or the connection breaks, ``receive`` cancels
    :attr:`scope` (the handler's scope), as a framework ends a handler on disconnect.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: WSConnection,
        request: Request,
        *,
        max_message_size: int,
    ) -> None:
        self._stream = stream
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._conn = conn
        self._lock = trio.StrictFIFOLock()
        self._max = max_message_size
        self._pending: list[str | bytes] = []
        self._parts: list[Any] = []
        self._size = 0
        self._closed = False
        self._primed = False  # frames that arrived with the handshake are not read yet
        self.scope = trio.CancelScope()
        self.target = request.target
        self.host = request.host
        self.headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.extra_headers
        }

    async def _write(self, data: bytes) -> None:
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()
        try:
            sock = self._sock
            if sock is None:
                await self._stream.send_all(data)
            else:  # SocketStream.send_all's context managers cost more than the send
                sent = await sock.send(data)
                if sent < len(data):
                    view = memoryview(data)
                    while sent < len(data):
                        sent += await sock.send(view[sent:])
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._gone()
            await trio.lowlevel.checkpoint()
        finally:
            self._lock.release()

    def _gone(self) -> None:
        self._closed = True
        self.scope.cancel()

    async def accept(self) -> None:
        """Complete the opening handshake."""
        await self._write(self._conn.send(AcceptConnection()))

    async def send(self, data: str | bytes) -> None:
        """Send one text (or binary) message."""
        if isinstance(data, str):
            await self._write(frame_bytes(data))
        else:
            await self._write(self._conn.send(BytesMessage(data=data)))

    def write_now(self, frame: bytes) -> int:
        """Write ``frame`` without blocking, if no write is in progress; how many bytes
        were written (0 when the socket is busy or its buffer full: send it later).

        A broken connection counts as written (the handler is being cancelled anyway).
        """
        if self._closed or self._lock.locked() or self._sock is None:
            return 0
        try:
            # fileno() is -1 once the socket is closed: never a recycled descriptor.
            return os.write(self._sock.fileno(), frame)
        except BlockingIOError:
            return 0
        except OSError:
            self._gone()
            return len(frame)

    async def send_frames(self, frames: list[bytes]) -> None:
        """Send ready-made frames (see :func:`frame_bytes`) with one write."""
        await self._write(frames[0] if len(frames) == 1 else b"".join(frames))

    async def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake and close the connection."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            data = self._conn.send(CloseConnection(code=code, reason=reason or None))
        except LocalProtocolError:
            data = b""
        if data:
            await self._write(data)
        await trio.aclose_forcefully(self._stream)
        self.scope.cancel()

    async def receive(self) -> str | bytes:
        """The next complete message; on close or a broken connection the handler's
        :attr:`scope` is cancelled (this call then raises ``Cancelled``)."""
        while not self._pending:
            await self._fill()
        return self._pending.pop(0)

    async def _fill(self) -> None:
        if self._closed:
            self.scope.cancel()
            await trio.sleep_forever()
        try:
            if self._primed:
                try:
                    data = await self._stream.receive_some(_RECEIVE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    self._gone()
                    await trio.sleep_forever()
                self._conn.receive_data(bytes(data))
            self._primed = True
            events = list(self._conn.events())
        except RemoteProtocolError:
            await self.close(1002)
            await trio.sleep_forever()
        for event in events:
            if isinstance(event, TextMessage | BytesMessage):
                self._size += len(event.data)
                if self._size > self._max:
                    await self.close(CLOSE_TOO_BIG, "message too big")
                    await trio.sleep_forever()
                self._parts.append(event.data)
                if event.message_finished:
                    joined = (
                        "".join(self._parts)
                        if isinstance(event, TextMessage)
                        else b"".join(self._parts)
                    )
                    self._pending.append(joined)
                    self._parts, self._size = [], 0
            elif isinstance(event, Ping):
                await self._write(self._conn.send(event.response()))
            elif isinstance(event, CloseConnection):
                if not self._closed:
                    self._closed = True
                    try:
                        reply = self._conn.send(event.response())
                    except LocalProtocolError:
                        reply = b""
                    if reply:
                        await self._write(reply)
                await trio.aclose_forcefully(self._stream)
                self._gone()
                await trio.sleep_forever()


WsHandler = Callable[[RawWebSocket], Awaitable[None]]


def _websocket_target(head: bytes, paths: tuple[str, ...]) -> bool:
    """Whether ``head`` is a GET WebSocket upgrade of one of ``paths``."""
    request_line, _, headers = head.partition(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        return False
    path = parts[1].split(b"?", 1)[0].decode("latin-1")
    if path not in paths:
        return False
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and value.strip().lower() == b"websocket":
            return True
    return False


async def _serve_websocket(stream: trio.SocketStream, head: bytes, handler: WsHandler,
                           max_message_size: int) -> None:  # fmt: skip
    conn = WSConnection(ConnectionType.SERVER)
    conn.receive_data(head)
    request = None
    try:
        for event in conn.events():
            if isinstance(event, Request):
                request = event
                break
    except RemoteProtocolError as exc:
        request = None
        reply = exc.event_hint
        if isinstance(reply, RejectConnection):
            await stream.send_all(conn.send(reply))
    if request is None:
        await trio.aclose_forcefully(stream)
        return
    socket = RawWebSocket(stream, conn, request, max_message_size=max_message_size)
    try:
        with socket.scope:
            await handler(socket)
    finally:
        socket._closed = True
        await trio.aclose_forcefully(stream)


class WebSocketLane:
    """The public port's lane (an ``amicable_frontdoor.Lane``): editor WebSockets on the raw
    connection, everything else handed to hypercorn.

    Args:
        ws_paths: the editor's WebSocket paths (``/``, ``/ws``).
        ws_handler: called with each upgrade's socket, handshake parsed but not yet accepted:
            it calls :meth:`RawWebSocket.accept` or closes.
        keep_alive_timeout_s: how long a new connection may take to send its first head.
        max_message_size: largest incoming message (then close 1009).
    """

    def __init__(
        self,
        ws_paths: tuple[str, ...],
        ws_handler: WsHandler,
        *,
        keep_alive_timeout_s: float,
        max_message_size: int,
    ) -> None:
        self.ws_paths = ws_paths
        self.ws_handler = ws_handler
        self.keep_alive_timeout_s = keep_alive_timeout_s
        self.max_message_size = max_message_size

    async def serve(self, stream: trio.SocketStream) -> bytes | None:
        """Serve ``stream`` if its first request is an editor WebSocket upgrade.

        Returns:
            ``None`` when the connection is finished (the WebSocket ended, or the client
            sent nothing); otherwise the bytes read, for hypercorn to parse first.
        """
        head = b""
        with trio.move_on_after(self.keep_alive_timeout_s):
            while b"\r\n\r\n" not in head and len(head) <= _MAX_HEAD:
                try:
                    chunk = await stream.receive_some(_RECEIVE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    chunk = b""
                if not chunk:
                    break
                head += chunk
        if not head:
            return None
        if b"\r\n\r\n" in head and _websocket_target(head, self.ws_paths):
            await _serve_websocket(stream, head, self.ws_handler, self.max_message_size)
            return None
        return head
