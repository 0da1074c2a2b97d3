"""``serve(config)``: open the store, the sandbox backend and the session manager, then serve
the public port (``amicable_frontdoor``: the editor WebSocket lane in front of hypercorn) and
the internal port (hypercorn)."""

from __future__ import annotations

import gc
import logging
from contextlib import AsyncExitStack
from functools import partial
from typing import TYPE_CHECKING, Any

import amicable_frontdoor
import attrs
import httpx
import trio
from amicable_protocol.messages import MAX_FRAME_BYTES
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .auth.access import Access
from .auth.config import is_loopback
from .auth.cookies import CookieSigner
from .auth.oidc import OidcClient
from .auth.origins import OriginPolicy
from .browser import PreviewAddress, open_preview_browser
from .db import open_app_database, store_origin_lookup
from .errors import ConfigError
from .gitsync import open_git_sync
from .http.app import WS_PATHS, create_internal_app, create_public_app, create_ws_handler
from .http.state import AppState
from .http.ws_server import WebSocketLane
from .sandboxes.runtime_client import runtime_client_for
from .sessions import SessionDeps, open_session_manager
from .sessions.checkpoints import CheckpointPolicy
from .sessions.lease import LeaseSettings
from .sessions.snapshots import Snapshots
from .snapshots import open_snapshot_store
from .store import open_store

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

    from .browser import PreviewBrowser
    from .config import AgentConfig
    from .db import AppDatabase
    from .gitsync import GitSync
    from .loop.api import RuntimeClient, TurnEngine
    from .loop.small_tasks import SmallTasks
    from .sandboxes.base import SandboxBackend, SandboxHandle
    from .sessions.manager import SessionManager
    from .snapshots import SnapshotStore
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


def _public_port(state: AppState) -> Callable[..., Awaitable[None]]:
    """The public port's server: the editor WebSocket lane in front of the public app."""
    config = state.config
    hconfig = _hypercorn_config(config.host, config.port)
    hconfig.backlog = 0xFFFF  # as trio.open_tcp_listeners, which bound this port before
    lane = WebSocketLane(
        WS_PATHS,
        create_ws_handler(state),
        keep_alive_timeout_s=float(hconfig.keep_alive_timeout),
        max_message_size=int(hconfig.websocket_max_message_size),
    )
    return partial(amicable_frontdoor.serve, create_public_app(state), hconfig, lane=lane)


def _port(binds: list[str]) -> int:
    return int(binds[0].rsplit(":", 1)[1])


