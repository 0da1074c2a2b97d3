"""``ContainerBackendConfig``: the container backend's settings, read once from the environment.

=====================================  ==============================  ============================
variable                               default                         meaning
=====================================  ==============================  ============================
AMICABLE_CONTAINER_SOCKET              ``DOCKER_HOST`` (unix://) or    the engine's API socket
                                       ``/run/podman/podman.sock``
AMICABLE_CONTAINER_IMAGE               ``localhost/amicable-sandbox-   the sandbox image of a
                                       {template}:dev``                template (``{template}``
                                                                       is replaced; without it
                                                                       one image for all)
AMICABLE_CONTAINER_NETWORK             ``amicable-sandboxes``          created if missing
AMICABLE_CONTAINER_NETWORK_INTERNAL    ``true``                        no route out of the network
AMICABLE_CONTAINER_FENCE               ``nft``                         ``off``: no nftables fence
                                                                       (sandboxes then reach the
                                                                       host and each other)
AMICABLE_WARM_POOL_SIZE                ``1``                           spare started containers
                                                                       per pooled template
AMICABLE_WARM_POOL_TEMPLATES           the default template            templates with spares
AMICABLE_CONTAINER_REFILL_DELAY_S      ``5``                           after a claim, before the
                                                                       spare's replacement starts
AMICABLE_CONTAINER_ADDRESS             ``ip``                          ``name`` when the agent runs
                                                                       on the sandboxes' network
AMICABLE_CONTAINER_CPUS                ``2``                           CPUs per sandbox
AMICABLE_CONTAINER_READY_TIMEOUT_S     ``180``                         create -> dev server ready
AMICABLE_CONTAINER_REAP_INTERVAL_S     ``30``                          idle check period
AMICABLE_CONTAINER_NOFILE              ``16384``                       open files (soft = hard)
AMICABLE_CONTAINER_NPROC               ``8192``                        RLIMIT_NPROC (per uid)
AMICABLE_SANDBOX_MEMORY_BYTES          ``2 GiB``                       memory (and swap) limit
AMICABLE_SANDBOX_PIDS_MAX              ``1024``                        processes and threads
AMICABLE_SANDBOX_IDLE_TTL_S            ``1800``                        idle containers are stopped
=====================================  ==============================  ============================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs
from amicable_settings import boolean, choice, integer, number, seconds, string

DEFAULT_SOCKET = "/run/podman/podman.sock"
DEFAULT_IMAGE = "localhost/amicable-sandbox-{template}:dev"
FenceMode = Literal["nft", "off"]
DEFAULT_NETWORK = "amicable-sandboxes"


def _default_socket(env: Mapping[str, str]) -> str:
    docker_host = env.get("DOCKER_HOST", "")
    if docker_host.startswith("unix://"):
        return docker_host[len("unix://") :]
    return DEFAULT_SOCKET


def _templates(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("AMICABLE_WARM_POOL_TEMPLATES", "").strip()
    if not raw:
        return (env.get("AMICABLE_DEFAULT_TEMPLATE", "").strip() or "vite",)
    return tuple(dict.fromkeys(t.strip() for t in raw.replace(",", " ").split() if t.strip()))


@attrs.frozen
class ContainerBackendConfig:
    """See the module docstring for the environment names."""

    socket_path: str = DEFAULT_SOCKET
    #: the sandbox image; ``{template}`` in it is replaced by the project's template id
    image: str = DEFAULT_IMAGE
    network: str = DEFAULT_NETWORK
    internal_network: bool = True
    #: ``nft``: the backend installs the network fence (fence.py) or refuses to start
    fence: FenceMode = "nft"
    #: spare started containers kept per template of ``warm_pool_templates`` (0: none)
    warm_pool_size: int = 1
    warm_pool_templates: tuple[str, ...] = ("vite",)
    refill_delay_s: float = 5.0
    address: Literal["ip", "name"] = "ip"
    cpus: float = 2.0
    memory_bytes: int = 2 * 1024**3
    pids_max: int = 1024
    idle_ttl_s: float = 1800.0
    reap_interval_s: float = 30.0
    ready_timeout_s: float = 180.0
    #: RLIMIT_NOFILE / RLIMIT_NPROC of the sandbox (an engine's defaults can exceed the hard
    #: limits the engine itself runs under, and runc then refuses to start the container)
    nofile: int = 16384
    nproc: int = 8192
    #: extra environment of every sandbox (the HMR settings of the preview's public URL)
    sandbox_env: Mapping[str, str] = attrs.field(factory=dict)

    def image_for(self, template_id: str) -> str:
        """The sandbox image of a template."""
        return self.image.replace("{template}", template_id)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ContainerBackendConfig:
        """Raises ``amicable_settings`` errors (ValueError) naming the bad variable."""
        socket_path = string(env, "AMICABLE_CONTAINER_SOCKET", _default_socket(env))
        if not socket_path.startswith("/"):
            raise ValueError(f"AMICABLE_CONTAINER_SOCKET must be an absolute path: {socket_path!r}")
        return cls(
            socket_path=socket_path,
            image=string(env, "AMICABLE_CONTAINER_IMAGE", DEFAULT_IMAGE),
            network=string(env, "AMICABLE_CONTAINER_NETWORK", DEFAULT_NETWORK),
            internal_network=boolean(env, "AMICABLE_CONTAINER_NETWORK_INTERNAL", True),
            fence=choice(env, "AMICABLE_CONTAINER_FENCE", "nft", ("nft", "off")),
            warm_pool_size=integer(env, "AMICABLE_WARM_POOL_SIZE", 1, minimum=0),
            warm_pool_templates=_templates(env),
            refill_delay_s=seconds(env, "AMICABLE_CONTAINER_REFILL_DELAY_S", 5.0),
            address=choice(env, "AMICABLE_CONTAINER_ADDRESS", "ip", ("ip", "name")),
            cpus=number(env, "AMICABLE_CONTAINER_CPUS", 2.0, minimum=0.1),
            memory_bytes=integer(env, "AMICABLE_SANDBOX_MEMORY_BYTES", 2 * 1024**3, minimum=0),
            pids_max=integer(env, "AMICABLE_SANDBOX_PIDS_MAX", 1024, minimum=0),
            idle_ttl_s=seconds(env, "AMICABLE_SANDBOX_IDLE_TTL_S", 1800.0),
            reap_interval_s=seconds(env, "AMICABLE_CONTAINER_REAP_INTERVAL_S", 30.0),
            ready_timeout_s=seconds(env, "AMICABLE_CONTAINER_READY_TIMEOUT_S", 180.0),
            nofile=integer(env, "AMICABLE_CONTAINER_NOFILE", 16384, minimum=64),
            nproc=integer(env, "AMICABLE_CONTAINER_NPROC", 8192, minimum=64),
        )


def sandbox_hmr_env(
    *, preview_base_domain: str, preview_scheme: str, preview_public_port: int | None
) -> dict[str, str]:
    """The dev server's settings that depend on the preview's public URL: Vite accepts the
    preview hosts, and the browser's HMR socket goes to the router's public port."""
    env = {
        "__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS": "." + preview_base_domain,
        "AMICABLE_HMR_PROTOCOL": "wss" if preview_scheme == "https" else "ws",
    }
    port = preview_public_port or (443 if preview_scheme == "https" else 80)
    env["AMICABLE_HMR_CLIENT_PORT"] = str(port)
    return env
