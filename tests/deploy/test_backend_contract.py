"""The chart and the agent's KubernetesBackend agree: the backend configured from the env the
chart renders creates SandboxClaims the CRD accepts (strictly), in the namespace the chart's
Role covers, referencing the template or warm pool the chart renders, and carries a runtime
token exactly when the template lets claims inject env."""

from __future__ import annotations

from typing import Any

import pytest
from amicable_agent.sandboxes.kubernetes.backend import KubernetesBackend, KubernetesBackendConfig
from deploy_support import V1BETA1_FLAGS, WARM_POOL_FLAGS, container_env, find

CASES = {
    "per-claim-token": [],
    "warm-pool": WARM_POOL_FLAGS,
    "warm-pool-v1beta1": [*WARM_POOL_FLAGS, *V1BETA1_FLAGS],
    "separate-namespace": ["--set", "sandboxNamespace=amicable-sandboxes"],
}


class _NoApi:
    """claim_body never calls the API; aclose() only closes it."""

    def close(self) -> None:
        pass


def agent_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The agent's environment as the pod would see it (secret refs -> stand-in values)."""
    env = {}
    for name, value in container_env(find(docs, "Deployment", "amicable-agent")).items():
        env[name] = value if isinstance(value, str) else f"from-secret-{name.lower()}"
    return env


@pytest.mark.parametrize("case", list(CASES))
async def test_claims_from_the_charts_config_are_accepted(
    case: str, render, crd_validators
) -> None:
    docs = await render(*CASES[case])
    config = KubernetesBackendConfig.from_env(agent_env(docs))
    backend = KubernetesBackend(config, api=_NoApi())  # type: ignore[arg-type]  # claim_body is pure
    try:
        claim = backend.claim_body("session-1", project_id="project-1", template_id="vite")
    finally:
        await backend.aclose()

    validator = crd_validators[(claim["apiVersion"], "SandboxClaim")]
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(claim)]
    assert not errors, errors

    role = find(docs, "Role")
    assert config.namespace == role["metadata"]["namespace"]
    template = find(docs, "SandboxTemplate")
    assert template["metadata"]["namespace"] == config.namespace
    spec = claim["spec"]
    if "warmPoolRef" in spec:
        pool = find(docs, "SandboxWarmPool", spec["warmPoolRef"]["name"])
        assert pool["spec"]["sandboxTemplateRef"]["name"] == template["metadata"]["name"]
    else:
        assert spec["sandboxTemplateRef"]["name"] == template["metadata"]["name"]
    injects = template["spec"]["envVarsInjectionPolicy"] != "Disallowed"
    assert ("env" in spec) is injects, "token env only where the template accepts it"
    assert config.idle_ttl_s == float(agent_env(docs)["AMICABLE_SANDBOX_IDLE_TTL_S"])
    assert "shutdownTime" in spec["lifecycle"]
