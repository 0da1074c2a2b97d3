"""The container backend's start-up sweep: what an earlier run (or a crash) left behind.

Only objects carrying our ``org.amicable.managed-by`` label and this backend's network in
``org.amicable.network`` are looked at (the engine filters by both), so nothing of anyone
else's (nor another agent's, on another sandbox network of the same engine) is touched:

* spare containers of an earlier run, with their volumes (the pool starts fresh ones; a
  spare's token was never given to any project);
* project containers whose project no longer exists (``project_exists`` says False), with
  their workspace and claim record, through :meth:`ContainerBackend.delete`;
* volumes no container mounts: a spare's (a create that failed half-way) unless a claim
  record names it; a project's workspace or claim record whose project no longer exists.

A project that ``project_exists`` cannot decide on (no project label, or no callback) is kept.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from . import spec

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .config import ContainerBackendConfig
    from .engine import Engine

logger = logging.getLogger(__name__)


class Swept(Protocol):
    """What the sweep needs of :class:`~.backend.ContainerBackend`."""

    config: ContainerBackendConfig
    engine: Engine

    async def delete(self, sandbox_id: str) -> None: ...

    async def remove_volume_if_ours(self, volume: str) -> None: ...

    async def project_labels(self, name: str, labels: dict[str, str]) -> dict[str, str]: ...


async def sweep(
    backend: Swept, project_exists: Callable[[str], Awaitable[bool]] | None
) -> list[str]:
    """Remove what is leaked (see the module docstring); the names removed."""
    engine = backend.engine
    scope = spec.scope_filters(backend.config.network)
    removed: list[str] = []

    async def gone(labels: dict[str, str]) -> bool:
        project = labels.get(spec.PROJECT_LABEL)
        return bool(project_exists and project and not await project_exists(project))

    kept_mounts: set[str] = set()
    for item in await engine.list_containers(*scope):
        name = str((item.get("Names") or ["?"])[0]).lstrip("/")
        labels = dict(item.get("Labels") or {})
        mounts = [str(m.get("Name")) for m in item.get("Mounts") or [] if m.get("Name")]
        if spec.is_spare_name(name):
            await engine.remove_container(name)
            for volume in mounts:
                await backend.remove_volume_if_ours(volume)
            removed.append(name)
        elif await gone(await backend.project_labels(name, labels)):
            await backend.delete(name)
            removed.append(name)
        else:
            kept_mounts.update(mounts)
    volumes = await engine.list_volumes(*scope)
    claimed = {
        str((v.get("Labels") or {}).get(spec.WORKSPACE_LABEL))
        for v in volumes
        if (v.get("Labels") or {}).get(spec.WORKSPACE_LABEL)
    }
    for item in volumes:
        name, labels = str(item.get("Name")), dict(item.get("Labels") or {})
        if name in kept_mounts or name in removed:
            continue
        if spec.WORKSPACE_LABEL in labels:  # a claim record
            if await gone(labels):
                await backend.remove_volume_if_ours(labels[spec.WORKSPACE_LABEL])
                await backend.remove_volume_if_ours(name)
                removed += [labels[spec.WORKSPACE_LABEL], name]
        elif spec.SPARE_LABEL in labels:
            if name not in claimed:
                await backend.remove_volume_if_ours(name)
                removed.append(name)
        elif await gone(labels):
            await backend.remove_volume_if_ours(name)
            removed.append(name)
    if removed:
        logger.info("container backend sweep removed: %s", ", ".join(removed))
    return removed
