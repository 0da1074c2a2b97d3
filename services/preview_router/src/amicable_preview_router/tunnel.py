"""Two-way byte splice for upgraded (WebSocket) connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .transport import Transport

_RECV = 65536
_YIELD_EVERY = 16


async def splice(a: Transport, b: Transport, *, idle_timeout_s: float) -> None:
    """Relay bytes both ways until either side ends or breaks, or nothing moved in either
    direction for ``idle_timeout_s``.

    As in nginx, end of stream from either side ends the tunnel: WebSocket has no half-close,
    so a peer that sent FIN (after its close frame, already relayed) is gone, and the caller
    closes both streams at once, which propagates the close to the other peer.

    Cancellation: both pumps stop at once; nothing is left running.
    """
    with trio.CancelScope(deadline=trio.current_time() + idle_timeout_s) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, a, b, scope, idle_timeout_s)
            nursery.start_soon(_pump, b, a, scope, idle_timeout_s)


async def _pump(src: Transport, dst: Transport, scope: trio.CancelScope, idle_s: float) -> None:
    # Written against the sockets (not Transport.receive_some/send_all): each await level
    # and coroutine costs on every frame relayed, and a relayed frame is little more than one
    # recv and one send.
    sock = src.sock
    out = dst.sock
    drained = False
    relayed = 0
    try:
        while True:
            # After a read that drained the socket the next frame is not there yet: wait
            # for it instead of paying for a recv that fails with EAGAIN.
            if drained:
                await src.wait_readable()
            src.ready = False
            try:
                data = sock.recv(_RECV)
            except BlockingIOError:
                drained = True
                continue
            except OSError:
                break
            if not data:
                break
            drained = len(data) < _RECV
            if len(data) == _RECV:
                src.ready = True  # more may be waiting (see Poller)
            try:
                sent = out.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                break
            if sent < len(data):
                await dst.send_all(memoryview(data)[sent:])
            relayed += 1
            if relayed == _YIELD_EVERY:
                # A peer that never lets the socket drain must not starve other tasks.
                relayed = 0
                await trio.lowlevel.checkpoint()
            # Moving a deadline costs more than relaying a small frame: do it at most
            # about once a second (the idle timeout has one-second granularity).
            deadline = trio.current_time() + idle_s
            if deadline - scope.deadline > 1.0:
                scope.deadline = deadline
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()
