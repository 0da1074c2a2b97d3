"""TCP connections as non-blocking stdlib sockets driven by Trio's I/O waits.

``trio.SocketStream`` puts a conflict detector, an error-translating context manager and a
scheduler round trip around every successful ``send``/``recv``; on a request that is only a
few hundred bytes each way that is more than half of the router's CPU time. The proxied path
instead calls the socket directly and waits with ``trio.lowlevel.wait_readable`` /
``wait_writable`` only when the kernel says it would block. To stay fair to other tasks (and
cancellable) a transport still yields to the scheduler every ``_YIELD_EVERY`` operations that
completed without waiting.

Read readiness of the proxied sockets comes from a :class:`Poller` when the server runs one:
an edge-triggered epoll set in which each socket is registered once, woken through a single
Trio wait on the epoll descriptor. Trio's own ``wait_readable`` re-arms a one-shot
registration with an ``epoll_ctl`` call and walks its bookkeeping on every wait, twice per
proxied request; the poller parks the task with ``wait_task_rescheduled`` and reschedules it
when its socket reports readable. A transport without a poller waits with Trio directly.

Errors follow Trio's stream conventions: a broken connection raises
``trio.BrokenResourceError``, use after :meth:`Transport.close` raises
``trio.ClosedResourceError``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
from typing import TYPE_CHECKING

import trio
from trio.lowlevel import (
    Abort,
    checkpoint,
    current_task,
    notify_closing,
    reschedule,
    wait_readable,
    wait_task_rescheduled,
    wait_writable,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from trio.lowlevel import RaiseCancelT, Task

log = logging.getLogger(__name__)

_RECV = 65536
_YIELD_EVERY = 16


class Transport:
    """One TCP connection plus the bytes read from it and not consumed yet (:attr:`buf`)."""

    __slots__ = (
        "_ops",
        "buf",
        "closed",
        "ended",
        "fd",
        "on_readable",
        "poller",
        "ready",
        "sock",
        "waiter",
    )

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.fd = sock.fileno()  # waited on only while not closed (checked before each wait)
        self.buf = bytearray()
        self.closed = False
        self._ops = 0
        self.poller: Poller | None = None
        # With a poller: set when the socket reported readable since the last recv began
        # (cleared just before each recv); the task parked waiting for that, if any.
        self.ready = False
        self.waiter: Task | None = None
        # With a poller: the peer shut down its side (or the socket failed). Sticky, as the
        # condition is: every wait returns at once and the reads find the end of stream.
        # (End of stream that arrives together with data raises a single edge; a recv that
        # takes the data does not report it, so without this the reader would park forever.)
        self.ended = False
        # With a poller: called (synchronously, in the poller's task) instead of waking the
        # parked waiter when the socket reports readable (also at end of stream, which the
        # hook checks in ``ended``); True means it handled the event and the waiter stays
        # parked. Set only while the owner waits (see tunnel.py, lane.py).
        self.on_readable: Callable[[], bool] | None = None

    async def wait_readable(self) -> None:
        """Wait until a ``recv`` may find data (or end of stream, or an error).

        Raises:
            trio.ClosedResourceError: the transport is or gets closed.
        """
        if self.closed:
            raise trio.ClosedResourceError("transport closed")
        self._ops = 0
        if self.poller is None:
            await wait_readable(self.fd)
            return
        if self.ready or self.ended:
            return  # it reported readable after the last recv began: try again
        if self.waiter is not None:
            raise trio.BusyResourceError("another task is already reading this transport")
        self.waiter = current_task()
        await wait_task_rescheduled(self._abort)
        if self.closed:
            raise trio.ClosedResourceError("transport closed")

    def _abort(self, _: RaiseCancelT) -> Abort:
        self.waiter = None
        return Abort.SUCCEEDED

    async def _yield_sometimes(self) -> None:
        self._ops += 1
        if self._ops >= _YIELD_EVERY:
            self._ops = 0
            await checkpoint()

    async def receive_some(self, max_bytes: int = _RECV, *, wait: bool = False) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` at end of stream.

        ``wait=True`` waits for readability before the first ``recv``: cheaper when the
        caller knows nothing can have arrived yet (it just drained the socket, or the peer
        is waiting for our answer), as it saves a ``recv`` that would fail with ``EAGAIN``.

        Raises:
            trio.BrokenResourceError: the connection broke.
            trio.ClosedResourceError: the transport was closed.
        """
        if wait:
            await self.wait_readable()
        while True:
            self.ready = False
            try:
                data = self.sock.recv(max_bytes)
            except BlockingIOError:
                await self.wait_readable()
                continue
            except OSError as exc:
                raise self._translate(exc) from exc
            if len(data) == max_bytes:
                self.ready = True  # more may be waiting, and no new edge will say so
            self._ops += 1
            if self._ops >= _YIELD_EVERY:
                self._ops = 0
                await checkpoint()
            return data

    async def fill(self, *, wait: bool = False) -> bool:
        """Append what arrives next to :attr:`buf`; False at end of stream.

        ``wait`` as in :meth:`receive_some`. (The same steps written out: this is the
        proxy's per-request read, and each await level costs on every wake-up.)

        Raises:
            trio.BrokenResourceError: the connection broke.
            trio.ClosedResourceError: the transport was closed.
        """
        if wait:
            await self.wait_readable()
        while True:
            self.ready = False
            try:
                data = self.sock.recv(_RECV)
            except BlockingIOError:
                await self.wait_readable()
                continue
            except OSError as exc:
                raise self._translate(exc) from exc
            break
        if len(data) == _RECV:
            self.ready = True  # more may be waiting, and no new edge will say so
        self._ops += 1
        if self._ops >= _YIELD_EVERY:
            self._ops = 0
            await checkpoint()
        if not data:
            return False
        self.buf += data
        return True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte of ``data``.

        Raises:
            trio.BrokenResourceError: the connection broke.
            trio.ClosedResourceError: the transport was closed.
        """
        if not data:
            return await self._yield_sometimes()
        try:
            sent = self.sock.send(data)  # one syscall in the common case
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise self._translate(exc) from exc
        if sent < len(data):
            await self._send_rest(memoryview(data)[sent:])
        self._ops += 1
        if self._ops >= _YIELD_EVERY:
            self._ops = 0
            await checkpoint()

    async def _send_rest(self, view: memoryview) -> None:
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await self._wait(wait_writable)
                continue
            except OSError as exc:
                raise self._translate(exc) from exc
            view = view[sent:]

    def send_eof(self) -> None:
        """Half-close: no more bytes will be sent."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._translate(exc) from exc

    async def _wait(self, waiter: Callable[[int], Awaitable[None]]) -> None:
        if self.closed:
            raise trio.ClosedResourceError("transport closed")
        self._ops = 0
        await waiter(self.fd)

    def _translate(self, exc: OSError) -> Exception:
        if self.closed or exc.errno == errno.EBADF:
            return trio.ClosedResourceError("transport closed")
        return trio.BrokenResourceError(f"connection broken: {exc}")

    def peer_ip(self) -> str:
        """The remote IP address."""
        return str(self.sock.getpeername()[0])

    def close(self) -> None:
        """Close now (idempotent); tasks waiting on it get ``ClosedResourceError``."""
        if not self.closed:
            self.closed = True
            if self.poller is not None:
                self.poller.forget(self)
            waiter = self.waiter
            if waiter is not None:
                self.waiter = None
                reschedule(waiter)  # it sees ``closed`` and raises ClosedResourceError
            notify_closing(self.sock)
            self.sock.close()


