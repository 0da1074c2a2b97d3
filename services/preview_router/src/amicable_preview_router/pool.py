"""Keep-alive pool of upstream connections, keyed by ``(host, port)``.

Idle connections are reused most-recently-used first and dropped after
``pool_idle_timeout_s`` (below Node's 5 s keep-alive timeout, so Vite rarely closes one under
us; when it does, the proxy retries a body-less request once on a fresh connection).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from .transport import Transport, open_transport

if TYPE_CHECKING:
    import socket
    from collections.abc import AsyncIterator


class UpstreamConnection(Transport):
    """One connection to an upstream; ``reused`` tells whether it came from the pool."""

    __slots__ = ("idle_since", "key", "pooled", "reused")

    def __init__(self, sock: socket.socket, key: tuple[str, int]) -> None:
        super().__init__(sock)
        self.key = key
        self.reused = False
        self.pooled = False
        self.idle_since = 0.0

    def close(self) -> None:
        """Close now (idempotent)."""
        self.pooled = False
        super().close()


class UpstreamPool:
    """Idle upstream connections ready for reuse.

    Use :func:`open_upstream_pool`; it owns the reaper task and closes every idle connection
    on exit.
    """

    def __init__(self, *, connect_timeout_s: float, idle_timeout_s: float, max_idle: int) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._max_idle = max_idle
        self._idle: dict[tuple[str, int], list[UpstreamConnection]] = {}

    def take_idle(
        self, key: tuple[str, int], now: float | None = None
    ) -> UpstreamConnection | None:
        """A fresh enough idle connection to ``key``, or ``None`` (never blocks).

        ``now`` is the caller's recent ``trio.current_time()`` (saves a clock read).
        """
        idle = self._idle.get(key)
        if idle:
            horizon = (trio.current_time() if now is None else now) - self._idle_timeout_s
            while idle:
                conn = idle.pop()
                if conn.idle_since > horizon and not conn.buf:
                    conn.reused = True
                    conn.pooled = False
                    return conn
                conn.close()
        return None

    async def connect(self, key: tuple[str, int]) -> UpstreamConnection:
        """A new connection to ``key``.

        Raises:
            OSError: the connection was refused or the address did not resolve.
            trio.TooSlowError: connecting took longer than the connect timeout.
        """
        with trio.fail_after(self._connect_timeout_s):
            transport = await open_transport(*key)
        return UpstreamConnection(transport.sock, key)

    async def acquire(self, key: tuple[str, int]) -> UpstreamConnection:
        """:meth:`take_idle`, else :meth:`connect` (always a checkpoint)."""
        conn = self.take_idle(key)
        if conn is not None:
            await trio.lowlevel.checkpoint()
            return conn
        return await self.connect(key)

    def release(self, conn: UpstreamConnection, now: float | None = None) -> None:
        """Return a connection whose last response was fully read and that may be reused.

        ``now`` may be a slightly earlier ``trio.current_time()`` (the connection then
        expires a little sooner, never later).
        """
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        if len(idle) >= self._max_idle or conn.buf:
            conn.close()
            return
        conn.idle_since = trio.current_time() if now is None else now
        conn.pooled = True
        idle.append(conn)

    def idle_count(self) -> int:
        """How many idle connections the pool holds."""
        return sum(len(v) for v in self._idle.values())

    def reap(self) -> None:
        """Close idle connections older than the idle timeout."""
        horizon = trio.current_time() - self._idle_timeout_s
        for key in list(self._idle):
            keep = []
            for conn in self._idle[key]:
                if conn.idle_since > horizon:
                    keep.append(conn)
                else:
                    conn.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    async def serve_reaper(self) -> None:
        """Reap expired idle connections forever (so sockets to dead sandboxes close)."""
        while True:
            await trio.sleep(self._idle_timeout_s)
            self.reap()

    def close_all(self) -> None:
        """Close every idle connection."""
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


@asynccontextmanager
async def open_upstream_pool(
    *, connect_timeout_s: float, idle_timeout_s: float, max_idle: int
) -> AsyncIterator[UpstreamPool]:
    """An :class:`UpstreamPool` with its reaper running.

    Cancellation: the reaper stops and every idle connection is closed.
    """
    pool = UpstreamPool(
        connect_timeout_s=connect_timeout_s, idle_timeout_s=idle_timeout_s, max_idle=max_idle
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.serve_reaper)
            yield pool
            nursery.cancel_scope.cancel()
    finally:
        pool.close_all()
