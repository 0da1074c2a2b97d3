"""``amicable up``: the whole product on one machine, in one Trio nursery.

The agent runs in-process; ``amicable-preview-router`` runs as a child in its own process
group, resolving preview hosts through the agent's internal port with a random shared token.
Ctrl-C or SIGTERM stops everything: sessions, sandboxes (runtime + Vite process groups), the
router. Nothing is left running. Every child is on a leash (:mod:`.leash`): a ``kill -9`` of
the agent takes them along, and what an earlier run left behind anyway is ended before this
one binds a port. A port in use is one readable line naming the flag that changes it.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
import tempfile
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import attrs
import trio
from amicable_settings import errors_as, integer, string

from .config import AgentConfig, random_token
from .errors import ConfigError, PortInUse, StoreUnavailable
from .leash import LeashedProcess, run_leashed, sweep_run_dir

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .loop.api import TurnEngine

log = logging.getLogger("amicable")

ROUTER_START_TIMEOUT_S = 30.0
_E = TypeVar("_E", bound=BaseException)


@attrs.frozen
class UpOptions:
    """What ``amicable up`` was asked to do."""

    config: AgentConfig
    preview_port: int
    router_command: tuple[str, ...]
    ready_file: Path | None = None


def _router_command(env: Mapping[str, str]) -> tuple[str, ...]:
    explicit = string(env, "AMICABLE_PREVIEW_ROUTER_COMMAND", "").split()
    if explicit:
        return tuple(explicit)
    sibling = Path(sys.executable).parent / "amicable-preview-router"
    return (str(sibling),) if sibling.exists() else ("amicable-preview-router",)


def _default_editor_dist() -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parents[4]):
        dist = base / "frontend" / "dist"
        if (dist / "index.html").is_file():
            return dist
    return None


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def _kill_group_gracefully(process: LeashedProcess) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with trio.move_on_after(5):
        await process.wait()
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_router(
    options: UpOptions,
    internal_port: int,
    token: str,
    *,
    task_status: trio.TaskStatus[tuple[int, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the preview router child until cancelled; started((port, pid)) once it listens.

    Cancellation: the router's process group gets SIGTERM, then SIGKILL after 5 s.
    """
    config = options.config
    with tempfile.TemporaryDirectory(prefix="amicable-router-") as tmp:
        ready = Path(tmp) / "ready.json"
        env = dict(os.environ)
        env.update(
            PREVIEW_BASE_DOMAIN=config.preview_base_domain,
            AMICABLE_PREVIEW_ROUTER_PORT=str(options.preview_port),
            AMICABLE_PREVIEW_ROUTER_HOST=config.host,
            AMICABLE_PREVIEW_RESOLVER_URL=(
                f"http://127.0.0.1:{internal_port}/internal/preview/resolve"
            ),
            AMICABLE_PREVIEW_RESOLVER_TOKEN=token,
        )
        env.pop("AMICABLE_PREVIEW_RESOLVER_TOKEN_FILE", None)
        argv = [*options.router_command, "--ready-file", str(ready)]
        async with trio.open_nursery() as nursery:
            process: LeashedProcess = await nursery.start(
                partial(
                    run_leashed,
                    argv,
                    env=env,
                    deliver_cancel=_kill_group_gracefully,
                    record_dir=config.data_dir / "run",
                )
            )
            with trio.fail_after(ROUTER_START_TIMEOUT_S):
                # The router writes the file; there is nothing to wait on but the file.
                while not ready.exists():
                    if process.returncode is not None:
                        raise ConfigError(f"the preview router exited ({process.returncode})")
                    await trio.sleep(0.05)
            port = int(json.loads(ready.read_text())["port"])
            task_status.started((port, process.pid))
            await process.wait()
            raise ConfigError(f"the preview router exited ({process.returncode})")


def check_ports_free(options: UpOptions) -> None:
    """Raise :class:`PortInUse` naming the port and its flag when a fixed port is taken
    (before anything starts, so the answer is one line, not a failed nursery)."""
    import socket

    config = options.config
    wanted = [
        (config.host, config.port, "--port or AMICABLE_AGENT_PORT"),
        (config.host, options.preview_port, "--preview-port or AMICABLE_PREVIEW_ROUTER_PORT"),
        ("127.0.0.1", config.internal_port, "AMICABLE_AGENT_INTERNAL_PORT"),
    ]
    for host, port, flag in wanted:
        if not port:
            continue
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            continue  # an unusable host is reported by the bind itself
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise PortInUse(
                    f"port {port} on {host} is in use ({exc.strerror}); stop what uses it "
                    f"or choose another with {flag}"
                ) from None


def sandbox_mode(config: AgentConfig) -> str:
    """How this run's sandboxes are isolated, for the start-up banner (the local backend
    refuses to start when ``auto``/``bwrap`` isolation is impossible, so running means it
    is on)."""
    if config.sandbox_backend != "local":
        return f"{config.sandbox_backend} backend"
    if config.local_isolation == "none":
        return (
            "NOT isolated (AMICABLE_LOCAL_ISOLATION=none): project code runs as this user, "
            "with its files and network"
        )
    return (
        "isolated (bubblewrap: own user, PID, IPC, UTS and network namespaces, only the "
        "workspace writable; pasta: internet only, nothing of this machine)"
    )


