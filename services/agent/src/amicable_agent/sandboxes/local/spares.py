"""Spare workspaces: complete project trees prepared in the background, taken by a rename.

Creating a workspace from the template costs a Python start for ``init-workspace``, the
template copy and one hard link per file of ``node_modules`` (~7k files for the Vite
template): about 0.8 s on the benchmark machine, all of it on the critical path of a cold
start. :class:`SpareWorkspaces` runs that same ``init-workspace`` ahead of time, while
nothing waits, into ``<sandboxes>/.spares/<template>-<random>``; a cold start then takes a
spare with one ``rename`` into ``<sandbox>/workspace``. A spare holds no process and costs
only directory entries and inodes (the files are links into the cache). Spares are complete
or absent: a ``.complete`` marker is written after ``init-workspace`` succeeded, and
incomplete ones are removed when the backend starts.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from typing import TYPE_CHECKING

import trio

from .procs import interrupt_group

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

log = logging.getLogger(__name__)

_MARKER = ".complete"
SPARES_DIR = ".spares"


class SpareWorkspaces:
    """Keeps ``count`` complete workspaces of ``template_id`` ready to be taken.

    Args:
        root: the backend's sandboxes directory (spares live in ``root/.spares``, on the
            same filesystem as the workspaces, so taking one is a rename).
        template_id: the template spares are made from (the default template).
        count: spares to keep (0 disables).
        init_argv: ``init-workspace`` argv for a destination directory.
        init_env: its environment (None: the agent's).
        refill_delay_s: wait this long after a spare was taken before making the next one,
            so the refill does not compete with that cold start for CPU.
    """

    def __init__(
        self,
        root: Path,
        template_id: str,
        count: int,
        init_argv: Callable[[Path, str], list[str]],
        refill_delay_s: float,
        init_env: dict[str, str] | None = None,
    ) -> None:
        self._dir = root / SPARES_DIR
        self._template = template_id
        self._count = count
        self._init_argv = init_argv
        self._refill_delay_s = refill_delay_s
        self._init_env = init_env
        self._ready: list[Path] = []
        self._taken = trio.Event()
        self._filled = trio.Event()

    def statistics(self) -> int:
        """How many spares are ready now."""
        return len(self._ready)

    def take(self, template_id: str, dest: Path) -> bool:
        """Move a ready spare of ``template_id`` to ``dest`` (which must not exist).

        Returns:
            ``True`` when ``dest`` is now a complete workspace; ``False`` when no spare was
            ready (the caller creates the workspace itself).
        """
        if template_id != self._template or (dest.exists() and any(dest.iterdir())):
            return False
        while self._ready:
            spare = self._ready.pop(0)
            self._taken.set()
            try:
                (spare / _MARKER).unlink()
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.rename(spare, dest)
            except OSError as exc:
                log.warning("spare workspace %s unusable: %s", spare.name, exc)
                shutil.rmtree(spare, ignore_errors=True)
                continue
            return True
        return False

    async def wait_filled(self) -> None:
        """Wait until ``count`` spares are ready."""
        while len(self._ready) < self._count:
            await self._filled.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the spares ready until cancelled; ``started()`` after adopting the complete
        spares left on disk by an earlier run (incomplete ones are removed).

        Cancellation: an ``init-workspace`` in progress is killed (its group) and its
        half-made directory is removed the next time the backend starts.
        """
        await trio.to_thread.run_sync(self._adopt_existing)
        task_status.started()
        if self._count <= 0:
            return
        while True:
            self._taken = trio.Event()
            while len(self._ready) < self._count:
                spare = self._dir / f"{self._template}-{secrets.token_hex(6)}"
                if await self._make(spare):
                    self._ready.append(spare)
                else:
                    await trio.sleep(30)  # e.g. npm unreachable: do not spin
            self._filled.set()
            self._filled = trio.Event()
            await self._taken.wait()
            await trio.sleep(self._refill_delay_s)

    async def _make(self, spare: Path) -> bool:
        await trio.to_thread.run_sync(lambda: self._dir.mkdir(parents=True, exist_ok=True))
        result = await trio.run_process(
            self._init_argv(spare, self._template),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            start_new_session=True,
            deliver_cancel=interrupt_group,
            env=self._init_env,
        )
        if result.returncode != 0:
            log.warning(
                "could not prepare a spare workspace: %s",
                result.stderr.decode(errors="replace")[-600:].strip(),
            )
            await trio.to_thread.run_sync(lambda: shutil.rmtree(spare, ignore_errors=True))
            return False
        await trio.to_thread.run_sync((spare / _MARKER).touch)
        return True

    def _adopt_existing(self) -> None:
        if not self._dir.is_dir():
            return
        for entry in sorted(self._dir.iterdir()):
            complete = (entry / _MARKER).exists() and entry.name.startswith(self._template + "-")
            if complete and len(self._ready) < self._count:
                self._ready.append(entry)
            else:
                shutil.rmtree(entry, ignore_errors=True)
