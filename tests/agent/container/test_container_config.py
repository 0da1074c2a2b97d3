"""The container backend's settings and the container it asks the engine for (no engine
needed: the create body is data; tests/images runs it against real podman)."""

from __future__ import annotations

import pytest
from amicable_agent.config import AgentConfig
from amicable_agent.sandboxes.container.config import ContainerBackendConfig, sandbox_hmr_env
from amicable_agent.sandboxes.container.spec import (
    address_of,
    create_body,
    labels,
    spare_labels,
    token_of,
)


def test_defaults_and_overrides() -> None:
    assert ContainerBackendConfig.from_env({}) == ContainerBackendConfig()
    config = ContainerBackendConfig.from_env(
        {
            "DOCKER_HOST": "unix:///var/run/docker.sock",
            "AMICABLE_CONTAINER_IMAGE": "ghcr.io/acme/amicable-sandbox:main",
            "AMICABLE_CONTAINER_NETWORK_INTERNAL": "false",
            "AMICABLE_CONTAINER_ADDRESS": "name",
            "AMICABLE_CONTAINER_CPUS": "0.5",
            "AMICABLE_SANDBOX_PIDS_MAX": "200",
        }
    )
    assert config.socket_path == "/var/run/docker.sock"
    assert config.image == "ghcr.io/acme/amicable-sandbox:main"
    assert (config.internal_network, config.address, config.cpus, config.pids_max) == (
        False, "name", 0.5, 200,
    )  # fmt: skip
    explicit = ContainerBackendConfig.from_env(
        {"DOCKER_HOST": "tcp://10.0.0.1:2375", "AMICABLE_CONTAINER_SOCKET": "/run/e.sock"}
    )
    assert explicit.socket_path == "/run/e.sock"
    assert ContainerBackendConfig.from_env({"DOCKER_HOST": "tcp://h:1"}).socket_path == (
        "/run/podman/podman.sock"
    )


def test_one_image_per_template_fence_and_warm_pool() -> None:
    default = ContainerBackendConfig.from_env({})
    assert default.image_for("hono") == "localhost/amicable-sandbox-hono:dev"
    assert (default.fence, default.warm_pool_size, default.warm_pool_templates) == (
        "nft", 1, ("vite",),
    )  # fmt: skip
    one = ContainerBackendConfig.from_env({"AMICABLE_CONTAINER_IMAGE": "reg/sbx:1"})
    assert one.image_for("hono") == one.image_for("vite") == "reg/sbx:1"
    custom = ContainerBackendConfig.from_env(
        {
            "AMICABLE_CONTAINER_IMAGE": "ghcr.io/acme/amicable-sandbox-{template}:main",
            "AMICABLE_CONTAINER_FENCE": "off",
            "AMICABLE_WARM_POOL_SIZE": "2",
            "AMICABLE_WARM_POOL_TEMPLATES": "vite, hono,vite",
        }
    )
    assert custom.image_for("hono") == "ghcr.io/acme/amicable-sandbox-hono:main"
    assert (custom.fence, custom.warm_pool_size, custom.warm_pool_templates) == (
        "off", 2, ("vite", "hono"),
    )  # fmt: skip
    assert ContainerBackendConfig.from_env(
        {"AMICABLE_DEFAULT_TEMPLATE": "hono"}
    ).warm_pool_templates == ("hono",)


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("AMICABLE_CONTAINER_SOCKET", "relative.sock", "absolute path"),
        ("AMICABLE_CONTAINER_ADDRESS", "dns", "AMICABLE_CONTAINER_ADDRESS"),
        ("AMICABLE_CONTAINER_CPUS", "0", "AMICABLE_CONTAINER_CPUS"),
        ("AMICABLE_CONTAINER_NOFILE", "10", "AMICABLE_CONTAINER_NOFILE"),
        ("AMICABLE_CONTAINER_NETWORK_INTERNAL", "perhaps", "AMICABLE_CONTAINER_NETWORK_INTERNAL"),
        ("AMICABLE_CONTAINER_FENCE", "iptables", "AMICABLE_CONTAINER_FENCE"),
        ("AMICABLE_WARM_POOL_SIZE", "-1", "AMICABLE_WARM_POOL_SIZE"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ContainerBackendConfig.from_env({name: value})


def test_the_agent_accepts_the_container_backend() -> None:
    config = AgentConfig.from_env({"AMICABLE_SANDBOX_BACKEND": "container"})
    assert config.sandbox_backend == "container"


def test_create_body_limits_and_isolates() -> None:
    config = ContainerBackendConfig(memory_bytes=512 * 1024**2, cpus=1.5, pids_max=100)
    body = create_body(
        config, "amicable-0123456789ab", "secret", labels("s", "p", "vite"),
        image=config.image_for("vite"), volume="amicable-0123456789ab-workspace",
    )  # fmt: skip
    assert body["Image"] == "localhost/amicable-sandbox-vite:dev"
    host = body["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"]) == (
        512 * 1024**2, 512 * 1024**2, 1_500_000_000, 100,
    )  # fmt: skip
    assert host["CapDrop"] == ["ALL"]
    assert host["Sysctls"] == {"net.ipv6.conf.all.disable_ipv6": "1"}, "no link-local IPv6"
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["NetworkMode"] == config.network
    assert "Privileged" not in host
    assert "Binds" not in host, "no host paths: only the named workspace volume"
    assert host["Mounts"] == [
        {"Type": "volume", "Source": "amicable-0123456789ab-workspace", "Target": "/app"}
    ]
    assert "User" not in body, "the image's own non-root user"
    assert token_of({"Config": {"Env": body["Env"]}}) == "secret"
    assert token_of({"Config": {"Env": ["A=b"]}}) is None


def test_hmr_settings_follow_the_preview_url() -> None:
    plain = sandbox_hmr_env(
        preview_base_domain="preview.localhost", preview_scheme="http", preview_public_port=8080
    )
    assert plain == {
        "__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS": ".preview.localhost",
        "AMICABLE_HMR_PROTOCOL": "ws",
        "AMICABLE_HMR_CLIENT_PORT": "8080",
    }
    tls = sandbox_hmr_env(
        preview_base_domain="p.example.com", preview_scheme="https", preview_public_port=None
    )
    assert (tls["AMICABLE_HMR_PROTOCOL"], tls["AMICABLE_HMR_CLIENT_PORT"]) == ("wss", "443")


def test_address_by_ip_or_name_and_claimed_spares_by_ip() -> None:
    by_name = ContainerBackendConfig(address="name", network="n")
    inspected = {
        "Name": "/amicable-0123456789ab",
        "Config": {"Labels": labels("s", "p", "vite")},
        "NetworkSettings": {"Networks": {"n": {"IPAddress": "10.89.0.7"}}},
    }
    assert address_of(inspected, ContainerBackendConfig(network="n")) == "10.89.0.7"
    assert address_of(inspected, by_name) == "amicable-0123456789ab"
    # a renamed spare: the engine's DNS still knows only the spare's name
    claimed = {**inspected, "Config": {"Labels": spare_labels("vite", "n")}}
    assert address_of(claimed, by_name) == "10.89.0.7"
