"""The public port: editor WebSockets served directly on Trio streams, the rest by hypercorn.

Every frame of a streamed turn to every editor goes out through this path, so it is kept
short: :class:`RawWebSocket` writes ready-made frame bytes with one ``send_all`` (several
queued messages in one write), with no ASGI queue, task hop or per-frame lock in between.
The handshake, incoming frames, pings and the close handshake go through ``wsproto``.

:func:`serve_public` accepts connections itself and reads the first request head: a
WebSocket upgrade for one of the editor paths is served here; anything else (and every
later request on that connection) is handed to hypercorn's own connection handler with the
bytes already read, so HTTP routes (and the app's own WebSocket routes, a fallback) behave
exactly as under ``hypercorn.trio.serve``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app
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

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

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


class _Replay(trio.abc.Stream):
    """A socket stream whose first reads return bytes already taken from it (hypercorn's
    connection handler reads ``.socket`` for the addresses)."""

    def __init__(self, stream: trio.SocketStream, head: bytes) -> None:
        self.socket = stream.socket
        self._stream = stream
        self._head = head

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


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


async def serve_public(
    app: Any,
    config: HypercornConfig,
    *,
    host: str,
    port: int,
    ws_paths: tuple[str, ...],
    ws_handler: WsHandler,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (ASGI) on ``host:port``, with WebSocket upgrades of ``ws_paths`` going
    to ``ws_handler`` (called with an accepted-by-handshake-parse, not yet accepted socket:
    it calls :meth:`RawWebSocket.accept` or closes). ``task_status`` receives the port.

    Cancellation: stops listening; open connections are cancelled.
    """
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    max_size = int(config.websocket_max_message_size)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            await route(stream)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    async def route(stream: trio.SocketStream) -> None:
        head = b""
        with trio.move_on_after(config.keep_alive_timeout):
            while b"\r\n\r\n" not in head and len(head) <= _MAX_HEAD:
                try:
                    chunk = await stream.receive_some(_RECEIVE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    chunk = b""
                if not chunk:
                    break
                head += chunk
        if not head:
            await trio.aclose_forcefully(stream)
            return
        if b"\r\n\r\n" in head and _websocket_target(head, ws_paths):
            await _serve_websocket(stream, head, ws_handler, max_size)
            return
        server = TCPServer(wrapped, config, context, ConnectionState(lifespan_state.copy()),
                           _Replay(stream, head))  # type: ignore[arg-type]  # fmt: skip
        await server.run()

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handle, listeners)
            task_status.started(bound)
        lifespan_nursery.cancel_scope.cancel()
