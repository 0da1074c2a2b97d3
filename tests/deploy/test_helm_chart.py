"""The Helm chart: lint, the seed guide's install commands, a values matrix, and what must hold
in every rendering (schemas, secure pod defaults, RBAC, NetworkPolicy reachability)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from deploy_support import (
    CHART,
    MIN_KUBERNETES_VERSION,
    OIDC_FLAGS,
    REPO,
    V1BETA1_FLAGS,
    WARM_POOL_FLAGS,
    CommandFailed,
    check_network_isolation,
    check_secure_defaults,
    container_env,
    find,
    run_tool,
)

# The two install commands of the install guide (§4 steps 2 and 3), verbatim: the seed guide's
# with previews on a registrable domain of their own and a login (the chart refuses an agent
# Ingress without one). The second reuses the first one's values.
GUIDE_INSTALL = r"""
helm upgrade --install amicable ./deploy/helm/amicable \
  --namespace amicable --create-namespace \
  --set sandboxNamespace=amicable \
  --set sandboxTemplate.additionalAllowedHosts=.example-preview.net \
  --set agent.ingress.host=agent.example.com \
  --set agent.env.previewBaseDomain=example-preview.net \
  --set previewRouter.ingress.wildcardHost=\"*.example-preview.net\" \
  --set agent.auth.mode=oidc \
  --set agent.auth.oidc.issuerUrl=https://keycloak.example.com/realms/amicable \
  --set agent.auth.oidc.clientId=amicable
"""
GUIDE_EDITOR = r"""
helm upgrade --install amicable ./deploy/helm/amicable \
  --namespace amicable --create-namespace --reuse-values \
  --set editor.enabled=true \
  --set editor.ingress.host=editor.example.com \
  --set editor.runtimeConfig.VITE_AGENT_WS_URL=wss://agent.example.com/
