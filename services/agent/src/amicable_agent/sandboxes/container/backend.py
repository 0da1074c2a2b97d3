"""``ContainerBackend``: one container per project from the sandbox image, through a Docker-
compatible engine API (Docker, or ``podman system service``) on its Unix socket.

- :meth:`ContainerBackend.ensure` creates the project's container (and its workspace volume)
  or starts its stopped container again (warm: no create, the workspace is already there),
  then waits until the runtime answers and the dev server serves.
- Each container has its own random runtime token, kept in its environment and read back by
  inspection, so an agent restart reconnects to running sandboxes.
- Idle containers are stopped (not removed) by the reaper loop of
  :func:`open_container_backend`; their volumes and the containers themselves stay for a fast
  restart. :meth:`~ContainerBackend.delete` removes both.
- The project's snapshots stay the source of truth: a sandbox created again on an empty volume
  is restored by the session like on the other backends (``existed=False``).
"""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import trio

from amicable_agent.errors import ConfigError, SandboxProvisionError
from amicable_agent.sandboxes.base import (
    SandboxHandle,
    SandboxInfo,
    StageCallback,
    ignore_stage,
    sandbox_id_for,
)

from . import spec
from .engine import Engine, EngineError

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Callable

    from .config import ContainerBackendConfig

logger = logging.getLogger(__name__)
_POLL_S = 0.1


def _managed(inspected: dict[str, Any]) -> bool:
    labels = inspected.get("Config", {}).get("Labels") or {}
    return bool(labels.get(spec.MANAGED_BY_LABEL) == spec.MANAGED_BY)


