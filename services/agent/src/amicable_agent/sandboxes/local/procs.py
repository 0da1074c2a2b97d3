"""Process plumbing of the local backend: free ports, process groups, leftover sweeps.

Kept apart from :mod:`.local` (sandbox lifecycle) because none of it knows about sandboxes:
it runs a command in its own session, kills groups and finds stray processes by marker.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from contextlib import suppress
from typing import TYPE_CHECKING, BinaryIO

import trio

from amicable_agent.leash import LeashedProcess, run_leashed

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def free_port() -> int:
    """A currently free loopback TCP port (for the dev server, which must be told one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kill_group(pgid: int, sig: int) -> None:
    """Signal a process group; one that is already gone is fine."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def interrupt_group(process: trio.Process) -> None:
    """Stop a CLI run in its own session: SIGINT first (``init-workspace`` then kills the
    ``cp``/``npm`` it runs in groups of their own), SIGKILL the group if it lingers."""
    kill_group(process.pid, signal.SIGINT)
    with trio.move_on_after(5):
        await process.wait()
    kill_group(process.pid, signal.SIGKILL)
    await process.wait()


def tail(path: Path, size: int = 600) -> str:
    """About the last ``size`` characters of a log file ('' when unreadable); reads only
    the end (sandbox processes write these logs, they may be large)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4 * size))
            return fh.read().decode(errors="replace")[-size:].strip()
    except OSError:
        return ""


def kill_marked(root: str, marker: bytes) -> int:
    """SIGKILL processes working under ``root`` whose environment carries ``marker``
    (a ``NAME=`` marker: any value); returns how many were found. (The marker keeps a
    person's shell that merely ``cd``-ed into the workspace safe.)"""
    any_value = marker.endswith(b"=")
    found = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if not os.readlink(f"/proc/{entry.name}/cwd").startswith(root):
                continue
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                names = fh.read().split(b"\0")
            if not any(v == marker or (any_value and v.startswith(marker)) for v in names):
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    continue  # already dead, waiting to be reaped
        except OSError:
            continue
        found += 1
        with suppress(ProcessLookupError, PermissionError):
            os.kill(int(entry.name), signal.SIGKILL)
    return found


async def sweep_leftovers(root: Path, marker: bytes) -> None:
    """Make sure nothing marked with ``marker`` keeps running under ``root``: a dev server
    whose runtime died hard, or processes of a bubblewrap PID namespace on their way out."""
    resolved = str(await trio.to_thread.run_sync(root.resolve))
    with trio.move_on_after(10):
        for _ in range(100):
            if not await trio.to_thread.run_sync(kill_marked, resolved, marker):
                return
            await trio.sleep(0.1)


async def run_process_group(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    log_file: BinaryIO,
    preview_pid: Callable[[], int | None],
    *,
    pass_fds: tuple[int, ...] = (),
    record_dir: Path | None = None,
    task_status: trio.TaskStatus[LeashedProcess] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``argv`` on the leash (:mod:`amicable_agent.leash`: it dies with the agent) in a
    new session with stdin on ``/dev/null``; on cancellation SIGINT the group (the runtime
    stops its dev server), then SIGKILL it and the dev server's group (``preview_pid()``).

    Args:
        pass_fds: descriptors the child inherits (bubblewrap's info and block pipes).
        record_dir: the agent's run directory (the child is recorded there while it runs).
    """

    async def deliver_cancel(process: LeashedProcess) -> None:
        kill_group(process.pid, signal.SIGINT)
        with trio.move_on_after(5):
            await process.wait()
        pid = preview_pid()
        kill_group(process.pid, signal.SIGKILL)
        if isinstance(pid, int):
            kill_group(pid, signal.SIGKILL)

    await run_leashed(
        argv,
        env=env,
        cwd=str(cwd),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=log_file,
        deliver_cancel=deliver_cancel,
        pass_fds=pass_fds,
        record_dir=record_dir,
        task_status=task_status,
    )


def kill_orphans(name: str, sandboxes: Path) -> int:
    """SIGKILL the process groups of bubblewrap and pasta processes whose environment has
    ``name=<sandboxes>:<pid>`` for an agent pid that is gone (what a crashed agent left
    running); returns how many groups. A live agent's sandboxes are left alone."""
    prefix = f"{name}={sandboxes}:".encode()
    killed = 0
    with os.scandir("/proc") as entries:
        pids = [int(e.name) for e in entries if e.name.isdigit()]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                owner = next((v for v in fh.read().split(b"\0") if v.startswith(prefix)), None)
            if owner is None:
                continue
            agent = int(owner[len(prefix) :])
            if agent == os.getpid() or _alive(agent):
                continue
            pgid = os.getpgid(pid)
        except (OSError, ValueError):
            continue
        kill_group(pgid, signal.SIGKILL)
        killed += 1
    return killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_capped(path: Path, limit: int = 64 * 1024) -> bytes:
    """At most ``limit`` bytes of a regular file a sandbox may have written, never through
    a symlink (a planted link cannot make the agent read another file).

    Raises:
        OSError: missing, a symlink or not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def host_pid(ns_pid: int, member: int) -> int | None:
    """The host pid of the process known as ``ns_pid`` in the PID namespace of the host
    process ``member`` (None when not found)."""
    try:
        ns = os.readlink(f"/proc/{member}/ns/pid")
    except OSError:
        return None
    with os.scandir("/proc") as entries:
        names = [e.name for e in entries if e.name.isdigit()]
    for name in names:
        try:
            if os.readlink(f"/proc/{name}/ns/pid") != ns:
                continue
            with open(f"/proc/{name}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"NSpid:") and int(line.split()[-1]) == ns_pid:
                        return int(name)
        except (OSError, ValueError):
            continue
    return None