async def open_backend(
    config: AgentConfig,
    store: Store,
    stack: AsyncExitStack,
    kube_config: Any = None,
    container_config: Any = None,
) -> SandboxBackend:
    """The configured sandbox backend, closed when ``stack`` closes.

    Raises:
        ConfigError: ``kubernetes`` was chosen without a Kubernetes backend config.
    """

    async def project_exists(project_id: str) -> bool:
        return await store.get_project(project_id) is not None

    if config.sandbox_backend == "kubernetes":
        from amicable_agent.sandboxes.kubernetes.backend import open_kubernetes_backend

        if kube_config is None:
            raise ConfigError("AMICABLE_SANDBOX_BACKEND=kubernetes needs its configuration")

        backend: SandboxBackend = await stack.enter_async_context(
            open_kubernetes_backend(kube_config, project_exists=project_exists)
        )
        return backend
    if config.sandbox_backend == "container":
        from amicable_agent.sandboxes.container.backend import open_container_backend

        if container_config is None:
            raise ConfigError("AMICABLE_SANDBOX_BACKEND=container needs its configuration")
        return await stack.enter_async_context(
            open_container_backend(container_config, project_exists=project_exists)
        )
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
    container_config: Any = None,
    drain: trio.Event | None = None,
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
        container_config: ``ContainerBackendConfig`` when the backend is ``container``.
        drain: set on SIGTERM: ``/readyz`` fails, no new turns start here, running ones
            get ``AMICABLE_SHUTDOWN_GRACE_S`` to finish, then every lease is handed over
            and the server returns.
        task_status: receives :class:`ServerPorts` once both ports listen.

    Cancellation: sessions are closed (turns cancelled), the backend stops its sandboxes,
    the store is closed.
    """
    config, policy = _checked(config)
    auth = config.auth
    async with AsyncExitStack() as stack:
        engine_close = getattr(engine, "aclose", None)
        if engine_close is not None:
            stack.push_async_callback(engine_close)  # serve owns the engine it was given
        store = await stack.enter_async_context(open_store(config))
        snapshot_store, db, git_sync, browser = await _open_integrations(config, store, stack)
        if backend is None:
            backend = await open_backend(config, store, stack, kube_config, container_config)
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
            browser=browser,
            snapshots=Snapshots(snapshot_store),
            small=_small_tasks(engine),
            leases=_lease_settings(config),
        )
        manager = await stack.enter_async_context(open_session_manager(deps))
        access = Access(auth, store, CookieSigner(auth.session_secret, auth.session_max_age_s))
        oidc = None
        if auth.login_enabled:
            http = await stack.enter_async_context(httpx.AsyncClient(follow_redirects=False))
            oidc = OidcClient(auth, "", http)
        async with trio.open_nursery() as nursery:
            await _replicas(nursery, store, manager, config, drain)
            state = AppState(
                config=config, store=store, backend=backend, manager=manager,
                background=nursery, access=access, policy=policy, db=db, git_sync=git_sync,
                oidc=oidc,
            )  # fmt: skip
            public_port = await nursery.start(_public_port(state))
            policy.listening(config.host, public_port)
            if oidc is not None:
                base = auth.public_base_url or policy.own_origin
                oidc.redirect_uri = f"{base}/auth/callback"
                log.info("login: AUTH_MODE=%s, provider %s", auth.mode, auth.issuer_url)
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


async def _open_integrations(
    config: AgentConfig, store: Store, stack: AsyncExitStack
) -> tuple[SnapshotStore, AppDatabase | None, GitSync | None, PreviewBrowser | None]:
    """The snapshot store, the per-app databases, GitLab sync and the preview browser (each
    owned by ``stack``; the optional ones None when off)."""
    snapshot_config = config.snapshot_config
    snapshot_store = await stack.enter_async_context(open_snapshot_store(snapshot_config, store))
    log.info(
        "project snapshots in %s",
        f"s3://{snapshot_config.s3.bucket}/{snapshot_config.s3.prefix}"
        if snapshot_config.s3
        else "the store database",
    )
    db = await stack.enter_async_context(
        open_app_database(config.hasura, origins=store_origin_lookup(store, config.preview_url))
    )
    git_sync = (
        await stack.enter_async_context(open_git_sync(config.git_sync, store))
        if config.git_sync is not None
        else None
    )
    if db is not None:
        log.info("per-app databases through Hasura at %s", config.hasura and config.hasura.base_url)
    if git_sync is not None and config.git_sync is not None:
        log.info(
            "GitLab persistence to %s/%s", config.git_sync.base_url, config.git_sync.group_path
        )
    browser = await stack.enter_async_context(
        open_preview_browser(
            config.browser,
            PreviewAddress(
                config.preview_base_domain, config.preview_url, config.browser.router_url
            ),
        )
    )
    return snapshot_store, db, git_sync, browser


def _lease_settings(config: AgentConfig) -> LeaseSettings:
    """How this replica shares projects with the others (see :mod:`.sessions.lease`)."""
    settings = LeaseSettings(ttl_s=config.turn_lease_ttl_s, auto_retry=config.turn_auto_retry)
    if config.replica_id:
        settings = attrs.evolve(settings, replica_id=config.replica_id)
    log.info("agent replica %s (turn lease %.0f s)", settings.replica_id, settings.ttl_s)
    return settings


async def _replicas(
    nursery: trio.Nursery,
    store: Store,
    manager: SessionManager,
    config: AgentConfig,
    drain: trio.Event | None,
) -> None:
    """What this replica runs beside the others: the store's notifications (other
    replicas' turn events, requests, released leases) and the drain on SIGTERM."""
    await nursery.start(partial(store.listen, manager.deps.notifier.notify))
    nursery.start_soon(_drain_on, drain, manager, config.shutdown_grace_s, nursery)


async def _drain_on(
    drain: trio.Event | None, manager: SessionManager, grace_s: float, nursery: trio.Nursery
) -> None:
    if drain is None:
        return
    await drain.wait()
    log.info("draining: finishing running turns (at most %.0f s), then handing over", grace_s)
    await manager.drain(grace_s)
    log.info("drained")
    nursery.cancel_scope.cancel()


def _checked(config: AgentConfig) -> tuple[AgentConfig, OriginPolicy]:
    """The config with its defaults filled in, and the origin policy, after the start-up
    checks (no open agent on a public address, no preview among the allowed origins)."""
    check_exposure(config)
    auth = config.auth
    quotas = auth.quotas.with_default_cap(config.sandbox_backend)
    if quotas != auth.quotas:
        config = attrs.evolve(config, auth=attrs.evolve(auth, quotas=quotas))
        log.info("at most %d sandboxes run at once (AMICABLE_MAX_RUNNING_SANDBOXES)",
                 quotas.running_sandboxes)  # fmt: skip
    config.auth.check_preview_domain(config.preview_base_domain)
    policy = OriginPolicy(config.auth)
    if config.port:
        policy.listening(config.host, config.port)
    return config, policy


def check_exposure(config: AgentConfig) -> None:
    """Refuse to serve every project to anyone who can reach a public address.

    Raises:
        ConfigError: ``AUTH_MODE=none`` on a non-loopback address without
            ``AMICABLE_INSECURE_NO_AUTH=1``.
    """
    auth = config.auth
    if auth.login_enabled or is_loopback(config.host):
        return
    if not auth.insecure_no_auth:
        raise ConfigError(
            f"refusing to listen on {config.host} without a login: anyone who reaches it could "
            "read, change and delete every project and spend your model key. Set AUTH_MODE=oidc "
            "(or google) with its settings (docs/auth.md), listen on 127.0.0.1, or - only on a "
            "network you trust - pass --insecure-no-auth (AMICABLE_INSECURE_NO_AUTH=1)"
        )
    log.warning(
        "INSECURE: AUTH_MODE=none on %s: every project is open to anyone who can reach this "
        "address (AMICABLE_INSECURE_NO_AUTH=1)",
        config.host,
    )


def _small_tasks(engine: TurnEngine | None) -> SmallTasks | None:
    """The engine's small-model tasks (commit subjects), when it has them."""
    services = engine.model_services() if engine is not None else None
    return services.small if services is not None else None
