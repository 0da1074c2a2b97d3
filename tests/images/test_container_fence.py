"""The container backend's network fence on real podman: from inside a sandbox (through its
runtime's exec, as the model's commands run), a port the test binds on the host's 0.0.0.0,
the host's bridge address and another sandbox's runtime and dev server are all out of reach,
while the agent (this test, on the host) still reaches both sandboxes' runtime and preview.
Without the fence the same probes get through, so the test can tell."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
from collections.abc import Iterator

import attrs
import httpx
import pytest
import trio
from amicable_agent.errors import ConfigError
from amicable_agent.sandboxes.container import fence
from amicable_agent.sandboxes.container.backend import open_container_backend
from amicable_agent.sandboxes.container.config import ContainerBackendConfig
from amicable_agent.sandboxes.container.network import bridge_name
from amicable_testing.container_backend import backend_for, cleanup, connect_probe, run
from amicable_testing.podman import image_ref, podman


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A TCP port listening on the host's 0.0.0.0 (the kernel completes handshakes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("0.0.0.0", 0))  # a host service bound to every address
        listener.listen(16)
        yield int(listener.getsockname()[1])


def config_for(podman_socket: str) -> ContainerBackendConfig:
    return ContainerBackendConfig(
        socket_path=podman_socket,
        image=image_ref("sandbox"),
        network=f"amicable-fence-{secrets.token_hex(3)}",
        memory_bytes=768 * 1024**2,
        cpus=1.0,
        reap_interval_s=3600,
        warm_pool_size=0,
    )


async def test_sandboxes_reach_neither_the_host_nor_each_other(
    podman_socket: str, host_listener: int
) -> None:
    config = config_for(podman_socket)
    async with backend_for(config) as backend:
        a = await backend.ensure(f"s-{secrets.token_hex(4)}", project_id="pa", template_id="vite")
        b = await backend.ensure(f"s-{secrets.token_hex(4)}", project_id="pb", template_id="vite")
        network = json.loads(podman("network", "inspect", config.network))[0]
        assert network["network_interface"] == bridge_name(config.network)
        gateway = network["subnets"][0]["gateway"]
        b_ip = httpx.URL(b.runtime_url).host
        tables = podman_nft_tables()
        assert f"inet {fence.table_name(config.network)}" in tables
        assert f"bridge {fence.table_name(config.network)}" in tables

        targets = [(gateway, host_listener), (b_ip, 8888), (b_ip, 3000)]

        async def probes() -> list[str]:
            out = []
            for host, port in targets:
                result = await run(a, connect_probe(host, port))
                out.append(str(result["stdout"]).strip())
            return out

        fenced = await probes()
        assert all(line.startswith("BLOCKED") for line in fenced), fenced
        # The agent side still works: exec on both runtimes, both previews serve.
        assert str((await run(b, "echo hi"))["stdout"]).strip() == "hi"
        async with httpx.AsyncClient(timeout=30) as client:
            for handle in (a, b):
                page = await client.get(f"{handle.preview_upstream}/")
                assert page.status_code == 200
                assert "/@vite/client" in page.text

        # The control: the same probes get through once the fence is lifted.
        await fence.remove(config.network)
        assert fence.table_name(config.network) not in podman_nft_tables()
        open_ = await probes()
        assert open_ == ["OPEN", "OPEN", "OPEN"], open_

        # Applying it again (what the next agent start does) closes them again.
        subnets = [network["subnets"][0]["subnet"]]
        await fence.apply(config.network, bridge_name(config.network), subnets)
        await fence.apply(config.network, bridge_name(config.network), subnets)  # idempotent
        again = await probes()
        assert all(line.startswith("BLOCKED") for line in again), again
    assert fence.table_name(config.network) not in podman_nft_tables()


def podman_nft_tables() -> str:
    return subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout


async def test_an_unfenceable_network_refuses_to_start(
    podman_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``nft``: the backend does not start, and says which setting turns the fence off;
    with it off, the backend starts and installs no rules."""
    config = config_for(podman_socket)
    try:
        monkeypatch.setattr(fence, "NFT", "/nonexistent/nft")
        with pytest.raises(ConfigError, match="AMICABLE_CONTAINER_FENCE=off"):
            async with open_container_backend(config):
                pass
        monkeypatch.undo()
        async with open_container_backend(attrs.evolve(config, fence="off")) as backend:
            assert fence.table_name(config.network) not in podman_nft_tables()
            assert await backend.list() == []
    finally:
        monkeypatch.undo()
        await trio.to_thread.run_sync(cleanup, config.network)


async def test_a_network_amicable_did_not_create_is_never_fenced(podman_socket: str) -> None:
    config = config_for(podman_socket)
    podman("network", "create", "--internal", config.network)
    try:
        with pytest.raises(ConfigError, match="not created by Amicable"):
            async with open_container_backend(config):
                pass
        assert fence.table_name(config.network) not in podman_nft_tables()
    finally:
        podman("network", "rm", "--force", config.network, check=False)
