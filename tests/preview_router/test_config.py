"""Configuration from the environment."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from amicable_preview_router.config import DEFAULT_UPSTREAM_TEMPLATE, config_from_env
from amicable_preview_router.errors import ConfigError


def test_defaults() -> None:
    config = config_from_env({})
    assert config.base_domain == "preview.localhost"
    assert config.port == 8080
    assert config.host == "0.0.0.0"
    assert config.resolver_url is None
    assert config.upstream_template == DEFAULT_UPSTREAM_TEMPLATE
    assert config.cache_ttl_s == 60
    assert config.negative_cache_ttl_s == 5
    assert config.http_idle_timeout_s == 60
    assert config.ws_idle_timeout_s == 3600
    assert config.forwarded_proto == "http"
    assert config.trusted_proxies == ()


def test_environment_is_read(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    config = config_from_env(
        {
            "PREVIEW_BASE_DOMAIN": "Preview.Example.com",
            "AMICABLE_PREVIEW_ROUTER_PORT": "9090",
            "SANDBOX_NAMESPACE": "sbx",
            "AMICABLE_PREVIEW_RESOLVER_URL": "http://agent:8001/internal/preview/resolve",
            "AMICABLE_PREVIEW_RESOLVER_TOKEN_FILE": str(token_file),
            "AMICABLE_PREVIEW_CACHE_TTL_S": "30",
            "AMICABLE_PREVIEW_FORWARDED_PROTO": "https",
            "AMICABLE_PREVIEW_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1",
        }
    )
    assert config.base_domain == "preview.example.com"
    assert config.port == 9090
    assert config.sandbox_namespace == "sbx"
    assert config.resolver_token == "from-file"
    assert "from-file" not in repr(config)
    assert config.cache_ttl_s == 30
    assert config.forwarded_proto == "https"
    assert ipaddress.ip_address("10.1.2.3") in config.trusted_proxies[0]


@pytest.mark.parametrize(
    "env",
    [
        {"PREVIEW_BASE_DOMAIN": "*.example.com"},
        {"AMICABLE_PREVIEW_ROUTER_PORT": "eighty"},
        {"AMICABLE_PREVIEW_ROUTER_PORT": "70000"},
        {"AMICABLE_PREVIEW_CACHE_TTL_S": "-1"},
        {"AMICABLE_PREVIEW_FORWARDED_PROTO": "gopher"},
        {"AMICABLE_PREVIEW_UPSTREAM_TEMPLATE": "http://{label}:3000"},
        {"AMICABLE_PREVIEW_TRUSTED_PROXIES": "not-an-ip"},
        {"AMICABLE_PREVIEW_RESOLVER_TOKEN_FILE": "/nonexistent/token"},
    ],
)
def test_invalid_environment_names_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_env(env)
    assert any(word in str(info.value) for word in ("PREVIEW", "AMICABLE"))
