"""TCP connections as non-blocking stdlib sockets driven by Trio's I/O waits.

``trio.SocketStream`` puts a conflict detector, an error-translating context manager and a
scheduler round trip around every successful ``send``/``recv``; on a request that is only a
few hundred bytes each way that is more than half of the router's CPU time. The proxied path
instead calls the socket directly and waits with ``trio.lowlevel.wait_readable`` /
``wait_writable`` only when the kernel says it would block. To stay fair to other tasks (and
cancellable) a transport still yields to the scheduler every ``_YIELD_EVERY`` operations that
completed without waiting.

Errors follow Trio's stream conventions: a broken connection raises
``trio.BrokenResourceError``, use after :meth:`Transport.close` raises
``trio.ClosedResourceError``.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING

import trio
from trio.lowlevel import checkpoint, notify_closing, wait_readable, wait_writable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

_RECV = 65536
_YIELD_EVERY = 16


class Transport:
    """One TCP connection plus the bytes read from it and not consumed yet (:attr:`buf`)."""

    __slots__ = ("_ops", "buf", "closed", "fd", "sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.fd = sock.fileno()  # waited on only while not closed (checked before each wait)
        self.buf = bytearray()
        self.closed = False
        self._ops = 0

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
            await self._wait(wait_readable)
        while True:
            try:
                data = self.sock.recv(max_bytes)
            except BlockingIOError:
                await self._wait(wait_readable)
                continue
            except OSError as exc:
                raise self._translate(exc) from exc
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
            if self.closed:
                raise trio.ClosedResourceError("transport closed")
            self._ops = 0
            await wait_readable(self.fd)
        while True:
            try:
                data = self.sock.recv(_RECV)
            except BlockingIOError:
                if self.closed:
                    raise trio.ClosedResourceError("transport closed") from None
                self._ops = 0
                await wait_readable(self.fd)
                continue
            except OSError as exc:
                raise self._translate(exc) from exc
            break
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
            notify_closing(self.sock)
            self.sock.close()


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
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on the listening ``sock`` forever, one handler task each.

    Args:
        sock: a bound, listening socket.
        handler: ``async def handler(transport)``; runs in this function's nursery.

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
                nursery.start_soon(handler, Transport(conn))
