"""Command line: ``amicable-sandbox-runtime [serve] | init-workspace | templates``.

``serve`` spawns the dev server before it imports trio (``spawn.py``): on a cold start the
dev server's own start is the critical path, and trio's import is a good part of ours.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from .config import load_config
from .errors import ConfigError

if TYPE_CHECKING:
    import subprocess

    from .config import RuntimeConfig


async def serve_until_signalled(
    config: RuntimeConfig, spawned: subprocess.Popen[bytes] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly (dev server group included).

    ``spawned``: the dev server, already started (see :func:`.spawn.spawn_early`)."""
    import trio

    from .server import serve  # the web stack is only imported when serving

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve, config, spawned=spawned))
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amicable-sandbox-runtime",
        description="Amicable sandbox runtime: authenticated file/exec API for one workspace "
        "and supervisor of its dev server. Configured by environment variables "
        "(see the README); with no subcommand it serves.",
    )
    sub = parser.add_subparsers(dest="command")
    serve_p = sub.add_parser("serve", help="serve the runtime API (the default)")
    for p in (parser, serve_p):
        p.add_argument(
            "--insecure-no-auth",
            action="store_true",
            help="serve /v1 without a bearer token (development only)",
        )
        p.add_argument("--no-preview", action="store_true", help="do not start the dev server")
        p.add_argument(
            "--ready-file",
            type=Path,
            help='once listening, atomically write {"port": …, "pid": …} JSON here',
        )
        p.add_argument("--port", type=int, help="override AMICABLE_RUNTIME_PORT (0 = any free)")
        p.add_argument("--workspace", type=Path, help="override AMICABLE_WORKSPACE")
    init_p = sub.add_parser(
        "init-workspace", help="copy a template into DEST and provide its node_modules"
    )
    init_p.add_argument("dest", type=Path, metavar="DEST")
    init_p.add_argument(
        "--template", help="template id (default: the registry's default, vite; list: templates)"
    )
    init_p.add_argument(
        "--cache-dir",
        type=Path,
        help="dependency cache: node_modules, .venv (default ~/.cache/amicable/node_modules)",
    )
    init_p.add_argument(
        "--hardlink",
        action="store_true",
        help="hard-link node_modules from the cache instead of copying (only where DEST is "
        "the cache's one workspace, e.g. an image: a write would change the cache)",
    )
    sub.add_parser("templates", help="list the bundled template ids")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``amicable-sandbox-runtime``."""
    args = _parser().parse_args(argv)
    if args.command in ("templates", "init-workspace"):
        _workspace_commands(args)
        return
    try:
        config = load_config(
            os.environ,
            insecure_no_auth=args.insecure_no_auth,
            no_preview=args.no_preview,
            ready_file=args.ready_file,
            port=args.port,
            workspace=args.workspace,
        )
    except ConfigError as exc:
        sys.exit(f"amicable-sandbox-runtime: {exc}")
    if not config.workspace.is_dir():
        sys.exit(f"amicable-sandbox-runtime: workspace {config.workspace} is not a directory")
    from .spawn import kill_children, spawn_early

    # until trio's signal receiver is up, SIGTERM unwinds through the finally below (so the
    # dev server, in a session of its own, does not outlive us)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        spawned = spawn_early(config)  # before trio's import: see the module docstring
        import trio

        trio.run(serve_until_signalled, config, spawned)
    finally:
        kill_children()  # normally none is left: the supervisor stopped the dev server


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _workspace_commands(args: argparse.Namespace) -> None:
    """``templates`` and ``init-workspace``."""
    import trio

    from .errors import TemplateError
    from .templates import DEFAULT_CACHE_DIR, DEFAULT_TEMPLATE, init_workspace, template_ids

    if args.command == "templates":
        print("\n".join(template_ids()))
        return
    log = partial(print, flush=True)
    try:
        # absolute: the helpers run cp/npm with another cwd, where relative paths break
        dest = args.dest.absolute()
        cache_dir = (args.cache_dir or DEFAULT_CACHE_DIR).absolute()
        trio.run(
            partial(
                init_workspace,
                dest,
                args.template or DEFAULT_TEMPLATE,
                cache_dir,
                log,
                hardlink=args.hardlink,
            )
        )
    except TemplateError as exc:
        sys.exit(f"init-workspace: {exc}")


if __name__ == "__main__":
    main()
