"""The sandbox network: created when missing (``--internal``, its bridge named by us), then
fenced (:mod:`.fence`) unless ``AMICABLE_CONTAINER_FENCE=off``."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from amicable_agent.errors import ConfigError

from . import fence, spec

if TYPE_CHECKING:
    from .config import ContainerBackendConfig
    from .engine import Engine, Obj

logger = logging.getLogger(__name__)


def bridge_name(network: str) -> str:
    """The bridge interface a network we create gets (15 bytes at most, as Linux wants)."""
    return "amb" + hashlib.sha256(network.encode()).hexdigest()[:11]


async def bridge_of(engine: Engine, name: str, inspected: Obj) -> str | None:
    """The network's bridge interface: the compat API's option (Docker), Podman's own API
    (whose compat inspect leaves ``Options`` empty), or Docker's ``br-<id>`` default."""
    options = inspected.get("Options") or {}
    if options.get(fence.BRIDGE_OPTION):
        return str(options[fence.BRIDGE_OPTION])
    podman = await engine.podman_network(name)
    if podman and podman.get("network_interface"):
        return str(podman["network_interface"])
    return fence.bridge_of(inspected)


async def prepare(engine: Engine, config: ContainerBackendConfig) -> Obj:
    """The sandbox network, created and fenced; its inspection.

    Raises:
        ConfigError: the fence cannot be applied (names ``AMICABLE_CONTAINER_FENCE=off``).
    """
    managed = {spec.MANAGED_BY_LABEL: spec.MANAGED_BY}
    inspected = await engine.ensure_network(
        config.network,
        internal=config.internal_network,
        labels=managed,
        options={fence.BRIDGE_OPTION: bridge_name(config.network)},
    )
    if config.fence == "off":
        logger.warning(
            "AMICABLE_CONTAINER_FENCE=off: sandboxes on network %s can open connections to "
            "this host's addresses and to each other (docs/containers.md)",
            config.network,
        )
        return inspected
    if not spec.managed(inspected.get("Labels")):
        raise ConfigError(
            f"the sandbox network {config.network!r} exists and was not created by Amicable: "
            "the fence would cut every container on it off from this host. Name another "
            "AMICABLE_CONTAINER_NETWORK (the agent creates it), or set "
            "AMICABLE_CONTAINER_FENCE=off"
        )
    bridge = await bridge_of(engine, config.network, inspected)
    try:
        if bridge is None:
            raise fence.FenceError(f"the engine names no bridge for network {config.network!r}")
        await fence.apply(config.network, bridge, fence.subnets_of(inspected))
    except fence.FenceError as exc:
        raise ConfigError(
            f"cannot fence the sandbox network {config.network!r}: {exc}. The agent needs root "
            "(CAP_NET_ADMIN) and nftables on the engine's host; where the host applies the "
            "rules itself (docs/containers.md), set AMICABLE_CONTAINER_FENCE=off"
        ) from exc
    logger.info("sandbox network %s fenced on bridge %s", config.network, bridge)
    return inspected
