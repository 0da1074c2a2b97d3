"""What the fake API server serves and the rules it enforces, as pure functions.

The resource types (agent-sandbox CRDs and ``Lease``), the ``Status`` error, the CRD-schema
validation, label/field selectors and JSON merge patch: no state, no I/O.
"""

from __future__ import annotations

import copy
import datetime
import re
from typing import Any

import attrs

Obj = dict[str, Any]
ResKey = tuple[str, str]  # (group, plural)
Key = tuple[str, str, str, str]  # (group, plural, namespace, name)

SANDBOXES: ResKey = ("agents.x-k8s.io", "sandboxes")
CLAIMS: ResKey = ("extensions.agents.x-k8s.io", "sandboxclaims")
TEMPLATES: ResKey = ("extensions.agents.x-k8s.io", "sandboxtemplates")
WARM_POOLS: ResKey = ("extensions.agents.x-k8s.io", "sandboxwarmpools")
LEASES: ResKey = ("coordination.k8s.io", "leases")

KINDS: dict[ResKey, str] = {
    SANDBOXES: "Sandbox",
    CLAIMS: "SandboxClaim",
    TEMPLATES: "SandboxTemplate",
    WARM_POOLS: "SandboxWarmPool",
    LEASES: "Lease",
}
#: Types whose ``status`` is written only through the ``/status`` subresource.
STATUS_SUBRESOURCE = {SANDBOXES, CLAIMS, WARM_POOLS}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class KubeStatusError(Exception):
    """An API answer other than success: becomes a ``Status`` body with ``code``."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def body(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


@attrs.frozen
class WatchEvent:
    """One change in the fake's history (what a watch replays)."""

    rv: int
    type: str
    res: ResKey
    obj: Obj


def now() -> str:
    """The current time as Kubernetes writes timestamps."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_version(obj: Obj, res: ResKey, version: str) -> Obj:
    """A deep copy of ``obj`` as served at API ``version``."""
    out = copy.deepcopy(obj)
    out["apiVersion"] = f"{res[0]}/{version}"
    return out


def match_labels(selector: str, labels: dict[str, str]) -> bool:
    """Evaluate a label selector of ``k=v``, ``k==v``, ``k!=v``, ``k`` and ``!k`` terms."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def match_fields(selector: str, obj: Obj) -> bool:
    """Evaluate a field selector of ``dotted.path=value`` terms."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        k, _, v = term.partition("=")
        path = k.strip().split(".")
        cur: Any = obj
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        if str(cur) != v.strip():
            return False
    return True


def selected(query: dict[str, str], obj: Obj) -> bool:
    """Whether ``obj`` matches the query's ``labelSelector`` and ``fieldSelector``."""
    return match_labels(
        query.get("labelSelector", ""), obj["metadata"].get("labels", {})
    ) and match_fields(query.get("fieldSelector", ""), obj)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def validate(res: ResKey, version: str, obj: Obj) -> None:
    """The CRD-schema checks that matter for the backend (required refs, enums, formats).

    Raises:
        KubeStatusError: ``422 Invalid`` with one cause per failed check.
    """
    causes: list[Obj] = []
    name = obj.get("metadata", {}).get("name", "")
    if not _DNS_LABEL.match(name) and res != LEASES:
        causes.append({"field": "metadata.name", "message": f"invalid name {name!r}"})
    spec = obj.get("spec")
    if res == CLAIMS:
        spec = spec if isinstance(spec, dict) else {}
        ref = "warmPoolRef" if version == "v1beta1" else "sandboxTemplateRef"
        if not isinstance(spec.get(ref), dict) or not spec[ref].get("name"):
            causes.append({"field": f"spec.{ref}.name", "message": "Required value"})
        lifecycle = spec.get("lifecycle") or {}
        when = lifecycle.get("shutdownTime")
        if when is not None:
            try:
                datetime.datetime.fromisoformat(str(when).replace("Z", "+00:00"))
            except ValueError:
                causes.append(
                    {"field": "spec.lifecycle.shutdownTime", "message": "not a date-time"}
                )
        policy = lifecycle.get("shutdownPolicy")
        if policy is not None and policy not in ("Delete", "DeleteForeground", "Retain"):
            causes.append(
                {"field": "spec.lifecycle.shutdownPolicy", "message": "Unsupported value"}
            )
        for i, item in enumerate(spec.get("env") or []):
            if not isinstance(item, dict) or "name" not in item or "value" not in item:
                causes.append({"field": f"spec.env[{i}]", "message": "name and value required"})
    if causes:
        kind = KINDS[res]
        raise KubeStatusError(
            422,
            "Invalid",
            f'{kind}.{res[0]} "{name}" is invalid: '
            + "; ".join(f"{c['field']}: {c['message']}" for c in causes),
            {"name": name, "group": res[0], "kind": kind, "causes": causes},
        )
