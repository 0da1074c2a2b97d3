"""``ContainerBackend``: one container per project from its template's sandbox image, through
a Docker-compatible engine API (Docker, or ``podman system service``) on its Unix socket.

- :meth:`ContainerBackend.ensure` reconnects to the project's container, starts it again when
  stopped (no create, the workspace is there), claims a spare for a new project (the warm
  pool, :mod:`.pool`: renamed to the project's sandbox id, no create on the hot path), or
  creates it (on the project's workspace volume when one exists), then waits until the
  runtime answers and the dev server serves.
- The workspace: ``<sandbox id>-workspace`` for a container created for the project; a
  claimed spare keeps its own volume, and a claim record (the volume
  ``<sandbox id>-claim``, whose labels name the project and that volume) makes it the
  project's, so a container created again mounts it.
- Nothing is leaked: a create that fails removes what it created; delete removes the
  container, its workspace and its claim record; at start the sweep removes spares of an
  earlier run and the containers and volumes of projects that no longer exist (only objects
  carrying our ``org.amicable.managed-by`` label are ever touched). Spares are removed on close.
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

from . import network, spec
from .engine import Engine, EngineConflict, EngineError, EngineNotFound, Obj
from .pool import SparePool
from .sweep import sweep

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Awaitable, Callable

    from .config import ContainerBackendConfig

logger = logging.getLogger(__name__)
_POLL_S = 0.1


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
        self.pool = SparePool(
            config.warm_pool_templates,
            config.warm_pool_size,
            config.refill_delay_s,
            self._start_spare,
        )
        #: how many containers this backend created (spares included): the tests' witness
        #: that a claim created nothing on the hot path
        self.created = 0

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
        labels = spec.labels(session_id, project_id, template_id, self.config.network)
        found = await self.engine.inspect(sandbox_id)
        if found is not None and not spec.managed(found.get("Config", {}).get("Labels")):
            raise SandboxProvisionError(
                f"A container named {sandbox_id} exists and is not an Amicable sandbox."
            )
        existed = found is not None
        if found is None:
            workspace = await self._workspace_of(sandbox_id)
            if workspace is None:
                found = await self._claim(sandbox_id, template_id, labels)
            if found is None:
                await on_stage("creating", "Creating sandbox container…")
                found = await self._create(sandbox_id, template_id, labels, workspace)
            else:
                logger.info("sandbox %s: claimed a spare (%s)", sandbox_id, template_id)
        elif spec.SPARE_LABEL in (found.get("Config", {}).get("Labels") or {}):
            await self._record_claim(sandbox_id, found, labels)  # a claim cut short
        if not found.get("State", {}).get("Running"):
            await on_stage("starting_runtime", "Starting sandbox container…")
            await self.engine.start(sandbox_id)
            found = await self.engine.inspect(sandbox_id) or found
        handle = self._handle(sandbox_id, found, existed=existed)
        await on_stage("starting_preview", "Starting the dev server…")
        await self._wait_ready(sandbox_id, handle)
        self._last_active[sandbox_id] = self._clock()
        return handle

    async def _image(self, template_id: str) -> str:
        image = self.config.image_for(template_id)
        if not await self.engine.image_exists(image):
            raise SandboxProvisionError(
                f"The sandbox image of template {template_id!r}, {image!r}, is not on this "
                f"engine (build it with `TEMPLATES={template_id} make images`, or pull it; "
                "AMICABLE_CONTAINER_IMAGE names it)."
            )
        return image

    async def _workspace_of(self, sandbox_id: str) -> str | None:
        """The project's workspace volume when it has one: its claim record's, or its own."""
        record = await self.engine.inspect_volume(spec.claim_name(sandbox_id))
        labels = (record or {}).get("Labels") or {}
        workspace = labels.get(spec.WORKSPACE_LABEL) if spec.managed(labels) else None
        if workspace and await self.engine.inspect_volume(workspace) is not None:
            return str(workspace)
        own = spec.volume_name(sandbox_id)
        if await self.engine.inspect_volume(own) is not None:
            return own
        return None

    async def _create(
        self,
        sandbox_id: str,
        template_id: str,
        labels: dict[str, str],
        workspace: str | None,
    ) -> Obj:
        """Create the container (and its volume when ``workspace`` is None); on failure
        remove what this call created."""
        image = await self._image(template_id)
        volume = workspace or spec.volume_name(sandbox_id)
        if workspace is None:
            await self.engine.ensure_volume(volume, labels)
        token = secrets.token_urlsafe(32)
        body = spec.create_body(self.config, sandbox_id, token, labels, image=image, volume=volume)
        try:
            await self.engine.create_container(sandbox_id, body)
            self.created += 1
            found = await self.engine.inspect(sandbox_id)
            if found is None:
                raise SandboxProvisionError(f"The container {sandbox_id} vanished after create.")
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(30):
                await self._remove_created(sandbox_id, None if workspace else volume)
            raise
        return found

    async def _remove_created(self, name: str, volume: str | None) -> None:
        try:
            await self.engine.remove_container(name)
            if volume is not None:
                await self.remove_volume_if_ours(volume)
        except EngineError as exc:
            logger.warning("could not remove %s after a failed create: %s", name, exc)

    async def remove_volume_if_ours(self, volume: str) -> None:
        found = await self.engine.inspect_volume(volume)
        if found is None or not spec.managed(found.get("Labels")):
            return
        try:
            await self.engine.remove_volume(volume)
        except EngineConflict as exc:  # still mounted by a container
            logger.warning("volume %s kept: %s", volume, exc)

    # --- warm pool -------------------------------------------------------------------------

    async def _start_spare(self, template_id: str) -> str:
        """Create, start and wait for a spare; removed again when anything fails."""
        name = spec.spare_name(template_id, secrets.token_hex(4))
        labels = spec.spare_labels(template_id, self.config.network)
        await self._create(name, template_id, labels, None)
        try:
            await self.engine.start(name)
            found = await self.engine.inspect(name)
            if found is None:
                raise SandboxProvisionError(f"The spare {name} vanished after start.")
            await self._wait_ready(name, self._handle(name, found, existed=False))
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(30):
                await self._remove_created(name, spec.volume_name(name))
            raise
        logger.info("warm pool: spare %s ready", name)
        return name

    async def _claim(self, sandbox_id: str, template_id: str, labels: dict[str, str]) -> Obj | None:
        """Rename a spare to ``sandbox_id`` and record its volume as the project's; None
        when the pool has none (or every one it had is gone)."""
        while (spare := self.pool.take(template_id)) is not None:
            try:
                await self.engine.rename(spare, sandbox_id)
            except EngineNotFound:
                continue  # removed behind our back
            except EngineConflict:
                await self._remove_spare(spare)
                return None  # the project's name was taken meanwhile: the caller inspects
            found = await self.engine.inspect(sandbox_id)
            if found is None or not found.get("State", {}).get("Running"):
                await self._remove_spare(sandbox_id)
                continue
            await self._record_claim(sandbox_id, found, labels)
            return found
        return None

    async def _record_claim(self, sandbox_id: str, found: Obj, labels: dict[str, str]) -> None:
        workspace = spec.workspace_of(found)
        if workspace is not None:
            claim = spec.claim_labels(labels, workspace)
            await self.engine.ensure_volume(spec.claim_name(sandbox_id), claim)

    async def _remove_spare(self, name: str) -> None:
        found = await self.engine.inspect(name)
        if found is None or not spec.managed(found.get("Config", {}).get("Labels")):
            return
        await self.engine.remove_container(name)
        workspace = spec.workspace_of(found)
        if workspace is not None:
            await self.remove_volume_if_ours(workspace)

    # --- handles and readiness ---------------------------------------------------------------

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
        if spec.is_spare_name(sandbox_id):
            return None  # spares belong to no project until claimed
        try:
            found = await self.engine.inspect(sandbox_id)
        except EngineError:
            return None
        if found is None or not found.get("State", {}).get("Running"):
            return None
        if not spec.managed(found.get("Config", {}).get("Labels")):
            return None  # not ours: never hand out a stranger's container
        try:
            return self._handle(sandbox_id, found, existed=True)
        except SandboxProvisionError:
            return None

    async def touch(self, sandbox_id: str) -> None:
        self._last_active[sandbox_id] = self._clock()

    async def delete(self, sandbox_id: str) -> None:
        """Remove the container, its workspace volume and its claim record (ours only)."""
        found = await self.engine.inspect(sandbox_id)
        if found is not None and not spec.managed(found.get("Config", {}).get("Labels")):
            raise SandboxProvisionError(f"Container {sandbox_id} is not an Amicable sandbox.")
        volumes = [spec.volume_name(sandbox_id)]
        if found is not None and (mounted := spec.workspace_of(found)) is not None:
            volumes.append(mounted)
        record = await self.engine.inspect_volume(spec.claim_name(sandbox_id))
        if record is not None and spec.managed(record.get("Labels")):
            volumes.append(str(record["Labels"].get(spec.WORKSPACE_LABEL, "")))
        await self.engine.remove_container(sandbox_id)
        for volume in dict.fromkeys(v for v in volumes if v):
            await self.remove_volume_if_ours(volume)
        if record is not None:
            await self.remove_volume_if_ours(spec.claim_name(sandbox_id))
        self._last_active.pop(sandbox_id, None)

    async def list(self) -> list[SandboxInfo]:
        """The projects' containers (spares are not listed)."""
        items = await self.engine.list_containers(*spec.scope_filters(self.config.network))
        now = self._clock()
        out = []
        for item in items:
            name = str((item.get("Names") or ["?"])[0]).lstrip("/")
            if spec.is_spare_name(name):
                continue
            labels = await self.project_labels(name, item.get("Labels") or {})
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

    async def project_labels(self, name: str, labels: dict[str, str]) -> dict[str, str]:
        """A project container's labels; a claimed spare's come from its claim record."""
        if spec.PROJECT_LABEL in labels:
            return labels
        record = await self.engine.inspect_volume(spec.claim_name(name))
        recorded = (record or {}).get("Labels") or {}
        return dict(recorded) if spec.managed(recorded) else labels

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

    async def remove_spares(self) -> None:
        """Remove the pool's spares (on close: nothing is left behind)."""
        for name in self.pool.names():
            try:
                await self._remove_spare(name)
            except EngineError as exc:
                logger.warning("could not remove spare %s: %s", name, exc)

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
async def open_container_backend(
    config: ContainerBackendConfig,
    *,
    project_exists: Callable[[str], Awaitable[bool]] | None = None,
) -> AsyncIterator[ContainerBackend]:
    """The backend with its idle reaper and warm pool, on a prepared (fenced) network, after
    the leak sweep; checks the engine answers first.

    Args:
        project_exists: ``await project_exists(project_id)``; containers and volumes of
            projects that no longer exist are removed by the sweep (None: only spares and
            leftovers of failed creates are).

    Raises:
        ConfigError: the engine does not answer on the configured socket, or the network
            cannot be fenced.
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
        try:
            await network.prepare(engine, config)
            await sweep(backend, project_exists)
        except EngineError as exc:
            raise ConfigError(f"the container engine failed while starting: {exc}") from exc
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_reap, backend)
            nursery.start_soon(backend.pool.run)
            try:
                yield backend
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True), trio.move_on_after(60):
                    await backend.remove_spares()
    finally:
        await backend.aclose()