async def up(
    options: UpOptions,
    engine: TurnEngine | None,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run router + agent until cancelled; ``started(editor_url)``."""
    from .server import serve

    config = options.config
    stale = await trio.to_thread.run_sync(sweep_run_dir, config.data_dir / "run")
    if stale:
        log.warning("stopped %d processes an earlier run left running", stale)
    check_ports_free(options)
    internal_port = config.internal_port or _free_port("127.0.0.1")
    token = config.preview_resolver_token or random_token()
    async with trio.open_nursery() as nursery:
        router_port, router_pid = await nursery.start(run_router, options, internal_port, token)
        router_host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "localhost") else config.host
        router_host = f"[{router_host}]" if ":" in router_host else router_host
        agent_config = attrs.evolve(
            config,
            internal_port=internal_port,
            internal_host="127.0.0.1",
            preview_resolver_token=token,
            preview_public_port=router_port,
            # Screenshots load previews through this router, as the person's browser does.
            browser=attrs.evolve(
                config.browser,
                router_url=config.browser.router_url or f"http://{router_host}:{router_port}",
            ),
        )
        if config.hasura is not None and not config.hasura.public_base_url:
            # Previews call the DB proxy on the agent: amicable-db.js needs its absolute URL.
            port = config.port or _free_port(config.host)
            host = "localhost" if config.host in ("127.0.0.1", "0.0.0.0", "::") else config.host
            agent_config = attrs.evolve(
                agent_config,
                port=port,
                hasura=attrs.evolve(config.hasura, public_base_url=f"http://{host}:{port}"),
            )
        ports = await nursery.start(partial(serve, agent_config, engine=engine))
        shown_host = "localhost" if config.host in ("127.0.0.1", "0.0.0.0", "::") else config.host
        url = f"http://{shown_host}:{ports.public}/"
        if options.ready_file is not None:
            tmp = options.ready_file.with_suffix(".tmp")
            tmp.write_text(
                json.dumps(
                    {
                        "url": url,
                        "port": ports.public,
                        "internal_port": ports.internal,
                        "preview_port": router_port,
                        "router_pid": router_pid,
                        "pid": os.getpid(),
                    }
                )
            )
            tmp.replace(options.ready_file)
        print(f"Amicable is running: open {url}", flush=True)
        print(f"Sandboxes: {sandbox_mode(config)}", flush=True)
        print(
            f"Previews: http://<project>.{config.preview_base_domain}:{router_port}/ "
            "- press Ctrl-C to stop.",
            flush=True,
        )
        task_status.started(url)


async def _main(options: UpOptions, engine: TurnEngine | None) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(up, options, engine)

            async def stop_on_signal() -> None:
                async for signum in signals:
                    print(f"\nstopping ({signal.Signals(signum).name})…", flush=True)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``amicable``."""
    parser = argparse.ArgumentParser(
        prog="amicable", description="Amicable, the self-hostable AI web-app builder."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up_p = sub.add_parser(
        "up", help="run agent, preview router and editor on this machine (Ctrl-C stops all)"
    )
    up_p.add_argument("--data-dir", type=Path, help="projects and sandboxes (AMICABLE_DATA_DIR)")
    up_p.add_argument("--port", type=int, help="editor/agent port (default 8000; 0 = any)")
    up_p.add_argument("--preview-port", type=int, help="preview router port (default 8080)")
    up_p.add_argument("--host", help="listen address (default 127.0.0.1)")
    up_p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow a non-loopback --host without a login (AMICABLE_INSECURE_NO_AUTH=1): "
        "anyone who can reach it controls every project",
    )
    up_p.add_argument("--ready-file", type=Path, help="write the URLs/ports here as JSON once up")
    up_p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per resolver call is noise
    env = dict(os.environ)
    try:
        config = AgentConfig.from_env(env)
    except ConfigError as exc:
        sys.exit(f"amicable: {exc}")
    changes: dict[str, object] = {}
    if args.data_dir is not None:
        changes["data_dir"] = args.data_dir.expanduser().resolve()
    if args.port is not None:
        changes["port"] = args.port
    if args.host is not None:
        changes["host"] = args.host
    if config.editor_dist is None:
        changes["editor_dist"] = _default_editor_dist()
    runtime = Path(sys.executable).parent / "amicable-sandbox-runtime"
    if string(env, "AMICABLE_RUNTIME_COMMAND", None) is None and runtime.exists():
        changes["runtime_command"] = (str(runtime),)
    if "AMICABLE_AGENT_INTERNAL_PORT" not in env:
        changes["internal_port"] = 0  # private to this machine: any free port
    if args.insecure_no_auth:
        changes["auth"] = attrs.evolve(config.auth, insecure_no_auth=True)
    config = attrs.evolve(config, **changes)  # type: ignore[arg-type]
    from .__main__ import build_engine
    from .server import check_exposure

    try:
        check_exposure(config)
        with errors_as(ConfigError):
            preview_port = args.preview_port
            if preview_port is None:
                preview_port = integer(
                    env, "AMICABLE_PREVIEW_ROUTER_PORT", 8080, minimum=0, maximum=65535
                )
        engine = build_engine(env)
    except ConfigError as exc:
        sys.exit(f"amicable: {exc}")
    options = UpOptions(
        config=config,
        preview_port=preview_port,
        router_command=_router_command(env),
        ready_file=args.ready_file,
    )
    if engine is None:
        print(
            "note: no model is configured (ANTHROPIC_API_KEY, or DEEPAGENTS_MODEL=openai:<model> "
            "with OPENAI_BASE_URL, docs/models.md); the editor works but cannot run the agent."
        )
    try:
        trio.run(_main, options, engine)
    except* (ConfigError, StoreUnavailable) as group:
        sys.exit(f"amicable: {_first(group)}")
    except* OSError as group:
        first = _first(group)
        if first.errno != errno.EADDRINUSE:
            raise
        sys.exit(
            f"amicable: a port is in use ({first}); choose others with --port and "
            "--preview-port (AMICABLE_AGENT_PORT, AMICABLE_PREVIEW_ROUTER_PORT)"
        )


def _first(group: BaseExceptionGroup[_E]) -> _E:
    """The first leaf of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


if __name__ == "__main__":
    main()
