"""``amicable-preview-router``: the command line (the only place that reads the environment)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from .config import config_from_env
from .errors import ConfigError
from .server import serve

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .config import RouterConfig

log = logging.getLogger("amicable_preview_router")

_READY_LINE = b"ready\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amicable-preview-router",
        description=(
            "Reverse proxy for Amicable previews: routes <label>.$PREVIEW_BASE_DOMAIN to the "
            "sandbox's dev server over HTTP/1.1 and WebSocket. Configured from the environment "
            "(see the service README); the options below override it."
        ),
    )
    parser.add_argument("--host", help="listen address (AMICABLE_PREVIEW_ROUTER_HOST)")
    parser.add_argument("--port", type=int, help="listen port (AMICABLE_PREVIEW_ROUTER_PORT)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port with SO_REUSEPORT (default 1)",
    )
    parser.add_argument(
        "--ready-file", type=Path, help='write {"port": N} here (atomically) once listening'
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)
    return parser


def _write_ready_file(path: Path, port: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"port": port}))
    tmp.replace(path)


async def _kill_group(process: trio.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with trio.move_on_after(5):
        await process.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def _start_worker(
    port: int,
    log_level: str,
    nursery: trio.Nursery,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    cmd = [
        *(sys.executable, "-m", "amicable_preview_router", "--worker-child"),
        *("--port", str(port), "--log-level", log_level),
    ]
    run = functools.partial(
        trio.run_process,
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
        deliver_cancel=_kill_group,
    )
    process: trio.Process = await nursery.start(run)
    assert process.stdout is not None
    line = b""
    with trio.fail_after(30):
        while not line.endswith(b"\n"):
            chunk = await process.stdout.receive_some(64)
            if not chunk:
                raise RuntimeError("a worker process exited before listening")
            line += chunk
    task_status.started()


async def _watch_parent(cancel_scope: trio.CancelScope) -> None:
    # A worker exits when its parent goes away (its stdin pipe closes).
    stdin = trio.lowlevel.FdStream(os.dup(0))
    async with stdin:
        while await stdin.receive_some(64):
            pass
    cancel_scope.cancel()


async def _watch_signals(cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            cancel_scope.cancel()
            return


async def _run(
    config: RouterConfig, workers: int, ready_file: Path | None, child: bool, log_level: str
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, nursery.cancel_scope)
        port = await nursery.start(serve, config)
        if child:
            nursery.start_soon(_watch_parent, nursery.cancel_scope)
            os.write(1, _READY_LINE)
            return
        for _ in range(workers - 1):
            await nursery.start(_start_worker, port, log_level, nursery)
        if ready_file is not None:
            _write_ready_file(ready_file, port)
        log.info("preview router ready on port %d with %d worker(s)", port, workers)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``amicable-preview-router``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_env(os.environ)
    except ConfigError as exc:
        sys.exit(f"amicable-preview-router: {exc}")
    if args.workers < 1:
        sys.exit("amicable-preview-router: --workers must be at least 1")
    config = attrs.evolve(
        config,
        host=config.host if args.host is None else args.host,
        port=config.port if args.port is None else args.port,
        reuse_port=args.workers > 1 or args.worker_child,
    )
    trio.run(_run, config, args.workers, args.ready_file, args.worker_child, args.log_level)


if __name__ == "__main__":
    main()
