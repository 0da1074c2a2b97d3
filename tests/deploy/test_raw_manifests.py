"""deploy/k8s: the raw manifests the install guide names parse, validate strictly, carry the
seed's placeholders, keep the network isolation, and do not drift from the chart."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml
from deploy_support import (
    REPO,
    check_network_isolation,
    check_secure_defaults,
    container_env,
    find,
    load_docs,
    run_tool,
)

RAW = REPO / "deploy" / "k8s"
SEED_FILES = [
    "sandbox-template.yaml",
    "preview-router/deployment.yaml",
    "preview-router/service.yaml",
    "preview-router/ingress.yaml",
    "agent/rbac.yaml",
    "agent/deployment.yaml",
    "agent/service.yaml",
    "agent/ingress.yaml",
    "agent/secret.example.yaml",
]


def all_docs() -> list[dict]:
    docs = []
    for path in sorted(RAW.rglob("*.yaml")):
        if path.name != "values.raw.yaml":
            docs += load_docs(path.read_text())
    return docs


def test_the_files_the_guide_names_exist() -> None:
    for name in SEED_FILES:
        assert (RAW / name).is_file(), name


async def test_raw_manifests_validate(validate) -> None:
    docs = all_docs()
    await validate(docs)
    check_secure_defaults(docs)
    check_network_isolation(docs)
    assert {d["metadata"].get("namespace") for d in docs} == {"default"}


def test_placeholders_are_the_seeds() -> None:
    docs = all_docs()
    template = find(docs, "SandboxTemplate")
    container = template["spec"]["podTemplate"]["spec"]["containers"][0]
    assert container["image"] == "<REGISTRY>/amicable-sandbox:<TAG>"
    env = container_env(template["spec"]["podTemplate"])
    assert env["__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS"] == ".preview.example.com"
    agent = find(docs, "Deployment", "amicable-agent")
    assert agent["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "<REGISTRY>/amicable-agent:<TAG>"
    )
    agent_env = container_env(agent)
    assert agent_env["K8S_SANDBOX_NAMESPACE"] == "default"
    assert agent_env["PREVIEW_BASE_DOMAIN"] == "preview.example.com"
    assert agent_env["PREVIEW_SCHEME"] == "https"
    # Login: the provider is a placeholder; the secrets come from the example Secret's keys.
    assert agent_env["AUTH_MODE"] == "oidc"
    assert agent_env["OIDC_ISSUER_URL"] == "https://login.example.com/realms/amicable"
    assert "AMICABLE_INSECURE_NO_AUTH" not in agent_env
    assert find(docs, "Ingress", "amicable-agent")["spec"]["rules"][0]["host"] == (
        "agent.example.com"
    )
    router_ingress = find(docs, "Ingress", "amicable-preview-router")
    assert router_ingress["spec"]["rules"][0]["host"] == "*.preview.example.com"
    router_env = container_env(find(docs, "Deployment", "amicable-preview-router"))
    assert router_env["SANDBOX_NAMESPACE"] == "default"
    # The example secret holds no real key, and the internal secret is in the same file.
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    agent_secret = secrets["amicable-agent-secrets"]["stringData"]
    assert agent_secret["ANTHROPIC_API_KEY"] == "sk-ant-..."
    for name in ("OIDC_CLIENT_SECRET", "SESSION_SECRET"):
        ref = agent_env[name]["secretKeyRef"]
        assert ref["name"] == "amicable-agent-secrets"
        assert agent_secret[ref["key"]].startswith("<"), name  # a placeholder, never a value
    assert set(secrets["amicable-internal"]["stringData"]) == {
        "PREVIEW_RESOLVER_TOKEN",
        "RUNTIME_TOKEN_SECRET",
    }


async def test_raw_manifests_match_the_chart(helm_bin: Path) -> None:
    spec = importlib.util.spec_from_file_location("amicable_regenerate", RAW / "regenerate.py")
    assert spec
    assert spec.loader
    regenerate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regenerate)
    rendered = await run_tool(
        [
            helm_bin,
            "template",
            "amicable",
            regenerate.CHART,
            "-n",
            "default",
            "-f",
            regenerate.VALUES,
        ]
    )
    expected = regenerate.split_render(rendered)
    assert set(expected) | {"agent/secret.example.yaml"} == {
        str(p.relative_to(RAW)) for p in RAW.rglob("*.yaml") if p.name != "values.raw.yaml"
    }
    for name, docs in expected.items():
        want = [d for d in yaml.safe_load_all("---\n".join(docs)) if d]
        have = load_docs((RAW / name).read_text())
        assert have == want, f"deploy/k8s/{name} drifted: run deploy/k8s/regenerate.py"
