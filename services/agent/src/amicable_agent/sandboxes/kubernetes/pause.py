"""Pausing and resuming a claim's Sandbox (``AMICABLE_SANDBOX_IDLE_ACTION=pause``).

agent-sandbox keeps a Sandbox scaled to zero, and its ``volumeClaimTemplates`` volumes, until
it is scaled back up (``spec.replicas`` in ``v1alpha1``, ``spec.operatingMode`` in
``v1beta1``: :func:`~.objects.pause_patch`). The claim carries the ``amicable.dev/paused-at``
mark meanwhile, so every replica knows it is paused without reading its Sandbox.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any

from amicable_agent.sandboxes.kubernetes import api as kube
from amicable_agent.sandboxes.kubernetes.objects import (
    LAST_ACTIVE_ANNOTATION,
    PAUSED_ANNOTATION,
    claims,
    format_time,
    pause_patch,
    sandboxes,
)

if TYPE_CHECKING:
    from amicable_agent.sandboxes.kubernetes.config import KubernetesBackendConfig

Obj = dict[str, Any]


def bound_name(claim: Obj) -> str:
    """The Sandbox a claim is bound to (its own name where the controller does not say)."""
    status = claim.get("status") or {}
    return str(status.get("sandbox", {}).get("name") or claim["metadata"]["name"])


async def pause_claim(
    api: kube.KubeApi, config: KubernetesBackendConfig, claim: Obj, *, now: float
) -> None:
    """Mark the claim paused, only if it still has the ``resourceVersion`` it was listed with
    (the reaper's compare-and-swap: a claim renewed meanwhile keeps running), then scale its
    Sandbox to zero. A missing Sandbox is fine: the mark alone makes the next ensure resume.

    Raises:
        KubeConflict: the claim changed since it was listed.
        KubeNotFound: it is gone.
    """
    meta = claim["metadata"]
    mark: Obj = {
        "metadata": {
            "resourceVersion": str(meta["resourceVersion"]),
            "annotations": {PAUSED_ANNOTATION: format_time(now)},
        }
    }
    version = config.claim_api_version
    await api.patch(claims(version), config.namespace, str(meta["name"]), mark)
    with suppress(kube.KubeNotFound):
        await api.patch(
            sandboxes(version),
            config.namespace,
            bound_name(claim),
            pause_patch(version, paused=True),
        )


async def resume_claim(
    api: kube.KubeApi, config: KubernetesBackendConfig, claim: Obj, *, now: float
) -> Obj:
    """Scale the claim's Sandbox back up (a missing one is made anew by the controller) and
    drop the claim's pause mark; returns the claim."""
    version = config.claim_api_version
    with suppress(kube.KubeNotFound):
        await api.patch(
            sandboxes(version),
            config.namespace,
            bound_name(claim),
            pause_patch(version, paused=False),
        )
    patch: Obj = {
        "metadata": {
            "annotations": {PAUSED_ANNOTATION: None, LAST_ACTIVE_ANNOTATION: format_time(now)}
        }
    }
    resumed: Obj = await api.patch(
        claims(version), config.namespace, str(claim["metadata"]["name"]), patch
    )
    return resumed
