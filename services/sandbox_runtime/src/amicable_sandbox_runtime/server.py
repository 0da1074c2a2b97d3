"""``serve``: opens the workspace jail, starts the dev-server supervisor and runs hypercorn."""

from __future__ import annotations

import json
import os
import tempfile
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config as HypercornConfig

from .app import create_app
from .listener import serve_isolated
from .paths import Jail
from .supervisor import PreviewSupervisor
from .wsguard import WebSocketRejectionGuard

if TYPE_CHECKING:
    from pathlib import Path

    from .config import RuntimeConfig


def write_ready_file(path: Path, port: int) -> None:
    """Atomically write ``{"port": port, "pid": <this pid>}`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump({"port": port, "pid": os.getpid()}, fh)
    os.replace(tmp, path)


async def serve(
    config: RuntimeConfig, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the runtime API for ``config.workspace`` until cancelled.

    Calls ``task_status.started(port)`` with the bound port once listening (and after writing
    ``config.ready_file`` when set). The dev server is started before listening.

    Cancellation:
        hypercorn stops, then the supervisor kills and reaps the dev server's process group.
    """
    jail = Jail(config.workspace)
    try:
        supervisor = PreviewSupervisor(config)
        app = WebSocketRejectionGuard(create_app(config, jail, supervisor))
        hconfig = HypercornConfig()
        hconfig.bind = [
            f"[{config.host}]:{config.port}"
            if ":" in config.host
            else f"{config.host}:{config.port}"
        ]
        hconfig.accesslog = None
        hconfig.errorlog = "-"
        hconfig.graceful_timeout = 2.0
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            port = await nursery.start(serve_isolated, app, hconfig)
            if config.ready_file is not None:
                write_ready_file(config.ready_file, port)
            task_status.started(port)
    finally:
        jail.close()
