"""``amicable-agent``: run the agent service (reads the environment once, here)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from functools import partial
from typing import TYPE_CHECKING

import attrs
import trio

from .config import AgentConfig
from .errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from .loop.api import TurnEngine

log = logging.getLogger("amicable_agent")


def build_engine(env: Mapping[str, str]) -> TurnEngine | None:
    """The LLM loop if it is part of this build and a model is configured, else None.

    Raises:
        ConfigError: a loop setting is malformed (``LoopConfigError``).
    """
    try:
        from .loop.engine import create_engine  # type: ignore[attr-defined,unused-ignore]
        from .loop.settings import LoopSettings  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    settings = LoopSettings.from_env(env)
    if not settings.model_configured:
        return None
    engine: TurnEngine = create_engine(settings)
    _load_providers({settings.provider, *(spec.provider for spec in settings.models)})
    return engine


def _load_providers(providers: set[str]) -> None:
    """Import the model SDKs now, before serving: importing one at the first turn blocks
    the event loop for seconds on a busy machine (long enough to miss a turn-lease
    heartbeat and lose the project to another replica)."""
    import importlib

    for provider in sorted(providers):
        with contextlib.suppress(ImportError):
            importlib.import_module(f"amicable_agent.loop.{provider}_api")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``amicable-agent``."""
    parser = argparse.ArgumentParser(
        prog="amicable-agent",
        description="Amicable agent: editor WebSocket, projects API, sandbox lifecycle. "
        "Configured by environment variables (see services/agent/README.md).",
    )
    parser.add_argument("--port", type=int, help="public port (overrides AMICABLE_AGENT_PORT)")
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow a non-loopback address without a login (AMICABLE_INSECURE_NO_AUTH=1)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per resolver call is noise
    env = dict(os.environ)
    try:
        config = AgentConfig.from_env(env)
        engine = build_engine(env)
    except ConfigError as exc:
        sys.exit(f"amicable-agent: {exc}")

    if args.port is not None:
        config = attrs.evolve(config, port=args.port)
    if args.insecure_no_auth:
        config = attrs.evolve(config, auth=attrs.evolve(config.auth, insecure_no_auth=True))
    from .server import check_exposure

    try:
        check_exposure(config)
    except ConfigError as exc:
        sys.exit(f"amicable-agent: {exc}")
    kube_config = None
    if config.sandbox_backend == "kubernetes":
        from amicable_agent.sandboxes.kubernetes.backend import KubernetesBackendConfig

        try:
            kube_config = KubernetesBackendConfig.from_env(env)
        except ValueError as exc:
            sys.exit(f"amicable-agent: invalid Kubernetes backend setting: {exc}")
    container_config = None
    if config.sandbox_backend == "container":
        from amicable_agent.sandboxes.container.config import (
            ContainerBackendConfig,
            sandbox_hmr_env,
        )

        try:
            container_config = ContainerBackendConfig.from_env(env)
        except ValueError as exc:
            sys.exit(f"amicable-agent: invalid container backend setting: {exc}")
        hmr = sandbox_hmr_env(
            preview_base_domain=config.preview_base_domain,
            preview_scheme=config.preview_scheme,
            preview_public_port=config.preview_public_port,
        )
        # the agent's own reading of AMICABLE_WARM_POOL_TEMPLATES (known templates only)
        container_config = attrs.evolve(
            container_config, sandbox_env=hmr, warm_pool_templates=config.pooled_templates
        )
    from .server import serve

    try:
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(
                partial(
                    _serve_until_drained,
                    partial(
                        serve,
                        config,
                        engine=engine,
                        kube_config=kube_config,
                        container_config=container_config,
                    ),
                )
            )
    except* (StoreUnavailable, ConfigError) as group:
        sys.exit(f"amicable-agent: {group.exceptions[0]}")


async def _serve_until_drained(serve: Callable[..., Awaitable[None]]) -> None:
    """Run the server; the first SIGTERM drains it (readiness fails, running turns finish
    within ``AMICABLE_SHUTDOWN_GRACE_S``, leases are handed over), a second one stops it."""
    drain = trio.Event()
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            await serve(drain=drain)
            nursery.cancel_scope.cancel()

        nursery.start_soon(run)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                if drain.is_set():
                    nursery.cancel_scope.cancel()
                    return
                log.info("SIGTERM: draining")
                drain.set()


if __name__ == "__main__":
    main()
