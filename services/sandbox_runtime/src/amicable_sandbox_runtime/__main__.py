"""Command line: ``amicable-sandbox-runtime [serve] | init-workspace | templates``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from functools import partial
from pathlib import Path

import trio

from .config import RuntimeConfig, load_config
from .errors import ConfigError, TemplateError
from .templates import DEFAULT_CACHE_DIR, DEFAULT_TEMPLATE, init_workspace, template_ids


async def serve_until_signalled(config: RuntimeConfig) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly (dev server group included)."""
    from .server import serve  # the web stack is only imported when serving

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, config)
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
        "--template", default=DEFAULT_TEMPLATE, help="template id (default vite; list: templates)"
    )
    init_p.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"dependency cache: node_modules, .venv (default {DEFAULT_CACHE_DIR})",
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
    if args.command == "templates":
        print("\n".join(template_ids()))
        return
    if args.command == "init-workspace":
        log = partial(print, flush=True)
        try:
            # absolute: the helpers run cp/npm with another cwd, where relative paths break
            dest, cache_dir = args.dest.absolute(), args.cache_dir.absolute()
            trio.run(
                partial(init_workspace, dest, args.template, cache_dir, log, hardlink=args.hardlink)
            )
        except TemplateError as exc:
            sys.exit(f"init-workspace: {exc}")
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
    trio.run(serve_until_signalled, config)


if __name__ == "__main__":
    main()