"""


def helm_template_args(command: str) -> list[str]:
    """Turn a `helm upgrade --install NAME CHART ...` shell command into `helm template` args."""
    argv = shlex.split(command.replace("\\\n", " ").strip())  # shell line continuations
    assert argv[:3] == ["helm", "upgrade", "--install"], argv
    out: list[str] = []
    rest = argv[3:]
    positional = 0
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in ("--create-namespace", "--reuse-values", "--wait", "--atomic"):
            pass
        elif arg in ("--namespace", "-n", "--set", "--set-string", "-f", "--values"):
            out += [arg, rest[i + 1]]
            i += 1
        elif arg.startswith("-"):
            raise AssertionError(f"unexpected flag {arg}")
        else:
            positional += 1  # release name, then chart path (both fixed by the fixture)
            if positional == 2:
                assert (REPO / arg).resolve() == CHART, arg
        i += 1
    assert positional == 2, argv
    return out


async def test_helm_lint_strict(helm_bin: Path) -> None:
    out = await run_tool([helm_bin, "lint", "--strict", CHART, *OIDC_FLAGS])
    assert "0 chart(s) failed" in out
    kind = await run_tool([helm_bin, "lint", "--strict", CHART, "-f", CHART / "values.kind.yaml"])
    assert "0 chart(s) failed" in kind


async def test_guide_install_commands_render_and_validate(render, validate) -> None:
    first = helm_template_args(GUIDE_INSTALL)
    docs = await render(*first)
    await validate(docs)
    assert not [d for d in docs if d["metadata"]["name"].endswith("editor")]

    both = await render(*first, *helm_template_args(GUIDE_EDITOR))  # --reuse-values
    await validate(both)
    agent = find(both, "Deployment", "amicable-agent")
    env = container_env(agent)
    assert env["K8S_SANDBOX_NAMESPACE"] == "amicable"
    assert env["PREVIEW_BASE_DOMAIN"] == "example-preview.net"
    assert env["PREVIEW_SCHEME"] == "https"
    assert env["AMICABLE_SANDBOX_BACKEND"] == "kubernetes"
    assert env["K8S_SANDBOX_TEMPLATE_NAME"] == "amicable-sandbox-vite"
    assert env["AMICABLE_ALLOWED_ORIGINS"] == "https://editor.example.com"
    assert env["ANTHROPIC_API_KEY"]["secretKeyRef"] == {
        "name": "amicable-agent-secrets",
        "key": "ANTHROPIC_API_KEY",
    }
    assert env["OPENAI_API_KEY"]["secretKeyRef"]["optional"] is True
    assert env["AUTH_MODE"] == "oidc"
    assert env["OIDC_ISSUER_URL"] == "https://keycloak.example.com/realms/amicable"
    assert env["PUBLIC_BASE_URL"] == "https://agent.example.com"

    router = find(both, "Ingress", "amicable-preview-router")
    assert [r["host"] for r in router["spec"]["rules"]] == ["*.example-preview.net"]
    assert find(both, "Ingress", "amicable-agent")["spec"]["rules"][0]["host"] == (
        "agent.example.com"
    )
    assert find(both, "Ingress", "amicable-editor")["spec"]["rules"][0]["host"] == (
        "editor.example.com"
    )
    config_js = find(both, "ConfigMap", "amicable-editor-config")["data"]["config.js"]
    match = re.fullmatch(r"window\.__AMICABLE_CONFIG__ = (\{.*\});\n", config_js)
    assert match, config_js
    assert json.loads(match.group(1)) == {"VITE_AGENT_WS_URL": "wss://agent.example.com/"}

    template = find(both, "SandboxTemplate", "amicable-sandbox-vite")
    assert template["metadata"]["namespace"] == "amicable"
    assert template["spec"]["service"] is True  # <sandbox>.<ns>.svc.cluster.local must exist
    sandbox_env = container_env(template["spec"]["podTemplate"])
    assert sandbox_env["__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS"] == ".example-preview.net"
    assert sandbox_env["AMICABLE_HMR_CLIENT_PORT"] == "443"
    assert sandbox_env["AMICABLE_HMR_PROTOCOL"] == "wss"


@pytest.mark.parametrize("doc", ["kubernetes.md", "local_kind.md", "models.md"])
async def test_docs_helm_commands_render(doc: str, render, validate) -> None:
    """Every `helm upgrade --install` in the install guides works as written."""
    text = (REPO / "docs" / doc).read_text()
    commands = re.findall(r"^(helm upgrade --install (?:.*\\\n)*.*)$", text, re.M)
    assert len(commands) >= 2, commands
    if doc == "kubernetes.md":  # the commands checked in detail above are the guide's
        assert GUIDE_INSTALL.strip() in commands
        assert GUIDE_EDITOR.strip() in commands
    previous: list[str] = []
    for command in commands:
        args = helm_template_args(command)
        if "--reuse-values" in command:
            args = previous + args
        docs = await render(*args)
        await validate(docs)
        check_secure_defaults(docs)
        check_network_isolation(docs)
        previous = args


MATRIX: dict[str, list[str]] = {
    "defaults-with-oidc": OIDC_FLAGS,
    "google": ["--set", "agent.auth.mode=google"],
    "no-login-cluster-internal": [
        "--set",
        "agent.ingress.enabled=false",
        "--set",
        "agent.auth.allowInsecureNoAuth=true",
    ],
    "editor-on": [*OIDC_FLAGS, "--set", "editor.enabled=true"],
    "editor-off-no-ingress": [
        *OIDC_FLAGS,
        "--set",
        "editor.enabled=false",
        "--set",
        "agent.ingress.enabled=false",
        "--set",
        "previewRouter.ingress.enabled=false",
    ],
    "tls": [
        *OIDC_FLAGS,
        "--set",
        "editor.enabled=true",
        "--set",
        "agent.ingress.tls.enabled=true",
        "--set",
        "previewRouter.ingress.tls.enabled=true",
        "--set",
        "editor.ingress.tls.enabled=true",
        "--set",
        "agent.ingress.className=nginx",
        "--set-string",
        "agent.ingress.annotations.cert-manager\\.io/cluster-issuer=letsencrypt",
    ],
    "warm-pool": [*OIDC_FLAGS, *WARM_POOL_FLAGS],
    "warm-pool-v1beta1": [*OIDC_FLAGS, *WARM_POOL_FLAGS, *V1BETA1_FLAGS],
    "traefik-force-http1": [
        *OIDC_FLAGS,
        "--set",
        "agent.ingress.className=traefik",
        "--set",
        "agent.ingress.tls.enabled=true",
        "--set",
        "agent.ingress.traefik.forceHttp1.enabled=true",
    ],
    "network-policy-off": [*OIDC_FLAGS, "--set", "networkPolicy.enabled=false"],
    "separate-sandbox-namespace": [*OIDC_FLAGS, "--set", "sandboxNamespace=amicable-sandboxes"],
    "hardened-sandboxes": [
        *OIDC_FLAGS,
        "--set",
        "sandboxTemplate.runtimeClassName=gvisor",
        "--set",
        "sandboxTemplate.nodeSelector.pool=sandboxes",
        "--set",
        "imagePullSecrets[0]=ghcr",
        "--set",
        "networkPolicy.sandboxEgress.allowInternet=false",
    ],
    "no-persistence": [*OIDC_FLAGS, "--set", "agent.persistence.enabled=false"],
    "existing-claim-and-secret": [
        *OIDC_FLAGS,
        "--set",
        "agent.persistence.existingClaim=my-data",
        "--set",
        "internalSecret.existingSecret=my-internal",
    ],
    "external-db-two-replicas": [
        *OIDC_FLAGS,
        "--set",
        "agent.replicaCount=2",
        "--set",
        "agent.database.url=postgresql://amicable@db/amicable",
    ],
    "db-url-from-secret-three-replicas": [
        *OIDC_FLAGS,
        "--set",
        "agent.replicaCount=3",
        "--set",
        "agent.database.urlSecretKey=DATABASE_URL",
    ],
    "kind": ["-f", str(CHART / "values.kind.yaml")],
    "pause-workspace-volume-s3-snapshots": [
        *OIDC_FLAGS,
        "--set",
        "agent.env.sandboxIdleAction=pause",
        "--set",
        "sandboxTemplate.workspaceVolume.enabled=true",
        "--set",
        "agent.snapshots.url=s3://amicable-snapshots/prod",
        "--set",
        "agent.snapshots.endpointUrl=http://minio.storage:9000",
    ],
}


@pytest.mark.parametrize("case", list(MATRIX))
async def test_values_matrix_validates(case: str, render, validate) -> None:
    docs = await render(*MATRIX[case])
    await validate(docs)
    check_secure_defaults(docs)
    check_network_isolation(docs)


async def test_isolation_check_catches_an_open_policy(render) -> None:
    docs = await render(*OIDC_FLAGS)
    open_all = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-all", "namespace": "amicable"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
    }
    with pytest.raises(AssertionError):
        check_network_isolation([*docs, open_all])


async def test_default_render_validates_on_minimum_kubernetes(render, validate) -> None:
    docs = await render(*OIDC_FLAGS, "--set", "editor.enabled=true")
    await validate(docs, version=MIN_KUBERNETES_VERSION)


async def test_rbac_is_limited_to_what_the_agent_uses(render) -> None:
    docs = await render(*OIDC_FLAGS, "--set", "sandboxNamespace=sandboxes")
    role = find(docs, "Role")
    assert role["metadata"]["namespace"] == "sandboxes"
    rules = {
        (g, r): sorted(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules == {
        ("extensions.agents.x-k8s.io", "sandboxclaims"): sorted(
            ["create", "get", "list", "watch", "delete", "patch"]
        ),
        ("extensions.agents.x-k8s.io", "sandboxtemplates"): ["get"],
        ("extensions.agents.x-k8s.io", "sandboxwarmpools"): ["get"],
        ("agents.x-k8s.io", "sandboxes"): ["get", "list", "watch"],
        ("coordination.k8s.io", "leases"): ["create", "get", "update"],
    }
    binding = find(docs, "RoleBinding")
    assert binding["metadata"]["namespace"] == "sandboxes"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "amicable-agent", "namespace": "amicable"}
    ]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]


async def test_force_http1_points_the_agent_ingress_at_the_tls_option(render) -> None:
    docs = await render(*MATRIX["traefik-force-http1"])
    option = find(docs, "TLSOption")
    assert option["spec"]["alpnProtocols"] == ["http/1.1"]
    ingress = find(docs, "Ingress", "amicable-agent")
    annotation = ingress["metadata"]["annotations"][
        "traefik.ingress.kubernetes.io/router.tls.options"
    ]
    assert annotation == f"amicable-{option['metadata']['name']}@kubernetescrd"
    assert not [d for d in await render(*OIDC_FLAGS) if d["kind"] == "TLSOption"]


async def test_tls_sections_name_their_hosts(render) -> None:
    docs = await render(*MATRIX["tls"])
    for name, host in [
        ("amicable-agent", "agent.example.com"),
        ("amicable-preview-router", "*.preview.example.com"),
        ("amicable-editor", "editor.example.com"),
    ]:
        ingress = find(docs, "Ingress", name)
        assert ingress["spec"]["tls"][0]["hosts"] == [host]
        assert ingress["spec"]["tls"][0]["secretName"]
    agent = find(docs, "Ingress", "amicable-agent")
    assert agent["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert "tls" not in find(await render(*OIDC_FLAGS), "Ingress", "amicable-agent")["spec"]


async def test_warm_pool_references_the_template(render) -> None:
    docs = await render(*MATRIX["warm-pool"])
    pool = find(docs, "SandboxWarmPool")
    template = find(docs, "SandboxTemplate")
    assert pool["spec"]["sandboxTemplateRef"]["name"] == template["metadata"]["name"]
    assert pool["spec"]["replicas"] == 1
    container = template["spec"]["podTemplate"]["spec"]["containers"][0]
    assert "--insecure-no-auth" in container["args"]
    assert template["spec"]["envVarsInjectionPolicy"] == "Disallowed"
    agent = container_env(find(docs, "Deployment", "amicable-agent"))
    assert agent["K8S_SANDBOX_TEMPLATE_NAME"] == template["metadata"]["name"]
    assert "AMICABLE_RUNTIME_TOKEN_SECRET" not in agent  # no token a warm pod could not get

    beta = await render(*MATRIX["warm-pool-v1beta1"])
    beta_agent = container_env(find(beta, "Deployment", "amicable-agent"))
    assert beta_agent["AMICABLE_SANDBOX_CLAIM_API_VERSION"] == "v1beta1"
    # v1beta1 claims reference the pool (spec.warmPoolRef), not the template.
    pool_name = find(beta, "SandboxWarmPool")["metadata"]["name"]
    assert beta_agent["K8S_SANDBOX_TEMPLATE_NAME"] == pool_name


async def test_per_claim_tokens_allow_env_injection(render) -> None:
    template = find(await render(*OIDC_FLAGS), "SandboxTemplate")
    assert template["spec"]["envVarsInjectionPolicy"] == "Allowed"
    container = template["spec"]["podTemplate"]["spec"]["containers"][0]
    assert "args" not in container  # the runtime's default: refuse requests without a token
    agent = container_env(find(await render(*OIDC_FLAGS), "Deployment", "amicable-agent"))
    assert agent["AMICABLE_RUNTIME_TOKEN_SECRET"]["secretKeyRef"]["key"] == "RUNTIME_TOKEN_SECRET"
    router = container_env(find(await render(*OIDC_FLAGS), "Deployment", "amicable-preview-router"))
    assert router["AMICABLE_PREVIEW_RESOLVER_TOKEN"] == agent["AMICABLE_PREVIEW_RESOLVER_TOKEN"]
    assert router["AMICABLE_PREVIEW_RESOLVER_URL"] == (
        "http://amicable-agent-internal.amicable.svc.cluster.local:8001/internal/preview/resolve"
    )
    assert router["SANDBOX_NAMESPACE"] == "amicable"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "agent.replicaCount=2"], "needs a shared store"),
        (
            ["--set", "agent.replicaCount=2", "--set", "agent.database.url=sqlite:////data/a.db"],
            "needs a shared store",
        ),
        (["--set", "agent.database.url=mysql://db/amicable"], "must be sqlite"),
        (["--set", "sandboxWarmPools.enabled=true"], "networkPolicyOnly"),
        (
            [
                "--set",
                "sandboxTemplate.runtimeAuth.mode=networkPolicyOnly",
                "--set",
                "networkPolicy.enabled=false",
            ],
            "open to the whole cluster",
        ),
        (["--set", "sandboxApi.claimVersion=v1beta1"], "warmPoolRef"),
        (["--set", "previewRouter.ingress.wildcardHost=*.other.example.com"], "must be"),
        (["--set", "agent.ingress.hots=agent.example.com"], "hots"),
        (["--set", "agent.env.previewScheme=ftp"], "previewScheme"),
        (["--set", "agent.auth.mode=saml"], "one of 'none', 'oidc', 'google'"),
        (["--set", "agent.auth.oidc.clientId="], "needs agent.auth.oidc.issuerUrl"),
        (["--set", "agent.auth.oidc.issuerUrl=keycloak.example.com/realms/a"], "issuerUrl"),
        (["--set", "agent.auth.publicBaseUrl=https://agent.example.com/app/"], "publicBaseUrl"),
        (["--set", "agent.auth.adminEmails={alice}"], "adminEmails"),
        (["--set", "agent.auth.sessionMaxAgeSeconds=forever"], "sessionMaxAgeSeconds"),
        (["--set", "agent.limits.maxProjectsPerUser=0"], "maxProjectsPerUser"),
        # A preview could set the login cookie of an agent or editor inside its domain.
        (["--set", "agent.ingress.host=agent.preview.example.com"], "inside the preview domain"),
        (
            ["--set", "editor.enabled=true", "--set", "editor.ingress.host=preview.example.com"],
            "inside the preview domain",
        ),
    ],
)
async def test_unworkable_values_are_refused(flags: list[str], message: str, render) -> None:
    with pytest.raises(CommandFailed, match=message):
        await render(*OIDC_FLAGS, *flags)


def without_login(args: list[str]) -> list[str]:
    """helm template args (flag/value pairs) minus the agent.auth settings."""
    pairs = zip(args[::2], args[1::2], strict=True)
    return [
        x for flag, value in pairs if not value.startswith("agent.auth.") for x in (flag, value)
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (  # the guide's install command as it was before logins
            without_login(helm_template_args(GUIDE_INSTALL)),
            r"agent.auth.mode=none would publish the agent without login on its Ingress "
            r"\(agent.example.com\).*Set agent.auth.mode=oidc.*or agent.auth.mode=google"
            r".*agent.auth.allowInsecureNoAuth=true",
        ),
        (
            ["--set", "agent.ingress.enabled=false"],
            r"Set agent.auth.mode=oidc.*or agent.auth.mode=google.*for a cluster-internal "
            r"install with no Ingress, agent.auth.allowInsecureNoAuth=true",
        ),
        (["--set", "agent.auth.mode=oidc"], "needs agent.auth.oidc.issuerUrl"),
    ],
)
async def test_no_login_is_refused_with_a_way_out(flags: list[str], message: str, render) -> None:
    with pytest.raises(CommandFailed, match=message):
        await render(*flags)


def probe_hosts(agent: dict) -> set[str]:
    container = agent["spec"]["template"]["spec"]["containers"][0]
    return {
        h["value"]
        for probe in ("readinessProbe", "livenessProbe")
        for h in container[probe]["httpGet"]["httpHeaders"]
        if h["name"] == "Host"
    }


async def test_oidc_login_is_wired_from_values_and_the_secret(render, validate) -> None:
    docs = await render(
        *OIDC_FLAGS,
        "--set",
        "editor.enabled=true",
        "--set",
        "agent.ingress.tls.enabled=true",
        "--set",
        "agent.auth.oidc.allowedEmailDomains={example.com,example.org}",
        "--set",
        "agent.auth.adminEmails={alice@example.com,bob@example.org}",
        "--set",
        "agent.auth.sessionMaxAgeSeconds=3600",
        "--set",
        "agent.secret.oidcClientSecretKey=kc-client-secret",
        "--set",
        "agent.limits.maxRunningSandboxes=40",
    )
    await validate(docs)
    check_secure_defaults(docs)
    agent = find(docs, "Deployment", "amicable-agent")
    env = container_env(agent)
    assert env["AUTH_MODE"] == "oidc"
    assert env["OIDC_ISSUER_URL"] == "https://login.example.com/realms/amicable"
    assert env["OIDC_CLIENT_ID"] == "amicable"
    # Secrets only by reference, and not optional: a missing key stops the pod at once.
    assert env["OIDC_CLIENT_SECRET"] == {
        "secretKeyRef": {"name": "amicable-agent-secrets", "key": "kc-client-secret"}
    }
    assert env["SESSION_SECRET"] == {
        "secretKeyRef": {"name": "amicable-agent-secrets", "key": "SESSION_SECRET"}
    }
    assert env["OIDC_SCOPES"] == "openid email profile"
    assert env["OIDC_ALLOWED_EMAIL_DOMAINS"] == "example.com,example.org"
    assert env["AMICABLE_ADMIN_EMAILS"] == "alice@example.com,bob@example.org"
    assert env["SESSION_MAX_AGE_SECONDS"] == "3600"
    assert env["PUBLIC_BASE_URL"] == "https://agent.example.com"
    assert env["AMICABLE_ALLOWED_ORIGINS"] == "https://editor.example.com"
    assert env["AMICABLE_MAX_PROJECTS_PER_USER"] == "100"
    assert env["AMICABLE_MAX_RUNNING_SANDBOXES_PER_USER"] == "5"
    assert env["AMICABLE_MAX_CONCURRENT_TURNS_PER_USER"] == "3"
    assert env["AMICABLE_MAX_RUNNING_SANDBOXES"] == "40"
    assert "AMICABLE_INSECURE_NO_AUTH" not in env
    assert not {"GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"} & set(env)
    # The agent answers only its own Host; the kubelet's probes must use it.
    assert probe_hosts(agent) == {"agent.example.com"}


async def test_google_login_reads_both_client_values_from_the_secret(render, validate) -> None:
    docs = await render(
        "--set", "agent.auth.mode=google", "--set", "agent.auth.oidc.scopes=openid email"
    )
    await validate(docs)
    env = container_env(find(docs, "Deployment", "amicable-agent"))
    assert env["AUTH_MODE"] == "google"
    for name in ("GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET", "SESSION_SECRET"):
        assert env[name] == {"secretKeyRef": {"name": "amicable-agent-secrets", "key": name}}
    assert env["OIDC_SCOPES"] == "openid email"  # a string is passed as given
    assert not {"OIDC_ISSUER_URL", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET"} & set(env)
    assert "OIDC_ALLOWED_EMAIL_DOMAINS" not in env  # empty: any account Google signs in
    assert "AMICABLE_ADMIN_EMAILS" not in env


@pytest.mark.parametrize("ingress", [False, True])
async def test_allow_insecure_no_auth_lets_the_agent_start_without_login(
    ingress: bool, render, validate
) -> None:
    docs = await render(
        "--set",
        f"agent.ingress.enabled={str(ingress).lower()}",
        "--set",
        "agent.auth.allowInsecureNoAuth=true",
    )
    await validate(docs)
    env = container_env(find(docs, "Deployment", "amicable-agent"))
    assert env["AUTH_MODE"] == "none"
    assert env["AMICABLE_INSECURE_NO_AUTH"] == "1"
    assert not {"SESSION_SECRET", "OIDC_CLIENT_SECRET", "GOOGLE_CLIENT_SECRET"} & set(env)
    agent_ingresses = [
        d for d in docs if d["kind"] == "Ingress" and d["metadata"]["name"] == "amicable-agent"
    ]
    assert len(agent_ingresses) == int(ingress)
    # The override means nothing with a login: the agent never gets the flag then.
    with_login = await render(*OIDC_FLAGS, "--set", "agent.auth.allowInsecureNoAuth=true")
    assert "AMICABLE_INSECURE_NO_AUTH" not in container_env(
        find(with_login, "Deployment", "amicable-agent")
    )


@pytest.mark.parametrize(
    ("flags", "url"),
    [
        ([], "https://agent.example.com"),  # previewScheme https: TLS ends before the Ingress
        (["--set", "agent.env.previewScheme=http"], "http://agent.example.com"),
        (
            ["--set", "agent.env.previewScheme=http", "--set", "agent.ingress.tls.enabled=true"],
            "https://agent.example.com",
        ),
        (["--set", 'agent.ingress.host="ai.example.org"'], "https://ai.example.org"),
        (
            ["--set", "agent.auth.publicBaseUrl=https://ai.example.org:8443"],
            "https://ai.example.org:8443",
        ),
    ],
)
async def test_public_base_url_follows_the_agent_ingress(
    flags: list[str], url: str, render
) -> None:
    agent = find(await render(*OIDC_FLAGS, *flags), "Deployment", "amicable-agent")
    assert container_env(agent)["PUBLIC_BASE_URL"] == url
    assert probe_hosts(agent) == {url.split("://", 1)[1]}


#: Every variable of docs/auth.md the chart sets, in one mode or another.
LOGIN_ENV = {
    "AUTH_MODE",
    "PUBLIC_BASE_URL",
    "AMICABLE_ALLOWED_ORIGINS",
    "OIDC_ISSUER_URL",
    "OIDC_CLIENT_ID",
    "OIDC_CLIENT_SECRET",
    "OIDC_SCOPES",
    "OIDC_ALLOWED_EMAIL_DOMAINS",
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "SESSION_SECRET",
    "SESSION_MAX_AGE_SECONDS",
    "AMICABLE_ADMIN_EMAILS",
    "AMICABLE_INSECURE_NO_AUTH",
    "AMICABLE_MAX_PROJECTS_PER_USER",
    "AMICABLE_MAX_RUNNING_SANDBOXES_PER_USER",
    "AMICABLE_MAX_CONCURRENT_TURNS_PER_USER",
    "AMICABLE_MAX_RUNNING_SANDBOXES",
}


async def test_login_env_names_are_the_ones_docs_auth_md_defines(render) -> None:
    """A misspelt name would be ignored by the agent and leave login silently unconfigured."""
    contract = (REPO / "docs" / "auth.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)(?:=[^`]*)?`", contract))
    rendered: set[str] = set()
    for flags in (
        [
            *OIDC_FLAGS,
            "--set",
            "agent.auth.adminEmails={a@example.com}",
            "--set",
            "agent.auth.oidc.allowedEmailDomains={example.com}",
        ],
        ["--set", "agent.auth.mode=google"],
        ["--set", "agent.auth.allowInsecureNoAuth=true"],
    ):
        env = container_env(find(await render(*flags), "Deployment", "amicable-agent"))
        rendered |= LOGIN_ENV & set(env)
    # A misspelt name in the chart leaves its correct one unset in every mode.
    assert rendered == LOGIN_ENV, sorted(LOGIN_ENV - rendered)
    assert documented >= LOGIN_ENV, sorted(LOGIN_ENV - documented)


async def test_plain_http_for_local_clusters(render) -> None:
    docs = await render("-f", str(CHART / "values.kind.yaml"))
    template = find(docs, "SandboxTemplate")
    env = container_env(template["spec"]["podTemplate"])
    assert env["AMICABLE_HMR_PROTOCOL"] == "ws"
    assert env["AMICABLE_HMR_CLIENT_PORT"] == "80"
    config_js = find(docs, "ConfigMap", "amicable-editor-config")["data"]["config.js"]
    assert '"VITE_AGENT_WS_URL":"ws://agent.127.0.0.1.nip.io/"' in config_js


async def test_notes_tell_the_user_what_to_check(helm_bin: Path) -> None:
    async def notes(*flags: str) -> str:
        out = await run_tool(
            [helm_bin, "install", "amicable", CHART, "-n", "amicable", "--dry-run=client", *flags]
        )
        return out.split("NOTES:", 1)[1]

    text = await notes(
        *OIDC_FLAGS,
        "--set",
        "editor.enabled=true",
        "--set",
        "editor.ingress.host=ed.example.org",
        "--set",
        "agent.env.previewBaseDomain=example-preview.net",
        "--set",
        "previewRouter.ingress.wildcardHost=*.example-preview.net",
    )
    assert "editor:   https://ed.example.org/" in text
    assert "kubectl -n amicable get secret amicable-agent-secrets" in text
    assert "ANTHROPIC_API_KEY, OIDC_CLIENT_SECRET, SESSION_SECRET required" in text
    assert "https://agent.example.com/auth/callback" in text  # the redirect URI to register
    assert "WARNING" not in text
    insecure = await notes(
        *OIDC_FLAGS,
        "--set",
        "networkPolicy.enabled=false",
        "--set",
        "agent.env.previewScheme=http",
    )
    assert "networkPolicy.enabled=false" in insecure
    assert "previewScheme=http" in insecure
    # Previews beside the agent on one registrable domain could toss its login cookie.
    assert "share the registrable domain example.com" in insecure
    no_login = await notes("--set", "agent.auth.allowInsecureNoAuth=true")
    assert "WARNING: agent.auth.mode=none" in no_login
    assert "anyone who can reach agent.example.com" in no_login
    assert "SESSION_SECRET" not in no_login


async def test_a_postgres_store_drops_the_single_pod_volume(render) -> None:
    sqlite = await render(*OIDC_FLAGS)
    agent = find(sqlite, "Deployment", "amicable-agent")
    assert agent["spec"]["strategy"] == {"type": "Recreate"}
    assert "persistentVolumeClaim" in agent["spec"]["template"]["spec"]["volumes"][0]
    assert [d for d in sqlite if d["kind"] == "PersistentVolumeClaim"]

    docs = await render(*MATRIX["db-url-from-secret-three-replicas"])
    agent = find(docs, "Deployment", "amicable-agent")
    assert agent["spec"]["replicas"] == 3
    assert "strategy" not in agent["spec"]  # rolling updates: replicas share the database
    assert agent["spec"]["template"]["spec"]["volumes"][0] == {"name": "data", "emptyDir": {}}
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    env = container_env(agent)
    ref = env["AMICABLE_DATABASE_URL"]["secretKeyRef"]
    assert ref == {"name": "amicable-agent-secrets", "key": "DATABASE_URL"}


async def test_the_agent_browser_reaches_previews_through_the_router_service(render) -> None:
    docs = await render(*OIDC_FLAGS)
    env = container_env(find(docs, "Deployment", "amicable-agent"))
    router = find(docs, "Service", "amicable-preview-router")
    port = router["spec"]["ports"][0]["port"]
    assert env["AMICABLE_SCREENSHOTS"] == "true"
    assert env["AMICABLE_SCREENSHOT_ROUTER_URL"] == (
        f"http://amicable-preview-router.amicable.svc.cluster.local:{port}"
    )
    assert env["AMICABLE_WEB_TOOLS_ENABLED"] == "false"  # off unless enabled
    agent = find(docs, "Deployment", "amicable-agent")["spec"]["template"]["spec"]["containers"][0]
    assert agent["resources"]["limits"]["memory"] == "2Gi"  # room for Chromium
    off = container_env(find(await render(*OIDC_FLAGS, "--set", "agent.screenshots.enabled=false"),
                             "Deployment", "amicable-agent"))  # fmt: skip
    assert off["AMICABLE_SCREENSHOTS"] == "false"
    assert "AMICABLE_SCREENSHOT_ROUTER_URL" not in off


async def test_models_budgets_and_the_optional_keys(render, validate, tmp_path: Path) -> None:
    """agent.model/models/budgets become the agent's variables; the OpenAI key is never
    required, the Anthropic key only while the default model is an Anthropic one."""
    values = tmp_path / "models.yaml"
    values.write_text(
        "agent:\n"
        "  model: {default: 'openai:gpt-4.1', openaiBaseUrl: 'http://litellm.llm.svc:4000/v1',"
        " small: local}\n"
        "  models:\n"
        "    - {id: local, provider: openai, model: 'qwen2.5-coder:14b', label: Qwen,"
        " baseUrl: 'http://ollama.llm.svc:11434/v1', apiKeyEnv: OLLAMA_KEY,"
        " priceInputPerMtok: 0, contextWindow: 32768, images: false}\n"
        "  budgets: {user: {dailyUsd: 5}, project: {monthlyTokens: 2000000}}\n"
        "  secret: {extraEnv: {OLLAMA_KEY: ollama-key}}\n"
    )
    docs = await render(*OIDC_FLAGS, "-f", str(values))
    await validate(docs)
    env = container_env(find(docs, "Deployment", "amicable-agent"))
    assert env["DEEPAGENTS_MODEL"] == "openai:gpt-4.1"
    assert env["OPENAI_BASE_URL"] == "http://litellm.llm.svc:4000/v1"
    assert env["AMICABLE_SMALL_MODEL"] == "local"
    assert json.loads(env["AMICABLE_MODELS"]) == [{
        "id": "local", "provider": "openai", "model": "qwen2.5-coder:14b", "label": "Qwen",
        "base_url": "http://ollama.llm.svc:11434/v1", "api_key_env": "OLLAMA_KEY",
        "price_input_per_mtok": 0, "context_window": 32768, "images": False,
    }]  # fmt: skip
    assert env["AMICABLE_BUDGET_USER_DAILY_USD"] == "5"
    assert env["AMICABLE_BUDGET_PROJECT_MONTHLY_TOKENS"] == "2000000"
    assert "AMICABLE_BUDGET_USER_MONTHLY_USD" not in env  # 0: no budget, no variable
    assert env["OPENAI_API_KEY"]["secretKeyRef"]["optional"] is True
    assert env["ANTHROPIC_API_KEY"]["secretKeyRef"]["optional"] is True
    assert env["OLLAMA_KEY"]["secretKeyRef"]["key"] == "ollama-key"

    default = container_env(find(await render(*OIDC_FLAGS), "Deployment", "amicable-agent"))
    assert "optional" not in default["ANTHROPIC_API_KEY"]["secretKeyRef"]
    assert default["OPENAI_API_KEY"]["secretKeyRef"]["optional"] is True
    assert not {"DEEPAGENTS_MODEL", "AMICABLE_MODELS", "OPENAI_BASE_URL"} & set(default)


async def test_unknown_model_keys_are_refused(render) -> None:
    with pytest.raises(CommandFailed, match="base_url"):
        await render(*OIDC_FLAGS, "--set", "agent.models[0].id=x", "--set",
                     "agent.models[0].provider=openai", "--set", "agent.models[0].model=m",
                     "--set", "agent.models[0].base_url=http://x")  # fmt: skip


async def test_pause_keeps_a_workspace_volume_and_may_scale_sandboxes(render, validate) -> None:
    docs = await render(*MATRIX["pause-workspace-volume-s3-snapshots"])
    await validate(docs)
    role = find(docs, "Role")
    sandboxes = next(r for r in role["rules"] if r["resources"] == ["sandboxes"])
    assert sorted(sandboxes["verbs"]) == ["get", "list", "patch", "watch"]
    template = find(docs, "SandboxTemplate")
    (claim_template,) = template["spec"]["volumeClaimTemplates"]
    assert claim_template["metadata"]["name"] == "workspace"
    assert claim_template["spec"]["resources"]["requests"]["storage"] == "2Gi"
    pod = template["spec"]["podTemplate"]["spec"]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "workspace", "mountPath": "/app"}]
    (init,) = pod["initContainers"]
    assert "cp -a /app/. /workspace/" in init["command"][-1]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {
        e["name"]: e.get("value") for e in find(docs, "Deployment", "amicable-agent")["spec"][
            "template"]["spec"]["containers"][0]["env"]
    }  # fmt: skip
    assert env["AMICABLE_SANDBOX_IDLE_ACTION"] == "pause"
    assert env["AMICABLE_SANDBOX_PAUSED_TTL_S"] == "604800"
    assert env["AMICABLE_SNAPSHOT_URL"] == "s3://amicable-snapshots/prod"
    assert env["AMICABLE_SNAPSHOT_S3_ENDPOINT_URL"] == "http://minio.storage:9000"
    # the defaults: delete, no volume, snapshots in the database
    plain = await render(*OIDC_FLAGS)
    assert "volumeClaimTemplates" not in find(plain, "SandboxTemplate")["spec"]
    plain_env = {
        e["name"] for e in find(plain, "Deployment", "amicable-agent")["spec"]["template"][
            "spec"]["containers"][0]["env"]
    }  # fmt: skip
    assert "AMICABLE_SNAPSHOT_URL" not in plain_env
    assert "AMICABLE_SANDBOX_IDLE_ACTION" in plain_env


async def test_replicas_drain_and_keep_a_disruption_budget(render, validate) -> None:
    one = await render(*OIDC_FLAGS)
    assert not [d for d in one if d["kind"] == "PodDisruptionBudget"]  # one replica: none
    agent = find(one, "Deployment", "amicable-agent")
    spec = agent["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 60
    env = container_env(agent)
    # The agent drains within the pod's grace period, leaving it 5 s to exit.
    assert env["AMICABLE_SHUTDOWN_GRACE_S"] == "55"
    assert env["AMICABLE_TURN_LEASE_TTL_S"] == "15"
    assert env["AMICABLE_TURN_AUTO_RETRY"] == "0"
    # Readiness is the draining-aware endpoint; liveness stays on /healthz.
    container = spec["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

    flags = [
        *MATRIX["db-url-from-secret-three-replicas"],
        "--set", "agent.terminationGracePeriodSeconds=120",
        "--set", "agent.turnLease.ttlSeconds=8",
        "--set", "agent.turnLease.autoRetry=true",
    ]  # fmt: skip
    three = await render(*flags)
    await validate(three)
    (pdb,) = [d for d in three if d["kind"] == "PodDisruptionBudget"]
    agent = find(three, "Deployment", "amicable-agent")
    assert pdb["metadata"]["name"] == "amicable-agent"
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == agent["spec"]["selector"]["matchLabels"]
    assert agent["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120
    env = container_env(agent)
    assert env["AMICABLE_SHUTDOWN_GRACE_S"] == "115"
    assert env["AMICABLE_TURN_LEASE_TTL_S"] == "8"
    assert env["AMICABLE_TURN_AUTO_RETRY"] == "1"

    off = await render(*flags, "--set", "agent.podDisruptionBudget.enabled=false")
    assert not [d for d in off if d["kind"] == "PodDisruptionBudget"]
    with pytest.raises(CommandFailed, match="terminationGracePeriodSeconds"):
        await render(*OIDC_FLAGS, "--set", "agent.terminationGracePeriodSeconds=3")


async def test_one_sandbox_template_per_enabled_project_template(render, validate) -> None:
    """The chart's templates are the registry's: one SandboxTemplate each (its own image, its
    AMICABLE_TEMPLATE), and the agent offers exactly those and maps each to its template."""
    from amicable_templates import registry

    docs = await render(*OIDC_FLAGS)
    await validate(docs)
    templates = [d for d in docs if d["kind"] == "SandboxTemplate"]
    by_id = {d["metadata"]["labels"]["amicable.dev/template"]: d for d in templates}
    assert list(by_id) == list(registry().ids)
    agent = container_env(find(docs, "Deployment", "amicable-agent"))
    assert agent["AMICABLE_TEMPLATES"] == ",".join(registry().ids)
    assert agent["AMICABLE_DEFAULT_TEMPLATE"] == "vite"
    mapping = json.loads(agent["AMICABLE_TEMPLATE_K8S_TEMPLATE_MAP_JSON"])
    for template_id, doc in by_id.items():
        assert mapping[template_id] == doc["metadata"]["name"]
        container = doc["spec"]["podTemplate"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["AMICABLE_TEMPLATE"] == template_id
        repository = (
            "amicable-sandbox" if template_id == "vite" else f"amicable-sandbox-{template_id}"
        )
        assert container["image"].rsplit(":", 1)[0].endswith(repository)
    assert by_id["vite"]["metadata"]["name"] == agent["K8S_SANDBOX_TEMPLATE_NAME"]

    fewer = await render(*OIDC_FLAGS, "--set-json", _templates_json(disabled={"nextjs15"}))
    names = [d["metadata"]["name"] for d in fewer if d["kind"] == "SandboxTemplate"]
    assert "amicable-sandbox-nextjs15" not in names
    assert "nextjs15" not in container_env(find(fewer, "Deployment", "amicable-agent"))[
        "AMICABLE_TEMPLATES"
    ].split(",")


def _templates_json(disabled: set[str]) -> str:
    from amicable_templates import registry

    entries = [{"id": t, "enabled": t not in disabled} for t in registry().ids]
    return "sandboxTemplates=" + json.dumps(entries)


async def test_the_default_template_must_be_enabled(render) -> None:
    flags = ["--set", "defaultTemplate=hono", "--set-json", _templates_json(disabled={"hono"})]
    with pytest.raises(CommandFailed, match="defaultTemplate hono is not an enabled entry"):
        await render(*OIDC_FLAGS, *flags)
