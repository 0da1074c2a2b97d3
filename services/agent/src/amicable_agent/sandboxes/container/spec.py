"""What one sandbox container is: its engine create body, names and labels.

The container runs the sandbox image as its own user (the image's ``USER 10001``), with every
capability dropped, ``no-new-privileges``, CPU/memory/pids limits, and the workspace ``/app``
on a named volume of its own, so the files survive the container being removed and created
again. An empty named volume is filled from the image's ``/app`` when first mounted (Docker and
Podman both copy it up), so a new sandbox starts with the baked template and node_modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ContainerBackendConfig

MANAGED_BY_LABEL = "org.amicable.managed-by"
MANAGED_BY = "amicable-agent-container-backend"
SESSION_LABEL = "org.amicable.session"
PROJECT_LABEL = "org.amicable.project"
TEMPLATE_LABEL = "org.amicable.template"
#: on a spare's container and volume: the template it was started for (kept after a claim)
SPARE_LABEL = "org.amicable.spare"
#: on a claim record (a volume named :func:`claim_name`): the spare volume that became the
#: project's workspace
WORKSPACE_LABEL = "org.amicable.workspace"
SPARE_PREFIX = "amicable-spare-"
#: the sandbox network: a backend lists, sweeps and pools only its own network's objects
NETWORK_LABEL = "org.amicable.network"
TOKEN_ENV = "AMICABLE_RUNTIME_TOKEN"
RUNTIME_PORT = 8888
PREVIEW_PORT = 3000
WORKSPACE = "/app"


def volume_name(sandbox_id: str) -> str:
    """The workspace volume of a container created for a project (or a spare)."""
    return f"{sandbox_id}-workspace"


def claim_name(sandbox_id: str) -> str:
    """The claim record of a project whose container was a spare: an empty volume whose
    labels name the project and the workspace volume it took over (volumes and containers
    cannot be relabelled, and volumes cannot be renamed)."""
    return f"{sandbox_id}-claim"


def spare_name(template_id: str, suffix: str) -> str:
    return f"{SPARE_PREFIX}{template_id}-{suffix}"


def is_spare_name(name: str) -> bool:
    return name.startswith(SPARE_PREFIX)


def spare_labels(template_id: str, network: str) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        NETWORK_LABEL: network,
        SPARE_LABEL: template_id,
        TEMPLATE_LABEL: template_id,
    }


def scope_filters(network: str) -> list[str]:
    """The label filters that select one backend's objects (its network's)."""
    return [f"{MANAGED_BY_LABEL}={MANAGED_BY}", f"{NETWORK_LABEL}={network}"]


def claim_labels(project_labels: dict[str, str], workspace: str) -> dict[str, str]:
    return {**project_labels, WORKSPACE_LABEL: workspace}


def labels(
    session_id: str, project_id: str, template_id: str, network: str | None = None
) -> dict[str, str]:
    scope = {NETWORK_LABEL: network} if network else {}
    return {
        **scope,
        MANAGED_BY_LABEL: MANAGED_BY,
        SESSION_LABEL: session_id,
        PROJECT_LABEL: project_id,
        TEMPLATE_LABEL: template_id,
    }


def create_body(
    config: ContainerBackendConfig,
    sandbox_id: str,
    token: str,
    sandbox_labels: dict[str, str],
    *,
    image: str,
    volume: str,
) -> dict[str, Any]:
    """The ``POST /containers/create`` body of one sandbox (its workspace on ``volume``)."""
    env = {**config.sandbox_env, TOKEN_ENV: token}
    return {
        "Image": image,
        "Hostname": sandbox_id,
        "Env": [f"{key}={value}" for key, value in env.items()],
        "Labels": sandbox_labels,
        "ExposedPorts": {f"{RUNTIME_PORT}/tcp": {}, f"{PREVIEW_PORT}/tcp": {}},
        "HostConfig": {
            "NetworkMode": config.network,
            "Mounts": [{"Type": "volume", "Source": volume, "Target": WORKSPACE}],
            "Memory": config.memory_bytes or 0,
            "MemorySwap": config.memory_bytes or 0,  # no swap beyond the memory limit
            "NanoCpus": int(config.cpus * 1e9),
            "PidsLimit": config.pids_max or 0,
            "Ulimits": [
                {"Name": "nofile", "Soft": config.nofile, "Hard": config.nofile},
                {"Name": "nproc", "Soft": config.nproc, "Hard": config.nproc},
            ],
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            # IPv6 link-local addresses are in no subnet the fence could key on (fence.py)
            "Sysctls": {"net.ipv6.conf.all.disable_ipv6": "1"},
            "Init": False,  # the image's tini is PID 1
            "RestartPolicy": {"Name": "no"},
        },
        "NetworkingConfig": {"EndpointsConfig": {config.network: {}}},
    }


def workspace_of(inspected: dict[str, Any]) -> str | None:
    """The volume an inspected container has on ``/app``."""
    for mount in inspected.get("Mounts") or []:
        if mount.get("Destination") == WORKSPACE and mount.get("Name"):
            return str(mount["Name"])
    return None


def managed(labels: dict[str, Any] | None) -> bool:
    return bool((labels or {}).get(MANAGED_BY_LABEL) == MANAGED_BY)


def token_of(inspected: dict[str, Any]) -> str | None:
    """The runtime token in an inspected container's environment."""
    for item in inspected.get("Config", {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        if key == TOKEN_ENV:
            return value
    return None


def address_of(inspected: dict[str, Any], config: ContainerBackendConfig) -> str | None:
    """How the agent reaches the container: its IP on the network, or its name.

    A claimed spare is reached by IP in ``name`` mode too: the engine's DNS keeps the name a
    container had when it joined the network (the spare's), so the renamed container's new
    name does not resolve until it is started again.
    """
    networks = inspected.get("NetworkSettings", {}).get("Networks") or {}
    ip = (networks.get(config.network) or {}).get("IPAddress")
    labels = inspected.get("Config", {}).get("Labels") or {}
    if config.address == "name" and not (SPARE_LABEL in labels and ip):
        return str(inspected.get("Name", "")).lstrip("/") or None
    return str(ip) if ip else None
