"""Two-way byte splice for upgraded (WebSocket) connections."""

from __future__ import annotations

import trio

_RECV = 65536
#: After one direction ended, how long the other may still run (close handshakes).
_LINGER_S = 10.0


async def splice(a: trio.SocketStream, b: trio.SocketStream, *, idle_timeout_s: float) -> None:
    """Relay bytes both ways until both directions end, either side breaks, or nothing moved
    in either direction for ``idle_timeout_s``.

    End of stream on one side is passed on as a half-close (``send_eof``) to the other, so
    WebSocket close frames and the TCP close that follows them propagate in both directions.
    The caller closes both streams afterwards.

    Cancellation: both pumps stop at once; nothing is left running.
    """
    with trio.CancelScope(deadline=trio.current_time() + idle_timeout_s) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, a, b, scope, idle_timeout_s)
            nursery.start_soon(_pump, b, a, scope, idle_timeout_s)


async def _pump(
    src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope, idle_s: float
) -> None:
    try:
        while True:
            data = await src.receive_some(_RECV)
            if not data:
                break
            await dst.send_all(data)
            scope.deadline = trio.current_time() + idle_s
        await dst.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        scope.cancel()
        return
    scope.deadline = min(scope.deadline, trio.current_time() + _LINGER_S)
