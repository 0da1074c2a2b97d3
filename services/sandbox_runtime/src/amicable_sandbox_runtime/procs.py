"""Child-process helpers shared by exec, the dev-server supervisor and ``init-workspace``.

Kept free of the protocol and web stack so ``init-workspace`` and the supervisor (started
before the HTTP stack is imported) stay cheap to import.

:class:`Child` is the exec path's process handle. It costs little more than the spawn
itself: the spawn runs on the event loop (CPython uses ``vfork``, so the loop only waits
until the child has called ``exec``; a worker-thread hop costs more than that), and one task
waits for both output pipes and the exit at once, through a small epoll set of its own
(the exit is a pidfd) that trio watches as a single fd.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from pathlib import Path

#: Bytes read from a pipe per wake-up.
READ_CHUNK = 65536

#: Whether ``pidfd_open`` works here (Linux >= 5.3; some sandboxes lack it). Decided on first
#: use; without it a thread waits for the exit and reports it through a pipe.
_pidfd_usable: bool | None = None


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the process group led by ``pid``; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _open_pidfd(pid: int) -> int | None:
    global _pidfd_usable
    if _pidfd_usable is False:
        return None
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        _pidfd_usable = False
        return None
    _pidfd_usable = True
    return fd


def _report_exit(pid: int, write_fd: int) -> None:
    """(worker thread) Wait until ``pid`` can be reaped, without reaping it; then say so.

    Saying so is closing ``write_fd``: the read end turns readable (end of file) only once
    this thread holds no fd any more, so a caller that closes everything right after the
    exit leaves nothing open behind it.
    """
    try:
        with contextlib.suppress(ChildProcessError):  # already reaped: it has exited too
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    finally:
        os.close(write_fd)


async def wait_exitable(pid: int) -> None:
    """Return once our child ``pid`` has exited, without reaping it (a pidfd where there is
    one, else a worker thread in ``waitid``)."""
    pidfd = _open_pidfd(pid)
    if pidfd is None:
        with contextlib.suppress(ChildProcessError):  # already reaped: it has exited too
            await trio.to_thread.run_sync(
                os.waitid, os.P_PID, pid, os.WEXITED | os.WNOWAIT, abandon_on_cancel=True
            )
        return
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


class Child:
    """A spawned command in its own session (so its process group id is its pid).

    Stdin is ``/dev/null`` unless ``stdin`` is given; stdout and stderr are pipes read by
    :meth:`pump`. The process must be finished with :meth:`aclose` (kill the group, reap,
    close the fds), also on cancellation.

    Args:
        argv: program and arguments (``argv[0]`` searched on the ``PATH`` of ``env``).
        cwd: working directory.
        env: the complete environment.
        executable: the program to run instead of searching for ``argv[0]``.
        stdin: a file descriptor to give the child as its stdin (the caller keeps and
            closes it).

    Raises:
        OSError: the program could not be executed (nothing is left running or open).
    """

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path | str,
        env: dict[str, str],
        *,
        executable: str | None = None,
        stdin: int | None = None,
    ) -> None:
        self.exited = False
        self._drain_until = 0.0
        #: Output pipe fds still open: 1 (stdout) and/or 2 (stderr) -> our read end.
        self.open_streams: dict[int, int] = {}
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self._popen = subprocess.Popen(
                argv,
                executable=executable,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,
            )
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        self.pid = self._popen.pid
        self.open_streams = {1: out_r, 2: err_r}
        self._by_fd = {out_r: 1, err_r: 2}
        pidfd = _open_pidfd(self.pid)
        if pidfd is None:
            self._exit_fd, write_fd = os.pipe()
            trio.lowlevel.start_thread_soon(
                lambda: _report_exit(self.pid, write_fd), lambda _: None
            )
        else:
            self._exit_fd = pidfd
        self._poller = select.epoll(4)
        for fd in (out_r, err_r, self._exit_fd):
            os.set_blocking(fd, False)
            self._poller.register(fd, select.EPOLLIN)
        self._buffer = bytearray(READ_CHUNK)
        self._view = memoryview(self._buffer)

    @property
    def returncode(self) -> int | None:
        """Like :attr:`subprocess.Popen.returncode` (``-n``: killed by signal n)."""
        return self._popen.returncode

    @property
    def done(self) -> bool:
        """The child has exited and both pipes are closed (or given up on)."""
        return self.exited and not self.open_streams

    async def pump(
        self,
        on_output: Callable[[int, memoryview], Awaitable[None]],
        deadline: float,
        *,
        drain_s: float,
    ) -> None:
        """Forward output until :attr:`done`, or until ``deadline`` while the child runs.

        When the child exits its whole group is killed (background jobs do not outlive it)
        and the wait for the pipes is bounded by ``drain_s`` from the exit instead (something
        outside the group may hold them; then the pipes are closed). May be called again to
        resume. ``on_output(stream, data)`` gets each chunk (1 = stdout, 2 = stderr) and then
        an empty chunk at the stream's end; ``data`` is only valid until it returns.
        """
        poller = self._poller
        with trio.move_on_at(self._drain_until if self.exited else deadline) as scope:
            while not self.done:
                await trio.lowlevel.wait_readable(poller.fileno())
                for fd, _ in poller.poll(0):
                    if fd == self._exit_fd:
                        poller.unregister(fd)
                        self._reap()
                        self._drain_until = trio.current_time() + drain_s
                        scope.deadline = self._drain_until
                        continue
                    stream = self._by_fd[fd]
                    try:
                        n = os.readv(fd, (self._buffer,))
                    except BlockingIOError:
                        continue
                    if n:
                        await on_output(stream, self._view[:n])
                        continue
                    poller.unregister(fd)
                    os.close(self.open_streams.pop(stream))
                    await on_output(stream, self._view[:0])
        if self.exited and scope.cancelled_caught:
            self._give_up_pipes()

    def _give_up_pipes(self) -> None:
        for fd in self.open_streams.values():
            self._poller.unregister(fd)
            os.close(fd)
        self.open_streams.clear()

    def _reap(self) -> None:
        """The child has exited: kill the rest of its group and collect its status."""
        self.exited = True
        kill_group(self.pid)
        self._popen.wait()

    async def aclose(self) -> None:
        """Kill the group, reap the child and close every fd (shielded from cancellation)."""
        with trio.CancelScope(shield=True):
            if not self.exited:
                kill_group(self.pid)
                # no deadline: after SIGKILL the kernel bounds this, and giving up would
                # leave a zombie (and an fd) behind
                await trio.lowlevel.wait_readable(self._exit_fd)
                self._reap()
            self._poller.close()
            for fd in (*self.open_streams.values(), self._exit_fd):
                os.close(fd)
            self.open_streams.clear()
