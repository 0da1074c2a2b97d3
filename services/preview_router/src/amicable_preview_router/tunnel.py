"""Two-way byte splice for upgraded (WebSocket) connections.

Each direction is a pump task. While a pump waits for its source to become readable it
offers the :class:`~.transport.Poller` an ``on_readable`` hook (:meth:`_Relay.on_readable`):
when the source reports readable, the poller itself does the ``recv`` and the ``send`` to
the other socket, with no task switch and no extra trip through Trio's run loop. That is
the whole cost of relaying a small frame (a WebSocket ping-pong message is two of them). The
pump task is woken only for what needs it: a send that would block (it finishes the send
with back-pressure, waiting for writability, before reading more), a read that filled the
buffer (more may be waiting: the task drains it, yielding to the scheduler every
``_YIELD_EVERY`` frames), end of stream, an error, cancellation or close.
"""

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


class _Relay:
    """One direction's in-poller relay step and what it leaves for the pump task."""

    __slots__ = ("dst", "idle_s", "now", "out", "pending", "scope", "sock", "src")

    def __init__(self, src: Transport, dst: Transport, scope: trio.CancelScope, idle_s: float):
        self.src = src
        self.dst = dst
        self.sock = src.sock
        self.out = dst.sock
        self.scope = scope
        self.idle_s = idle_s
        # The clock's own method: trio.current_time() is three calls deep, on every frame.
        self.now = trio.lowlevel.current_clock().current_time
        # Bytes read in the poller that the destination did not take at once: the pump
        # sends them (waiting for writability) before it reads again.
        self.pending: memoryview | None = None

    def on_readable(self) -> bool:
        """Relay one read from the poller; False wakes the pump task (see module docs)."""
        if self.src.ended:
            return False  # end of stream (or an error): the task sees it and ends the tunnel
        self.src.ready = False
        try:
            data = self.sock.recv(_RECV)
        except BlockingIOError:
            return True  # nothing after all; keep waiting for the next edge
        except OSError:
            return False  # the task's own recv sees the error (or end of stream) again
        if not data:
            return False  # end of stream is sticky: the task's recv sees it too
        try:
            sent = self.out.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # the task's send raises Broken/ClosedResourceError and ends the tunnel
        if sent < len(data):
            self.pending = memoryview(data)[sent:]
            return False
        self.touch()
        if len(data) == _RECV:
            self.src.ready = True  # more may be waiting and no new edge will say so
            return False
        return True

    def touch(self) -> None:
        """Push the idle deadline on (at most about once a second: moving a deadline costs
        more than relaying a small frame, and the idle timeout has one-second granularity)."""
        deadline = self.now() + self.idle_s
        if deadline - self.scope.deadline > 1.0:
            self.scope.deadline = deadline


async def _pump(src: Transport, dst: Transport, scope: trio.CancelScope, idle_s: float) -> None:
    # Written against the sockets (not Transport.receive_some/send_all): each await level
    # and coroutine costs on every frame relayed, and a relayed frame is little more than one
    # recv and one send.
    relay = _Relay(src, dst, scope, idle_s)
    sock = src.sock
    out = dst.sock
    drained = False
    relayed = 0
    try:
        while True:
            # After a read that drained the socket the next frame is not there yet: wait
            # for it (letting the poller relay what comes in place) instead of paying for a
            # recv that fails with EAGAIN.
            if drained:
                src.on_readable = relay.on_readable
                try:
                    await src.wait_readable()
                finally:
                    src.on_readable = None
                if relay.pending is not None:
                    pending = relay.pending
                    relay.pending = None
                    await dst.send_all(pending)  # back-pressure: waits for writability
                    relay.touch()
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
            if not drained:
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
            relay.touch()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()
