"""The disk quota of a local sandbox: a watchdog over its directory.

The filesystems a self-hosted machine has (ext4 without project quotas, usually) cannot
limit one directory, so the backend measures instead: ``RLIMIT_FSIZE`` (see :mod:`.limits`)
stops any single file at the quota, and this watchdog adds up the sandbox's directory
(workspace, home, logs; each inode once) and stops the sandbox when it is over. Walking a
project with ``node_modules`` (~8k files) costs 0.1-0.2 s of CPU here, so the full walk
runs every ``scan_interval_s`` or as soon as the filesystem's free space dropped by
``trigger_bytes`` since the last walk (one ``statvfs`` per ``poll_s``): a filler is caught
within about a second of writing ``trigger_bytes``, an idle sandbox costs a walk a minute.

A project already over its quota when it starts may still run (so it can be cleaned up),
but not grow by more than ``GRACE_BYTES``.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

log = logging.getLogger(__name__)

GRACE_BYTES = 256 * 1024**2


def disk_usage(root: Path) -> int:
    """Bytes allocated under ``root`` (symlinks not followed, each inode counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
    return total


def free_bytes(path: Path) -> int:
    """Free space of the filesystem holding ``path`` (0 when it cannot be read)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


async def watch_disk(
    limit_bytes: int,
    measure: Callable[[], Awaitable[int]],
    free: Callable[[], int],
    on_usage: Callable[[int], None],
    *,
    poll_s: float = 0.5,
    scan_interval_s: float = 60.0,
    first_walk_s: float = 10.0,
    trigger_bytes: int = 64 * 1024**2,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Measure until the usage is over the quota; return that usage.

    The first walk waits ``first_walk_s`` (it costs ~0.1 s of CPU, which a starting dev
    server needs more) unless the free space drops by ``trigger_bytes`` first. The usage the
    sandbox started with is that walk minus what the free space dropped meanwhile.

    Args:
        limit_bytes: the quota.
        measure: a full walk (:func:`disk_usage` in a worker thread).
        free: the filesystem's free bytes (cheap; called every ``poll_s``).
        on_usage: told every measured usage (statistics).

    Cancellation: stops at the next poll; a walk in progress finishes in its thread.
    """
    start_free = last_free = free()
    started_at = last_scan = trio.current_time()
    allowed: int | None = None
    task_status.started()
    while True:
        await trio.sleep(poll_s)
        now, now_free = trio.current_time(), free()
        last_free = max(last_free, now_free)
        due = now - (started_at + first_walk_s if allowed is None else last_scan)
        if now_free > last_free - trigger_bytes and due < (
            0 if allowed is None else scan_interval_s
        ):
            continue
        usage = await measure()
        on_usage(usage)
        if allowed is None:
            at_start = max(0, usage - max(0, start_free - now_free))
            allowed = limit_bytes if at_start <= limit_bytes else at_start + GRACE_BYTES
        last_free, last_scan = free(), trio.current_time()
        if usage > allowed:
            return usage
