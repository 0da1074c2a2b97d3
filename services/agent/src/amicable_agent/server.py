"""``serve(config)``: open the store, the sandbox backend and the session manager, then run
hypercorn on the public and internal ports."""

from __future__ import annotations

import gc
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import attrs
import trio
from amicable_protocol.messages import MAX_FRAME_BYTES
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .db import open_app_database, store_origin_lookup
from .errors import ConfigError
from .gitsync import open_git_sync
from .http.app import WS_PATHS, create_internal_app, create_public_app, create_ws_handler
from .http.state import AppState
from .http.ws_server import serve_public
from .sandboxes.runtime_client import runtime_client_for
from .sessions import SessionDeps, open_session_manager
from .sessions.checkpoints import CheckpointPolicy
from .store import open_store

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    from .config import AgentConfig
    from .loop.api import RuntimeClient, TurnEngine
    from .sandboxes.base import SandboxBackend, SandboxHandle
    from .store.base import Store

log = logging.getLogger(__name__)


@attrs.frozen
class ServerPorts:
    """The bound ports, given to ``task_status.started``."""

    public: int
    internal: int


def _hypercorn_config(host: str, port: int) -> HypercornConfig:
    cfg = HypercornConfig()
    cfg.bind = [f"{host}:{port}"]
    cfg.websocket_max_message_size = MAX_FRAME_BYTES
    cfg.graceful_timeout = 2.0
    cfg.accesslog = None
    cfg.errorlog = log
    return cfg


def _port(binds: list[str]) -> int:
    return int(binds[0].rsplit(":", 1)[1])


async def open_backend(
    config: AgentConfig, store: Store, stack: AsyncExitStack, kube_config: Any = None
) -> SandboxBackend:
    """The configured sandbox backend, closed when ``stack`` closes.

    Raises:
        ConfigError: ``kubernetes`` was chosen without a Kubernetes backend config.
    """
    if config.sandbox_backend == "kubernetes":
        from amicable_agent.sandboxes.kubernetes.backend import open_kubernetes_backend

        if kube_config is None:
            raise ConfigError("AMICABLE_SANDBOX_BACKEND=kubernetes needs its configuration")

        async def project_exists(project_id: str) -> bool:
            return await store.get_project(project_id) is not None

        backend: SandboxBackend = await stack.enter_async_context(
            open_kubernetes_backend(kube_config, project_exists=project_exists)
        )
        return backend
    from amicable_agent.sandboxes.local.backend import LocalBackendConfig, open_local_backend

    return await stack.enter_async_context(
        open_local_backend(LocalBackendConfig.from_agent_config(config))
    )


async def serve(
    config: AgentConfig,
    *,
    backend: SandboxBackend | None = None,
    engine: TurnEngine | None = None,
    runtime_factory: Callable[[SandboxHandle], AbstractAsyncContextManager[RuntimeClient]]
    | None = None,
    kube_config: Any = None,
    task_status: trio.TaskStatus[ServerPorts] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the agent until cancelled.

    Args:
        config: the agent config (ports may be 0).
        backend: a sandbox backend to use instead of the configured one (tests).
        engine: the LLM loop, or None (``user`` then answers ``model_not_configured``);
            closed (``aclose``) when the server stops.
        runtime_factory: how to open a runtime client for a handle (tests).
        kube_config: ``KubernetesBackendConfig`` when the backend is ``kubernetes``.
        task_status: receives :class:`ServerPorts` once both ports listen.

    Cancellation: sessions are closed (turns cancelled), the backend stops its sandboxes,
    the store is closed.
    """
    async with AsyncExitStack() as stack:
        engine_close = getattr(engine, "aclose", None)
        if engine_close is not None:
            stack.push_async_callback(engine_close)  # serve owns the engine it was given
        store = await stack.enter_async_context(open_store(config))
        if backend is None:
            backend = await open_backend(config, store, stack, kube_config)
        db = await stack.enter_async_context(
            open_app_database(config.hasura, origins=store_origin_lookup(store, config.preview_url))
        )
        git_sync = (
            await stack.enter_async_context(open_git_sync(config.git_sync, store))
            if config.git_sync is not None
            else None
        )
        if db is not None:
            log.info(
                "per-app databases through Hasura at %s", config.hasura and config.hasura.base_url
            )
        if git_sync is not None and config.git_sync is not None:
            log.info(
                "GitLab persistence to %s/%s", config.git_sync.base_url, config.git_sync.group_path
            )
        deps = SessionDeps(
            store=store,
            backend=backend,
            runtime_factory=runtime_factory or runtime_client_for,
            engine=engine,
            preview_url=config.preview_url,
            default_template=config.template_id,
            idle_timeout_s=config.session_idle_timeout_s,
            provision_timeout_s=config.provision_timeout_s,
            db=db,
            git_sync=git_sync,
            checkpoints=CheckpointPolicy(
                max_file_bytes=config.checkpoint_max_file_bytes,
                max_history_bytes=config.checkpoint_max_history_bytes,
            ),
        )
        manager = await stack.enter_async_context(open_session_manager(deps))
        async with trio.open_nursery() as nursery:
            state = AppState(
                config=config, store=store, backend=backend, manager=manager,
                background=nursery, db=db, git_sync=git_sync,
            )  # fmt: skip
            public_port = await nursery.start(
                lambda task_status: serve_public(
                    create_public_app(state),
                    _hypercorn_config(config.host, config.port),
                    host=config.host, port=config.port, ws_paths=WS_PATHS,
                    ws_handler=create_ws_handler(state), task_status=task_status,
                )
            )  # fmt: skip
            internal_binds = await nursery.start(
                hypercorn_serve,
                create_internal_app(state),
                _hypercorn_config(config.internal_host, config.internal_port),
            )
            # Everything loaded so far (the SDK, pydantic, quart, hypercorn: ~10^5 objects)
            # lives as long as the process: keep it out of the cyclic GC's full passes,
            # which otherwise stall every stream for a few hundred ms now and then.
            gc.freeze()
            task_status.started(ServerPorts(public_port, _port(internal_binds)))
