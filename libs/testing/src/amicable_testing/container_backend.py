"""The ``container`` sandbox backend in tests: opened on a network of its own and cleaned up
after (containers, volumes, the network and its fence), and commands run in a sandbox through
its runtime API (as the agent runs them)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import trio
from amicable_agent.sandboxes.container import fence
from amicable_agent.sandboxes.container.backend import ContainerBackend, open_container_backend
from amicable_agent.sandboxes.container.spec import MANAGED_BY_LABEL, NETWORK_LABEL

from amicable_testing.podman import podman, remove

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from amicable_agent.sandboxes.base import SandboxHandle
    from amicable_agent.sandboxes.container.config import ContainerBackendConfig


def network_objects(network: str) -> tuple[list[str], list[str]]:
    """The names of the containers on ``network`` and of the volumes labelled with it."""
    containers = podman("ps", "-a", "--filter", f"network={network}", "--format", "{{.Names}}")
    volumes = podman(
        "volume", "ls", "--filter", f"label={NETWORK_LABEL}={network}",
        "--filter", f"label={MANAGED_BY_LABEL}", "--format", "{{.Name}}",
    )  # fmt: skip
    return containers.split(), volumes.split()


def cleanup(network: str, *, keep_network: bool = False) -> None:
    """Remove the containers on ``network``, our volumes labelled with it, then (unless
    ``keep_network``) the network and its fence."""
    containers, _ = network_objects(network)
    remove(*containers)
    for name in containers:
        podman("volume", "rm", "--force", f"{name}-workspace", check=False)
    _, volumes = network_objects(network)
    if volumes:
        podman("volume", "rm", "--force", *volumes, check=False)
    if not keep_network:
        podman("network", "rm", "--force", network, check=False)
        fence.run_nft(fence.removal(network))


@asynccontextmanager
async def backend_for(
    config: ContainerBackendConfig,
    *,
    project_exists: Callable[[str], Awaitable[bool]] | None = None,
    keep: bool = False,
) -> AsyncIterator[ContainerBackend]:
    """The backend; afterwards everything on its network is removed (``keep``: not yet, for a
    test that opens the backend again on the same network)."""
    try:
        async with open_container_backend(config, project_exists=project_exists) as backend:
            yield backend
    finally:
        if not keep:
            await trio.to_thread.run_sync(cleanup, config.network)


async def run(handle: SandboxHandle, command: str, *, timeout_s: float = 60) -> dict[str, object]:
    """``POST /v1/exec`` on the sandbox's runtime, as the agent does; the result."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.post(
            f"{handle.runtime_url}/v1/exec",
            headers={"Authorization": f"Bearer {handle.runtime_token}"},
            json={"command": command},
        )
    assert response.status_code == 200, response.text
    return dict(response.json())


def connect_probe(host: str, port: int, *, timeout_s: float = 3) -> str:
    """A shell command that tries a TCP connection and prints OPEN or BLOCKED <why>."""
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout={timeout_s}).close()\n"
        "    print('OPEN')\n"
        "except OSError as e:\n"
        "    print('BLOCKED', type(e).__name__)\n"
    )
    return f"python3 -c {_quote(code)}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
