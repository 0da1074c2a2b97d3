"""The environment the chart renders is one each service's real config loader accepts and
reads as intended (agent, preview router, sandbox runtime): names, ports, hosts, secrets."""

from __future__ import annotations

from typing import Any

import pytest
from amicable_agent.config import AgentConfig
from amicable_preview_router.config import config_from_env
from amicable_sandbox_runtime.config import load_config as runtime_config
from amicable_sandbox_runtime.errors import ConfigError as RuntimeConfigError
from deploy_support import CHART, OIDC_FLAGS, container_env, find

SEED = [
    "--set",
    "sandboxNamespace=amicable",
    "--set",
    "agent.ingress.host=agent.example.com",
    "--set",
    "agent.env.previewBaseDomain=preview.example.com",
    "--set",
    'previewRouter.ingress.wildcardHost="*.preview.example.com"',
    "--set",
    "editor.enabled=true",
    "--set",
    "editor.ingress.host=editor.example.com",
    *OIDC_FLAGS,
]


def plain_env(doc: dict[str, Any], **secrets: str) -> dict[str, str]:
    """A container's env as its process sees it; secretKeyRefs resolved from ``secrets``."""
    env = {}
    for name, value in container_env(doc).items():
        if isinstance(value, str):
            env[name] = value
        elif name in secrets:
            env[name] = secrets[name]
    return env


async def test_agent_reads_the_charts_env(render) -> None:
    docs = await render(*SEED)
    env = plain_env(
        find(docs, "Deployment", "amicable-agent"),
        AMICABLE_PREVIEW_RESOLVER_TOKEN="resolver-token",
        ANTHROPIC_API_KEY="sk-ant-test",
    )
    config = AgentConfig.from_env(env)
    assert (config.host, config.port) == ("0.0.0.0", 8000)
    assert (config.internal_host, config.internal_port) == ("0.0.0.0", 8001)
    assert config.sandbox_backend == "kubernetes"
    assert config.preview_base_domain == "preview.example.com"
    assert config.preview_scheme == "https"
    assert config.preview_url("amicable-abc") == "https://amicable-abc.preview.example.com/"
    assert config.auth.allowed_origins == ("https://editor.example.com",)
    assert config.preview_resolver_token == "resolver-token"
    assert str(config.sqlite_path).startswith("/data/")
    # The chart's ports are the ones the agent listens on.
    deploy = find(docs, "Deployment", "amicable-agent")
    ports = {
        p["name"]: p["containerPort"]
        for p in deploy["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert ports == {"http": config.port, "internal": config.internal_port}


async def test_router_reads_the_charts_env(render) -> None:
    docs = await render(*SEED)
    router = find(docs, "Deployment", "amicable-preview-router")
    config = config_from_env(plain_env(router, AMICABLE_PREVIEW_RESOLVER_TOKEN="resolver-token"))
    assert (config.host, config.port) == ("0.0.0.0", 8080)
    assert config.base_domain == "preview.example.com"
    assert config.sandbox_namespace == "amicable"
    assert config.resolver_token == "resolver-token"
    internal = find(docs, "Service", "amicable-agent-internal")
    assert config.resolver_url == (
        f"http://{internal['metadata']['name']}.amicable.svc.cluster.local:"
        f"{internal['spec']['ports'][0]['port']}/internal/preview/resolve"
    )
    upstream = config.upstream_template.format(sandbox_id="amicable-abc", namespace="amicable")
    assert upstream == "http://amicable-abc.amicable.svc.cluster.local:3000"
    assert router["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 8080


@pytest.mark.parametrize("warm", [False, True])
async def test_sandbox_runtime_reads_the_templates_env(warm: bool, render, tmp_path) -> None:
    flags = ["-f", str(CHART / "values.kind.yaml")]
    if warm:
        flags += ["--set", "sandboxWarmPools.enabled=true"]
        flags += ["--set", "sandboxTemplate.runtimeAuth.mode=networkPolicyOnly"]
    template = find(await render(*flags), "SandboxTemplate")
    container = template["spec"]["podTemplate"]["spec"]["containers"][0]
    env = plain_env(template["spec"]["podTemplate"])
    insecure = "--insecure-no-auth" in container.get("args", [])
    assert insecure is warm
    if warm:
        config = runtime_config(env, insecure_no_auth=True)
    else:
        # Without the claim's injected token the runtime refuses to start ...
        with pytest.raises(RuntimeConfigError, match="AMICABLE_RUNTIME_TOKEN"):
            runtime_config(env)
        # ... and with it, it serves.
        config = runtime_config({**env, "AMICABLE_RUNTIME_TOKEN": "t0ken"})
        assert config.token == "t0ken"
    assert str(config.workspace) == "/app"
    assert (config.host, config.port) == ("0.0.0.0", 8888)
    assert (config.preview_host, config.preview_port) == ("0.0.0.0", 3000)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"runtime": config.port, "preview": config.preview_port}
