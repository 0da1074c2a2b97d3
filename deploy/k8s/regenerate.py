"""Regenerate the raw manifests in deploy/k8s/ from the Helm chart.

The raw manifests are the chart rendered with ``values.raw.yaml`` (placeholders ``<REGISTRY>``,
``<TAG>``, example.com hosts, namespace ``default``), minus Helm's own labels, split into the
files the install guide names. ``tests/deploy`` fails when they drift from the chart.

Usage: ``python deploy/k8s/regenerate.py --helm PATH`` (helm 3.8+ or 4).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "helm" / "amicable"
VALUES = HERE / "values.raw.yaml"

#: chart template -> raw manifest file (several templates may share a file).
FILES = {
    "sandbox/sandbox-template.yaml": "sandbox-template.yaml",
    "agent/networkpolicy.yaml": "networkpolicies.yaml",
    "sandbox/networkpolicy.yaml": "networkpolicies.yaml",
    "agent/serviceaccount.yaml": "agent/rbac.yaml",
    "agent/rbac.yaml": "agent/rbac.yaml",
    "agent/pvc.yaml": "agent/deployment.yaml",
    "agent/deployment.yaml": "agent/deployment.yaml",
    "agent/service.yaml": "agent/service.yaml",
    "agent/ingress.yaml": "agent/ingress.yaml",
    "preview-router/deployment.yaml": "preview-router/deployment.yaml",
    "preview-router/service.yaml": "preview-router/service.yaml",
    "preview-router/ingress.yaml": "preview-router/ingress.yaml",
    "preview-router/networkpolicy.yaml": "networkpolicies.yaml",
}
#: Written by hand (secrets must never come out of a render).
HAND_WRITTEN = {"internal-secret.yaml"}

HEADER = (
    "# Generated from deploy/helm/amicable by deploy/k8s/regenerate.py (values.raw.yaml).\n"
    "# Replace the placeholders before applying: <REGISTRY>/<TAG> (your images), example.com\n"
    "# hosts (your AGENT_HOST / PREVIEW_BASE_DOMAIN), namespace default (your SANDBOX_NAMESPACE),\n"
    "# OIDC_ISSUER_URL / OIDC_CLIENT_ID (your login provider, docs/kubernetes.md 4.1).\n"
)
_HELM_LABELS = re.compile(
    r"^\s*(helm\.sh/chart|app\.kubernetes\.io/managed-by|app\.kubernetes\.io/version): .*\n",
    re.M,
)


def split_render(text: str) -> dict[str, list[str]]:
    """Group the rendered documents by raw manifest file, Helm labels removed."""
    out: dict[str, list[str]] = {}
    for doc in re.split(r"^---\n", text, flags=re.M):
        match = re.match(r"# Source: amicable/templates/(\S+)\n", doc)
        if not match:
            continue
        template = match.group(1)
        if template in HAND_WRITTEN:
            continue
        body = _HELM_LABELS.sub("", doc[match.end() :])
        out.setdefault(FILES[template], []).append(body.rstrip() + "\n")
    return out


async def regenerate(helm: str) -> None:
    proc = await trio.run_process(
        [helm, "template", "amicable", str(CHART), "-n", "default", "-f", str(VALUES)],
        capture_stdout=True,
    )
    for name, docs in split_render(proc.stdout.decode()).items():
        (HERE / name).write_text(HEADER + "---\n" + "---\n".join(docs))
        print(f"wrote deploy/k8s/{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helm", default="helm", help="helm binary (default: helm on PATH)")
    args = parser.parse_args()
    trio.run(regenerate, args.helm)


if __name__ == "__main__":
    main()
