"""``serve``: an ASGI app on hypercorn's trio connection handling, behind an optional lane.

``hypercorn.trio.serve`` runs every connection in one nursery, so an exception escaping a
single connection's protocol handler stops the whole server. hypercorn 0.18 has such
exceptions on hostile input (bytes sent during a WebSocket handshake make h11 raise
``LocalProtocolError`` inside hypercorn's WebSocket stream), which would let any client stop
a service. This module is hypercorn's ``worker_serve`` reduced to what Amicable uses (plain
TCP, lifespan), with each connection in its own guarded task, an optional raw lane in front
of hypercorn on each connection, and a shutdown that cannot hang.

hypercorn's internals (``TCPServer``, ``WorkerContext``, ``Lifespan``, ``wrap_app``) are used
here and nowhere else in Amicable; the package pins hypercorn's minor version for that.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

import trio
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import LifespanTimeoutError, wrap_app

from ._replay import ReplayStream

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hypercorn.config import Config
    from hypercorn.typing import AppWrapper

log = logging.getLogger("amicable_frontdoor")


class Lane(Protocol):
    """Answers some requests on a raw connection before hypercorn sees it."""

    async def serve(self, stream: trio.SocketStream) -> bytes | None:
        """Answer what this lane answers on ``stream`` (reading from it as it likes).

        Returns:
            ``None`` when the connection is finished (the front door closes it); otherwise
            the bytes read from ``stream`` that no one has consumed: hypercorn gets the rest
            of the connection and parses those bytes first.
        """
        ...


async def serve(
    app: Any,
    config: Config,
    *,
    lane: Lane | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (ASGI) on the binds of ``config`` until cancelled.

    Each connection runs in its own task: first in ``lane`` (when given), then, unless the
    lane finished it, in hypercorn's connection handler (HTTP/1.1, WebSockets) with the bytes
    the lane read replayed first. An exception in one connection is logged and closes that
    connection only. The app's lifespan starts before the first connection is accepted.

    Args:
        app: the ASGI application.
        config: hypercorn's config: ``bind`` (plain TCP; TLS binds are refused), ``backlog``,
            timeouts and limits of the protocol handlers, ``graceful_timeout``.
        lane: an optional :class:`Lane` in front of hypercorn on every connection.
        task_status: receives the port of the first bind once listening.

    Raises:
        ValueError: ``config`` asks for TLS or QUIC.
        OSError: a bind failed.

    Cancellation:
        Stops accepting and cancels every connection at once; a connection still open after
        ``config.graceful_timeout`` (blocked in one of hypercorn's shielded sends to a client
        that reads nothing) has its socket closed under it. Then the app's lifespan shutdown
        runs, shielded, for at most ``config.graceful_timeout``. So ``serve`` returns at most
        about twice ``graceful_timeout`` after it is cancelled.
    """
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, state)
    async with trio.open_nursery() as lifespan_nursery:
        # shielded so that the shutdown below still reaches the app after we are cancelled
        lifespan_scope = await lifespan_nursery.start(_shielded, lifespan.handle_lifespan)
        try:
            await lifespan.wait_for_startup()
            connections = _Connections(wrapped, config, state, lane)
            await connections.serve(_listeners(config), task_status)
        finally:
            with trio.CancelScope(shield=True):
                await _shut_down(lifespan, float(config.graceful_timeout))
            lifespan_scope.cancel()


async def _shielded(
    fn: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.CancelScope(shield=True) as scope:
        task_status.started(scope)
        await fn()


async def _shut_down(lifespan: Lifespan, timeout_s: float) -> None:
    """The app's lifespan shutdown, for at most ``timeout_s``."""
    with trio.move_on_after(timeout_s) as deadline:
        try:
            await lifespan.wait_for_shutdown()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return  # the app's lifespan task has already ended
        except LifespanTimeoutError:
            log.warning("the app's lifespan shutdown timed out (shutdown_timeout)")
    if deadline.cancelled_caught:
        log.warning("the app's lifespan shutdown took over %.1f s; left it", timeout_s)


def _listeners(config: Config) -> list[trio.SocketListener]:
    sockets = config.create_sockets()
    if sockets.secure_sockets or sockets.quic_sockets:
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
            sock.close()
        raise ValueError("amicable_frontdoor serves plain TCP only (no TLS or QUIC binds)")
    listeners = []
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
    return listeners


class _Connections:
    """The accepted connections: one guarded task each, closed by force if they outlive a
    shutdown's grace period."""

    def __init__(
        self, app: AppWrapper, config: Config, state: dict[str, Any], lane: Lane | None
    ) -> None:
        self._app = app
        self._config = config
        self._state = state
        self._lane = lane
        self._context = WorkerContext(None)
        self._open: set[trio.SocketStream] = set()
        self._one_closed = trio.Event()

    async def serve(
        self, listeners: list[trio.SocketListener], task_status: trio.TaskStatus[int]
    ) -> None:
        port = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            try:
                task_status.started(port)
                await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await self._close_stragglers(float(self._config.graceful_timeout))

    async def _close_stragglers(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the (cancelled) connections to end; close the sockets
        of the rest, which wakes a task blocked on them even inside a shielded scope."""
        with trio.move_on_after(grace_s):
            while self._open:
                await self._one_closed.wait()
        if self._open:
            log.warning("closing %d connection(s) that outlived the shutdown", len(self._open))
        for stream in self._open:
            stream.socket.close()

    async def _handle(self, stream: trio.SocketStream) -> None:
        self._open.add(stream)
        try:
            await self._serve_connection(stream)
        except* Exception:
            # hypercorn raises on some hostile input; that must end this connection only
            log.warning("connection failed; closed it", exc_info=True)
        finally:
            self._open.discard(stream)
            self._one_closed.set()
            self._one_closed = trio.Event()
            await trio.aclose_forcefully(stream)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        rest = b""
        if self._lane is not None:
            left = await self._lane.serve(stream)
            if left is None:
                return  # finished in the lane
            rest = left
        await TCPServer(
            self._app,
            self._config,
            self._context,
            ConnectionState(self._state.copy()),
            ReplayStream(stream, rest) if rest else stream,  # type: ignore[arg-type]  # annotated SSL-only, takes any stream
        ).run()
