"""The agent-sandbox controller the fake plays: claims get Sandboxes, warm pools stay full.

A new ``SandboxClaim`` gets a ``Sandbox`` (owned by the claim) after ``bind_delay_s``, marked
``Ready`` after ``ready_delay_s`` (``None`` = never); a claim whose template has a warm pool
binds to one of its pre-warmed sandboxes at once, and the pool is replenished. A Sandbox
scaled to zero (``spec.replicas: 0``, or ``spec.operatingMode: Suspended``) turns not Ready
(it and its claim) at once, and Ready again ``ready_delay_s`` after it is scaled back up.
"""

from __future__ import annotations

import copy
import itertools
from typing import TYPE_CHECKING

import trio

from ._resources import CLAIMS, SANDBOXES, TEMPLATES, WARM_POOLS, KubeStatusError, now

if TYPE_CHECKING:
    from ._resources import Obj, WatchEvent
    from ._store import ObjectStore

#: Label the fake puts on unbound warm-pool sandboxes.
WARM_POOL_LABEL = "agents.x-k8s.io/warm-pool"


def _condition(status: str, reason: str, message: str) -> Obj:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now(),
        "observedGeneration": 1,
    }


class SandboxController:
    """Reacts to claims created in ``store``, as the agent-sandbox controller does.

    Args:
        store: the API server's objects; the controller listens to its changes.
        nursery: where provisioning runs; without one, claims are never provisioned.

    Attributes:
        bind_delay_s: delay before a claim gets its Sandbox.
        ready_delay_s: further delay before the Sandbox is Ready (``None`` = never).
        report_sandbox_name: fill ``status.sandbox.name`` of claims (False: older controllers).
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        bind_delay_s: float,
        ready_delay_s: float | None,
        nursery: trio.Nursery | None,
    ) -> None:
        self.bind_delay_s = bind_delay_s
        self.ready_delay_s = ready_delay_s
        self.report_sandbox_name = True
        self._store = store
        self._nursery = nursery
        self._pool_seq = itertools.count(1)
        self._paused: set[tuple[str, str]] = set()
        store.listeners.append(self._on_change)

    def _on_change(self, event: WatchEvent) -> None:
        if self._nursery is None:
            return
        meta = event.obj["metadata"]
        if event.type == "ADDED" and event.res == CLAIMS:
            self._nursery.start_soon(self._provision, meta["namespace"], meta["name"], meta["uid"])
        elif event.type == "MODIFIED" and event.res == SANDBOXES:
            key = (meta["namespace"], meta["name"])
            spec = event.obj.get("spec") or {}
            paused = spec.get("replicas") == 0 or spec.get("operatingMode") == "Suspended"
            if paused and key not in self._paused:
                self._paused.add(key)
                self._nursery.start_soon(self._scale, *key, True)
            elif not paused and key in self._paused:
                self._paused.discard(key)
                self._nursery.start_soon(self._scale, *key, False)

    async def _scale(self, ns: str, name: str, paused: bool) -> None:
        """A Sandbox scaled down is not Ready (nor its claim); scaled up, it is Ready again
        after ``ready_delay_s`` (a new pod starting)."""
        if paused:
            await trio.lowlevel.checkpoint()
            down = _condition("False", "SandboxSuspended", "Sandbox is scaled to zero")
            if (*SANDBOXES, ns, name) in self._store.objects:
                self._store.set_status(SANDBOXES, ns, name, {"conditions": [down], "replicas": 0})
            for (g, p, cns, cname), claim in list(self._store.objects.items()):
                if (
                    (g, p) == CLAIMS
                    and cns == ns
                    and claim.get("status", {}).get("sandbox", {}).get("name") == name
                ):
                    status = {**claim.get("status", {}), "conditions": [down]}
                    self._set_claim_status(ns, cname, claim["metadata"]["uid"], status)
            return
        if self.ready_delay_s is None:
            return
        await trio.sleep(self.ready_delay_s)
        if (ns, name) in self._paused:
            return  # paused again meanwhile
        for (g, p, cns, cname), claim in list(self._store.objects.items()):
            if (
                (g, p) == CLAIMS
                and cns == ns
                and claim.get("status", {}).get("sandbox", {}).get("name") == name
            ):
                self.mark_ready(ns, cname)
                return
        self._mark_sandbox_ready(ns, name)

    def add_warm_pool(self, namespace: str, name: str, template: str, replicas: int) -> None:
        """A SandboxWarmPool with ``replicas`` pre-warmed, already Ready sandboxes."""
        self._store.create(
            WARM_POOLS,
            "v1alpha1",
            namespace,
            {
                "apiVersion": "extensions.agents.x-k8s.io/v1alpha1",
                "kind": "SandboxWarmPool",
                "metadata": {"name": name},
                "spec": {"replicas": replicas, "sandboxTemplateRef": {"name": template}},
            },
        )
        for _ in range(replicas):
            self._warm_one(namespace, name)

    def mark_ready(self, namespace: str, claim_name: str) -> None:
        """Mark the claim's Sandbox (and the claim) Ready now."""
        claim = self._store.objects.get((*CLAIMS, namespace, claim_name))
        if claim is None:
            return
        sandbox = claim.get("status", {}).get("sandbox", {}).get("name", claim_name)
        self._mark_sandbox_ready(namespace, sandbox)
        ready = _condition("True", "SandboxReady", "Sandbox is ready")
        self._set_claim_status(
            namespace,
            claim_name,
            claim["metadata"]["uid"],
            {"conditions": [ready], "sandbox": {"name": sandbox}},
        )

    def _claim_template(self, ns: str, claim: Obj) -> tuple[str | None, str | None]:
        objects = self._store.objects
        spec = claim.get("spec", {})
        if claim["apiVersion"].endswith("/v1beta1"):
            pool = spec["warmPoolRef"]["name"]
            pool_obj = objects.get((*WARM_POOLS, ns, pool))
            if pool_obj is None:
                return None, f"SandboxWarmPool {pool!r} not found"
            tmpl = str(pool_obj["spec"]["sandboxTemplateRef"]["name"])
        else:
            tmpl = str(spec["sandboxTemplateRef"]["name"])
        if (*TEMPLATES, ns, tmpl) not in objects:
            return None, f"SandboxTemplate {tmpl!r} not found"
        return tmpl, None

    def _set_claim_status(self, ns: str, name: str, uid: str, status: Obj) -> bool:
        claim = self._store.objects.get((*CLAIMS, ns, name))
        if claim is None or claim["metadata"]["uid"] != uid:
            return False
        new = copy.deepcopy(claim)
        new["status"] = status
        if not self.report_sandbox_name:
            new["status"].pop("sandbox", None)
        self._store.record(CLAIMS, (*CLAIMS, ns, name), new, "MODIFIED")
        return True

    def _warm_one(self, ns: str, pool: str) -> None:
        name = f"{pool}-{next(self._pool_seq):05x}"
        self._store.create(
            SANDBOXES,
            "v1alpha1",
            ns,
            {
                "metadata": {"name": name, "labels": {WARM_POOL_LABEL: pool}},
                "spec": {"podTemplate": {}},
            },
        )
        self._mark_sandbox_ready(ns, name)

    def _mark_sandbox_ready(self, ns: str, name: str) -> None:
        key = (*SANDBOXES, ns, name)
        if key in self._store.objects:
            new = copy.deepcopy(self._store.objects[key])
            new["status"] = {
                "conditions": [_condition("True", "DependenciesReady", "Pod is Ready")],
                "serviceFQDN": f"{name}.{ns}.svc.cluster.local",
                "service": name,
            }
            self._store.record(SANDBOXES, key, new, "MODIFIED")

    def _adopt_warm(self, ns: str, template: str) -> str | None:
        objects = self._store.objects
        for (g, p, sns, sname), obj in sorted(objects.items()):
            pool = obj["metadata"].get("labels", {}).get(WARM_POOL_LABEL)
            if (g, p) != SANDBOXES or sns != ns or pool is None:
                continue
            pool_obj = objects.get((*WARM_POOLS, ns, pool))
            if pool_obj and pool_obj["spec"]["sandboxTemplateRef"]["name"] == template:
                return sname
        return None

    def _bind_warm(self, ns: str, name: str, uid: str, warm: str, owner: Obj) -> None:
        sandbox = copy.deepcopy(self._store.objects[(*SANDBOXES, ns, warm)])
        pool = sandbox["metadata"]["labels"].pop(WARM_POOL_LABEL)
        sandbox["metadata"]["ownerReferences"] = [owner]
        self._store.record(SANDBOXES, (*SANDBOXES, ns, warm), sandbox, "MODIFIED")
        ready = _condition("True", "SandboxReady", "bound to a warm sandbox")
        self._set_claim_status(ns, name, uid, {"conditions": [ready], "sandbox": {"name": warm}})
        self._warm_one(ns, pool)  # replenish

    async def _provision(self, ns: str, name: str, uid: str) -> None:
        objects = self._store.objects
        claim = objects.get((*CLAIMS, ns, name))
        if claim is None:
            return
        template, problem = self._claim_template(ns, claim)
        if template is None:
            cond = _condition("False", "TemplateNotFound", str(problem))
            self._set_claim_status(ns, name, uid, {"conditions": [cond]})
            return
        owner = {"apiVersion": claim["apiVersion"], "kind": "SandboxClaim", "name": name, "uid": uid,
                 "controller": True, "blockOwnerDeletion": True}  # fmt: skip
        warm = self._adopt_warm(ns, template)
        if warm is not None:
            self._bind_warm(ns, name, uid, warm, owner)
            return
        await trio.sleep(self.bind_delay_s)
        if (*CLAIMS, ns, name) not in objects:
            return
        pod_template = copy.deepcopy(
            objects[(*TEMPLATES, ns, template)]["spec"].get("podTemplate", {})
        )
        try:
            self._store.create(
                SANDBOXES,
                "v1alpha1",
                ns,
                {
                    "metadata": {"name": name, "ownerReferences": [owner]},
                    "spec": {"podTemplate": pod_template},
                },
            )
        except KubeStatusError:
            return
        self._store.set_status(
            SANDBOXES,
            ns,
            name,
            {"conditions": [_condition("False", "DependenciesNotReady", "Pod is not ready")]},
        )
        pending = _condition("False", "SandboxNotReady", "Sandbox is not ready")
        if not self._set_claim_status(
            ns, name, uid, {"conditions": [pending], "sandbox": {"name": name}}
        ):
            return
        if self.ready_delay_s is None:
            return
        await trio.sleep(self.ready_delay_s)
        self.mark_ready(ns, name)
