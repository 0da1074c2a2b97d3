"""Pure helpers for the agent-sandbox objects the Kubernetes backend reads and writes.

Names of labels and annotations, resource types per API version, timestamps, ``Ready``
conditions and the per-sandbox runtime token. No I/O.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from typing import Any, Literal

from amicable_agent.sandboxes.base import SandboxInfo
from amicable_agent.sandboxes.kubernetes.api import Resource

Obj = dict[str, Any]
ClaimApiVersion = Literal["v1alpha1", "v1beta1"]
IdleAction = Literal["delete", "pause"]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "amicable"
PROJECT_LABEL = "amicable.dev/project-id"
SESSION_ANNOTATION = "amicable.dev/session-id"
PROJECT_ANNOTATION = "amicable.dev/project-id"
LAST_ACTIVE_ANNOTATION = "amicable.dev/last-active"
#: When the reaper paused the claim's Sandbox (``AMICABLE_SANDBOX_IDLE_ACTION=pause``).
PAUSED_ANNOTATION = "amicable.dev/paused-at"
TOKEN_ENV = "AMICABLE_RUNTIME_TOKEN"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def claims(version: ClaimApiVersion) -> Resource:
    """SandboxClaim of an API version."""
    return Resource("extensions.agents.x-k8s.io", version, "sandboxclaims", "SandboxClaim")


def sandboxes(version: ClaimApiVersion) -> Resource:
    """Sandbox of an API version."""
    return Resource("agents.x-k8s.io", version, "sandboxes", "Sandbox")


def templates(version: ClaimApiVersion) -> Resource:
    """SandboxTemplate of an API version."""
    return Resource("extensions.agents.x-k8s.io", version, "sandboxtemplates", "SandboxTemplate")


def warm_pools(version: ClaimApiVersion) -> Resource:
    """SandboxWarmPool of an API version."""
    return Resource("extensions.agents.x-k8s.io", version, "sandboxwarmpools", "SandboxWarmPool")


def format_time(epoch_s: float) -> str:
    """RFC 3339 UTC with seconds, as Kubernetes ``date-time`` fields use."""
    return datetime.datetime.fromtimestamp(epoch_s, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp, ``None`` if absent or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def ready_condition(obj: Obj | None) -> Obj | None:
    """The ``Ready`` entry of ``status.conditions``, if any."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return cond
    return None


def is_ready(obj: Obj | None) -> bool:
    """``status.conditions`` has ``Ready`` with status ``True``."""
    cond = ready_condition(obj)
    return cond is not None and str(cond.get("status")).lower() == "true"


def describe_conditions(obj: Obj | None) -> str:
    """``[Ready=False (Reason): message, …]`` for error messages."""
    parts = []
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict):
            text = f"{cond.get('type')}={cond.get('status')} ({cond.get('reason', '')})"
            if cond.get("message"):
                text += f": {cond['message']}"
            parts.append(text)
    return "[" + ", ".join(parts) + "]"


def derive_runtime_token(secret: str, sandbox_id: str) -> str:
    """The per-sandbox runtime token: hex HMAC-SHA256 of the sandbox id under the secret."""
    return hmac.new(secret.encode(), sandbox_id.encode(), hashlib.sha256).hexdigest()


def claim_info(claim: Obj) -> SandboxInfo:
    """A :class:`SandboxInfo` from a claim object."""
    meta = claim.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return SandboxInfo(
        sandbox_id=str(meta.get("name")),
        session_id=annotations.get(SESSION_ANNOTATION),
        project_id=annotations.get(PROJECT_ANNOTATION)
        or (meta.get("labels") or {}).get(PROJECT_LABEL),
        last_active_s=parse_time(annotations.get(LAST_ACTIVE_ANNOTATION)),
        ready=is_ready(claim),
    )


def pause_patch(version: ClaimApiVersion, *, paused: bool) -> Obj:
    """The merge patch that pauses (or resumes) a Sandbox: ``spec.replicas`` 0/1 in
    ``v1alpha1``, ``spec.operatingMode`` ``Suspended``/``Running`` in ``v1beta1``. Its
    volumes (``volumeClaimTemplates``) are kept either way."""
    if version == "v1beta1":
        return {"spec": {"operatingMode": "Suspended" if paused else "Running"}}
    return {"spec": {"replicas": 0 if paused else 1}}


def is_paused(sandbox: Obj | None) -> bool:
    """The Sandbox is scaled to zero (either API version's way)."""
    spec = (sandbox or {}).get("spec") or {}
    return spec.get("replicas") == 0 or spec.get("operatingMode") == "Suspended"


def paused_at(claim: Obj) -> float | None:
    """When the reaper paused the claim's Sandbox, or None when it is not paused."""
    annotations = (claim.get("metadata") or {}).get("annotations") or {}
    return parse_time(annotations.get(PAUSED_ANNOTATION))
