"""Waiting for processes and ports in tests that run real servers (shared by every suite)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for servers that cannot report a port-0 bind)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies count as dead: PID 1 may not reap them)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    """Poll ``predicate`` until it is true.

    Raises:
        trio.TooSlowError: still false after ``timeout_s`` (a deadline, not a timing claim).
    """
    with trio.fail_after(timeout_s):
        while not await predicate():  # noqa: ASYNC110 - polling another process's state
            await trio.sleep(0.05)


async def wait_for_exit(*pids: int, timeout_s: float = 10.0) -> None:
    """Wait until none of ``pids`` is alive.

    Raises:
        trio.TooSlowError: one is still alive after ``timeout_s``.
    """

    async def all_dead() -> bool:
        return not any(process_alive(pid) for pid in pids)

    await wait_until(all_dead, timeout_s)
