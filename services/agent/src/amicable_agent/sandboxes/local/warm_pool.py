"""The local backend's warm pool: sandboxes with the dev server already running.

A new session's ``ensure`` takes one (:meth:`WarmPool.take`) and the backend links its
directory under the new sandbox id; the pool makes a replacement ``refill_delay_s`` later,
so the refill does not compete with the adopted preview's first page loads for CPU.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from typing import TYPE_CHECKING

import trio

from amicable_agent.errors import SandboxProvisionError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from .sandbox import LocalSandbox

log = logging.getLogger(__name__)

POOL_PREFIX = "pool-"
#: After a failed start, wait this long before the next attempt (npm unreachable, …).
_RETRY_S = 30.0


class WarmPool:
    """Keeps ``size`` ready sandboxes in ``root/pool-<random>``.

    Args:
        root: the backend's sandboxes directory.
        size: sandboxes to keep ready (0 disables).
        refill_delay_s: delay between a take and the start of its replacement.
        start: starts a sandbox named ``name`` in ``root`` from ``template_id`` and
            returns it ready (the backend's start, bounded by its start timeout).
        template_id: the template of this pool's sandboxes (their directories are
            ``pool-<template>-<random>``; each pool only ever removes its own).
    """

    def __init__(
        self,
        root: Path,
        size: int,
        refill_delay_s: float,
        start: Callable[[str, Path], Awaitable[LocalSandbox]],
        *,
        template_id: str = "vite",
    ) -> None:
        self._root = root
        self._size = size
        self._refill_delay_s = refill_delay_s
        self._start = start
        self._prefix = f"{POOL_PREFIX}{template_id}-"
        self.sandboxes: list[LocalSandbox] = []
        self._changed = trio.Event()
        self._filled = trio.Event()

    def take(self) -> LocalSandbox | None:
        """A ready sandbox out of the pool, or None."""
        while self.sandboxes:
            sandbox = self.sandboxes.pop(0)
            if sandbox.ready and not sandbox.stopped.is_set():
                self._changed.set()
                return sandbox
        return None

    def discard(self, sandbox: LocalSandbox) -> None:
        """Forget a sandbox that stopped."""
        if sandbox in self.sandboxes:
            self.sandboxes.remove(sandbox)

    async def wait_filled(self) -> None:
        """Wait until the pool holds ``size`` ready sandboxes."""
        while len(self.sandboxes) < self._size:
            await self._filled.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the pool filled until cancelled; ``started()`` once stale pool directories
        of an earlier run are removed.

        Cancellation: a sandbox being started is stopped by the backend's start.
        """
        await trio.to_thread.run_sync(self._remove_orphan_dirs)
        task_status.started()
        if self._size <= 0:
            return
        while True:
            self._changed = trio.Event()
            while len(self.sandboxes) < self._size:
                name = self._prefix + secrets.token_hex(6)
                try:
                    sandbox = await self._start(name, self._root / name)
                except SandboxProvisionError as exc:
                    log.warning("warm pool: %s", exc.reason)
                    await trio.sleep(_RETRY_S)
                    continue
                self.sandboxes.append(sandbox)
            self._filled.set()
            self._filled = trio.Event()
            await self._changed.wait()
            await trio.sleep(self._refill_delay_s)

    def _remove_orphan_dirs(self) -> None:
        if not self._root.is_dir():
            return
        linked = {os.readlink(p) for p in self._root.iterdir() if p.is_symlink()}
        for entry in self._root.iterdir():
            rest = entry.name.removeprefix(self._prefix)
            legacy = (
                entry.name.startswith(POOL_PREFIX) and "-" not in entry.name[len(POOL_PREFIX) :]
            )
            if ((rest != entry.name and "-" not in rest) or legacy) and entry.name not in linked:
                shutil.rmtree(entry, ignore_errors=True)
