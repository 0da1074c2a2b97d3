"""``serve``: opens the workspace jail, starts the dev-server supervisor and runs the HTTP stack.

The dev server is spawned first, before the HTTP stack is even imported: those imports take
about as long as Vite's own start, so doing them while Vite boots takes them off the
cold-start path. They run in worker threads so the supervisor keeps pumping the dev server's
output meanwhile. The runtime listens (and writes its ready file) as soon as hypercorn and
the fast routes (``fastpath.py``: health, readiness, preview control, exec, file read/write)
are up: ``amicable_frontdoor`` serves them on hypercorn's connection handling, the hot
requests answered by the raw HTTP/1.1 lane of ``httplane.py`` before hypercorn sees them;
quart, the slowest import, is loaded after that for the remaining routes — once the
dev server answers (and had :data:`SETTLE_S` for the preview's first page) or has stopped, a
request needs it, or :data:`FULL_APP_DEFER_S` passed,
whichever comes first, so that it does not compete with Vite's start for the CPU.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from .paths import Jail
from .supervisor import PreviewSupervisor

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from .asgi import AsgiEntry
    from .config import RuntimeConfig
    from .fastpath import FastRoutes
    from .httplane import HttpLane


#: Longest wait for the dev server before the full (quart) app is built anyway.
FULL_APP_DEFER_S = 10.0
#: After the dev server answers, how long the build still waits: the preview's first page
#: is loaded right then, on the same cores (a request that needs the app ends the wait).
SETTLE_S = 1.5


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return when the first of ``waits`` returns (the others are cancelled)."""
    async with trio.open_nursery() as nursery:

        async def run(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(run, wait)


async def _dev_server_settled(supervisor: PreviewSupervisor) -> None:
    """The dev server answers and has had :data:`SETTLE_S` to serve its first pages (the
    preview's first load follows readiness at once), or it is not starting any more."""
    status = await supervisor.wait_state("running", "backoff", "exhausted", "stopped")
    if status.state == "running":
        await trio.sleep(SETTLE_S)


def write_ready_file(path: Path, port: int) -> None:
    """Atomically write ``{"port": port, "pid": <this pid>}`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump({"port": port, "pid": os.getpid()}, fh)
    os.replace(tmp, path)


def _build_front(
    config: RuntimeConfig, jail: Jail, supervisor: PreviewSupervisor
) -> tuple[AsgiEntry, Any, Any, HttpLane]:
    """Import hypercorn and the fast routes; build them, their ASGI entry (the app), the
    hypercorn config and the raw HTTP/1.1 lane in front of hypercorn (blocking)."""
    import amicable_frontdoor  # noqa: F401 - imported here, off the event loop
    from hypercorn.config import Config as HypercornConfig

    from .asgi import AsgiEntry
    from .fastpath import FastRoutes
    from .files import WORKER_THREADS, Files
    from .httplane import HttpLane
    from .wsguard import WebSocketRejectionGuard

    files = Files(jail, max_file_bytes=config.max_file_bytes)
    fast = FastRoutes(config, jail, supervisor, files, trio.CapacityLimiter(WORKER_THREADS))
    hconfig = HypercornConfig()
    hconfig.bind = [
        f"[{config.host}]:{config.port}" if ":" in config.host else f"{config.host}:{config.port}"
    ]
    hconfig.accesslog = None
    hconfig.errorlog = "-"
    hconfig.graceful_timeout = 2.0
    entry = AsgiEntry(fast)
    return entry, WebSocketRejectionGuard(entry), hconfig, HttpLane(fast, hconfig)


def _build_full_app(fast: FastRoutes) -> Any:
    """Import quart and build the app behind the fast routes (blocking)."""
    from .app import create_app

    return create_app(fast)


async def serve(
    config: RuntimeConfig,
    *,
    spawned: subprocess.Popen[bytes] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the runtime API for ``config.workspace`` until cancelled.

    Calls ``task_status.started(port)`` with the bound port once listening (and after writing
    ``config.ready_file`` when set). The dev server is started before the HTTP stack is
    imported, so the two start in parallel; routes other than the fast ones answer once
    quart has loaded. ``spawned``: the dev server, already started before trio was imported
    (``__main__``); the supervisor adopts it as its first run.

    Cancellation:
        The front door stops (connections cancelled, bounded by twice the 2 s graceful
        timeout), then the supervisor kills and reaps the dev server's process group.
    """
    jail = Jail(config.workspace)
    try:
        supervisor = PreviewSupervisor(config, spawned=spawned)
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            entry, app, hconfig, lane = await trio.to_thread.run_sync(
                _build_front, config, jail, supervisor
            )
            import amicable_frontdoor  # imported by the thread above

            port = await nursery.start(partial(amicable_frontdoor.serve, app, hconfig, lane=lane))
            if config.ready_file is not None:
                write_ready_file(config.ready_file, port)
            task_status.started(port)
            with trio.move_on_after(FULL_APP_DEFER_S):
                await _first_of(entry.app_wanted.wait, partial(_dev_server_settled, supervisor))
            # the rest of the API: requests for it wait until it is built
            entry.set_app(await trio.to_thread.run_sync(_build_full_app, entry.fast))
    finally:
        jail.close()