class Poller:
    """Read readiness for many transports from one edge-triggered epoll set.

    Each socket is registered once (:meth:`register`) instead of re-armed on every wait;
    :meth:`run` (a task in the server's nursery) waits for the epoll descriptor with Trio,
    collects what became readable and reschedules the tasks parked in
    :meth:`Transport.wait_readable`. Edge-triggered is safe because a transport clears its
    ``ready`` flag just before each ``recv``: data that arrives after that ``recv`` began
    raises a new edge, which sets the flag (or wakes the waiter) again; a ``recv`` that
    filled its whole buffer may have left data behind, so it sets the flag itself. The end
    of stream (``EPOLLRDHUP``/``EPOLLHUP``/``EPOLLERR``) sets :attr:`Transport.ended` for good:
    when it arrives with the last data there is one edge for both.

    A transport may offer an :attr:`Transport.on_readable` hook: the poller calls it right
    here (after recording ``ready`` and ``ended``), without a task switch, and wakes the
    parked task only when the hook returns False. WebSocket tunnels relay small frames this
    way (``tunnel.py``), and keep-alive HTTP requests are served this way (``lane.py``, whose
    upstream hook runs while no task waits on that socket).
    """

    _EVENTS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
    _ENDED = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._by_fd: dict[int, Transport] = {}

    def register(self, transport: Transport) -> None:
        """Deliver ``transport``'s read readiness through this poller from now on."""
        if transport.closed:
            return
        self._epoll.register(transport.fd, self._EVENTS)
        self._by_fd[transport.fd] = transport
        transport.poller = self
        transport.ready = True  # nothing is known yet: the first wait tries a recv

    def forget(self, transport: Transport) -> None:
        """Stop watching a transport that is being closed (its fd may be reused)."""
        if self._by_fd.get(transport.fd) is transport:
            del self._by_fd[transport.fd]
            with contextlib.suppress(OSError):  # already gone
                self._epoll.unregister(transport.fd)
        transport.poller = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver readiness until cancelled; closes the epoll set on exit."""
        epoll = self._epoll
        by_fd = self._by_fd
        ended = self._ENDED
        try:
            task_status.started()
            while True:
                await wait_readable(epoll.fileno())
                for fd, events in epoll.poll(0, 1024):
                    transport = by_fd.get(fd)
                    if transport is None:
                        continue
                    transport.ready = True
                    if events & ended:
                        transport.ended = True
                    hook = transport.on_readable
                    if hook is not None:
                        try:
                            handled = hook()
                        except Exception:
                            # A bug in one connection's hook must not stop the poller, which
                            # serves every connection of this worker: end that one only.
                            log.exception("a readiness hook failed; closing its connection")
                            transport.on_readable = None
                            transport.close()
                            continue
                        if handled:
                            continue  # handled in place; the task stays parked
                    waiter = transport.waiter
                    if waiter is not None:
                        transport.waiter = None
                        reschedule(waiter)
        finally:
            for transport in list(by_fd.values()):
                self.forget(transport)
            epoll.close()


async def open_transport(host: str, port: int) -> Transport:
    """Connect to ``host:port`` (each resolved address in turn).

    Raises:
        OSError: every address refused or failed.

    Cancellation: the half-open socket is closed.
    """
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(errno.EADDRNOTAVAIL, f"no address for {host}")
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            code = sock.connect_ex(addr)
            if code == errno.EINPROGRESS:
                await wait_writable(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return Transport(sock)
    raise error


async def serve_transports(
    sock: socket.socket,
    handler: Callable[[Transport], Awaitable[None]],
    *,
    poller: Poller | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on the listening ``sock`` forever, one handler task each.

    Args:
        sock: a bound, listening socket.
        handler: ``async def handler(transport)``; runs in this function's nursery.
        poller: registers every accepted transport (when given).

    Cancellation: stops accepting and cancels every handler.
    """
    sock.setblocking(False)
    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            await wait_readable(sock)
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        await trio.sleep(0.1)  # out of descriptors: let connections finish
                        break
                    if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                        continue
                    raise
                transport = Transport(conn)
                if poller is not None:
                    poller.register(transport)
                nursery.start_soon(handler, transport)