class ContainerBackend:
    """:class:`~amicable_agent.sandboxes.base.SandboxBackend` on a container engine."""

    def __init__(
        self,
        config: ContainerBackendConfig,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.engine = engine
        self._clock = clock
        self._last_active: dict[str, float] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._probe = httpx.AsyncClient(timeout=5.0)
        self._network_ready = False

    async def _prepare_network(self) -> None:
        if self._network_ready:
            return
        managed = {spec.MANAGED_BY_LABEL: spec.MANAGED_BY}
        await self.engine.ensure_network(
            self.config.network, internal=self.config.internal_network, labels=managed
        )
        self._network_ready = True

    async def ensure(
        self,
        session_id: str,
        *,
        project_id: str,
        template_id: str,
        on_stage: StageCallback = ignore_stage,
    ) -> SandboxHandle:
        sandbox_id = sandbox_id_for(session_id)
        lock = self._locks.setdefault(sandbox_id, trio.Lock())
        async with lock:
            try:
                return await self._ensure(sandbox_id, session_id, project_id, template_id, on_stage)
            except EngineError as exc:
                raise SandboxProvisionError(f"The container engine failed: {exc}") from exc

    async def _ensure(
        self,
        sandbox_id: str,
        session_id: str,
        project_id: str,
        template_id: str,
        on_stage: StageCallback,
    ) -> SandboxHandle:
        found = await self.engine.inspect(sandbox_id)
        existed = found is not None
        if found is not None and not _managed(found):
            raise SandboxProvisionError(
                f"A container named {sandbox_id} exists and is not an Amicable sandbox."
            )
        if found is None:
            await on_stage("creating", "Creating sandbox container…")
            if not await self.engine.image_exists(self.config.image):
                raise SandboxProvisionError(
                    f"The sandbox image {self.config.image!r} is not on this engine "
                    "(build it with `make images` or pull it)."
                )
            await self._prepare_network()
            labels = spec.labels(session_id, project_id, template_id)
            await self.engine.ensure_volume(spec.volume_name(sandbox_id), labels)
            token = secrets.token_urlsafe(32)
            body = spec.create_body(self.config, sandbox_id, token, labels)
            await self.engine.create_container(sandbox_id, body)
            found = await self.engine.inspect(sandbox_id)
        assert found is not None
        if not found.get("State", {}).get("Running"):
            await on_stage("starting_runtime", "Starting sandbox container…")
            await self.engine.start(sandbox_id)
            found = await self.engine.inspect(sandbox_id) or found
        handle = self._handle(sandbox_id, found, existed=existed)
        await on_stage("starting_preview", "Starting the dev server…")
        await self._wait_ready(sandbox_id, handle)
        self._last_active[sandbox_id] = self._clock()
        return handle

    def _handle(self, sandbox_id: str, found: dict[str, Any], *, existed: bool) -> SandboxHandle:
        address = spec.address_of(found, self.config)
        token = spec.token_of(found)
        if address is None or token is None:
            raise SandboxProvisionError(
                f"Container {sandbox_id} has no address on network {self.config.network!r} "
                "or no runtime token; delete it to create it again."
            )
        return SandboxHandle(
            sandbox_id=sandbox_id,
            runtime_url=f"http://{address}:{spec.RUNTIME_PORT}",
            runtime_token=token,
            preview_upstream=f"http://{address}:{spec.PREVIEW_PORT}",
            existed=existed,
        )

    async def _wait_ready(self, sandbox_id: str, handle: SandboxHandle) -> None:
        """The runtime answers /healthz and the dev server answers at all (bounded)."""
        with trio.move_on_after(self.config.ready_timeout_s):
            for url in (f"{handle.runtime_url}/healthz", f"{handle.preview_upstream}/"):
                while not await self._answers(url):
                    found = await self.engine.inspect(sandbox_id)
                    if found is None or not found.get("State", {}).get("Running"):
                        raise SandboxProvisionError(
                            f"The sandbox container {sandbox_id} stopped while starting."
                        )
                    await trio.sleep(_POLL_S)
            return
        raise SandboxProvisionError(
            f"The sandbox did not become ready within {self.config.ready_timeout_s:.0f}s."
        )

    async def _answers(self, url: str) -> bool:
        try:
            response = await self._probe.get(url)
        except httpx.HTTPError:
            return False
        return response.status_code < 500

    async def lookup(self, sandbox_id: str) -> SandboxHandle | None:
        try:
            found = await self.engine.inspect(sandbox_id)
        except EngineError:
            return None
        if found is None or not found.get("State", {}).get("Running"):
            return None
        if not _managed(found):
            return None  # not ours: never hand out a stranger's container
        try:
            return self._handle(sandbox_id, found, existed=True)
        except SandboxProvisionError:
            return None

    async def touch(self, sandbox_id: str) -> None:
        self._last_active[sandbox_id] = self._clock()

    async def delete(self, sandbox_id: str) -> None:
        found = await self.engine.inspect(sandbox_id)
        if found is not None and not _managed(found):
            raise SandboxProvisionError(f"Container {sandbox_id} is not an Amicable sandbox.")
        await self.engine.remove_container(sandbox_id)
        await self.engine.remove_volume(spec.volume_name(sandbox_id))
        self._last_active.pop(sandbox_id, None)

    async def list(self) -> list[SandboxInfo]:
        items = await self.engine.list_containers(f"{spec.MANAGED_BY_LABEL}={spec.MANAGED_BY}")
        now = self._clock()
        out = []
        for item in items:
            name = str((item.get("Names") or ["?"])[0]).lstrip("/")
            labels = item.get("Labels") or {}
            last = self._last_active.get(name)
            out.append(
                SandboxInfo(
                    sandbox_id=name,
                    session_id=labels.get(spec.SESSION_LABEL),
                    project_id=labels.get(spec.PROJECT_LABEL),
                    last_active_s=None if last is None else now - last,
                    ready=item.get("State") == "running",
                )
            )
        return out

    async def stop_idle(self) -> builtins.list[str]:
        """Stop running sandboxes idle for longer than the TTL; the ids stopped."""
        stopped = []
        now = self._clock()
        for info in await self.list():
            if not info.ready:
                continue
            last = self._last_active.setdefault(info.sandbox_id, now)
            if now - last < self.config.idle_ttl_s:
                continue
            try:
                await self.engine.stop(info.sandbox_id)
            except EngineError as exc:
                logger.warning("could not stop idle sandbox %s: %s", info.sandbox_id, exc)
                continue
            stopped.append(info.sandbox_id)
        return stopped

    async def aclose(self) -> None:
        await self._probe.aclose()
        await self.engine.aclose()


async def _reap(backend: ContainerBackend) -> None:
    while True:
        await trio.sleep(backend.config.reap_interval_s)
        try:
            for sandbox_id in await backend.stop_idle():
                logger.info("stopped idle sandbox %s", sandbox_id)
        except EngineError as exc:
            logger.warning("idle check failed: %s", exc)


@asynccontextmanager
async def open_container_backend(config: ContainerBackendConfig) -> AsyncIterator[ContainerBackend]:
    """The backend with its idle reaper; checks the engine answers first.

    Raises:
        ConfigError: the engine does not answer on the configured socket.
    """
    engine = Engine(config.socket_path)
    try:
        await engine.ping()
    except EngineError as exc:
        await engine.aclose()
        raise ConfigError(
            f"no container engine for AMICABLE_SANDBOX_BACKEND=container: {exc} "
            "(start one: `podman system service`, or set AMICABLE_CONTAINER_SOCKET)"
        ) from exc
    backend = ContainerBackend(config, engine)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_reap, backend)
            yield backend
            nursery.cancel_scope.cancel()
    finally:
        await backend.aclose()
