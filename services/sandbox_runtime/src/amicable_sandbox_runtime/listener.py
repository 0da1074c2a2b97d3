"""Run an ASGI app on hypercorn's trio protocol stack with per-connection fault isolation.

``hypercorn.trio.serve`` runs every connection in one nursery, so an exception escaping a
single connection's protocol handler stops the whole server. hypercorn 0.18 has such
exceptions on hostile input (bytes sent during a WebSocket handshake make h11 raise
``LocalProtocolError`` inside hypercorn's WebSocket stream), which would let any client stop
the runtime. This module is hypercorn's ``worker_serve`` reduced to what the runtime uses
(plain TCP, lifespan) with each connection wrapped so its errors are logged and end only that
connection.

With a :class:`~amicable_sandbox_runtime.httplane.HttpLane`, each connection starts in that
raw HTTP/1.1 lane (the fast routes answered without hypercorn); at the first request the lane
does not take, hypercorn's connection handler gets the rest of the connection, with the bytes
the lane had read replayed first.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from .replay import Replay

if TYPE_CHECKING:
    from hypercorn.config import Config

    from .httplane import HttpLane

log = logging.getLogger(__name__)


async def serve_isolated(
    app: Any,
    config: Config,
    *,
    lane: HttpLane | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``config.bind`` (first bind only) until cancelled.

    With ``lane``, requests it takes are answered by it before hypercorn sees the connection.

    Calls ``task_status.started(port)`` with the bound port once listening.

    Cancellation:
        Every connection is cancelled, then the app's lifespan shutdown runs (shielded,
        bounded by ``config.graceful_timeout``).
    """
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        sockets = config.create_sockets()
        listeners = []
        for sock in sockets.insecure_sockets:
            sock.listen(config.backlog)
            listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        port = int(sockets.insecure_sockets[0].getsockname()[1])

        async def handle(stream: trio.SocketStream) -> None:
            try:
                rest = b""
                if lane is not None:
                    left = await lane.serve(stream)
                    if left is None:
                        return  # finished in the lane
                    rest = left
                await TCPServer(
                    wrapped,
                    config,
                    context,
                    ConnectionState(state.copy()),
                    Replay(stream, rest) if rest else stream,  # type: ignore[arg-type]  # annotated SSL-only, takes any stream
                )
            except Exception:
                log.warning("connection failed in the HTTP stack; closed it", exc_info=True)
            finally:
                await trio.aclose_forcefully(stream)

        try:
            async with trio.open_nursery() as connections:
                task_status.started(port)
                await trio.serve_listeners(handle, listeners, handler_nursery=connections)
        finally:
            # the lifespan task may already be cancelled with us (closed channel)
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(config.graceful_timeout),
                contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError),
            ):
                await lifespan.wait_for_shutdown()
            lifespan_nursery.cancel_scope.cancel()
