"""A fake Kubernetes API server for tests: real HTTP on loopback, real REST semantics.

It serves the handful of resources the :class:`~amicable_agent.sandboxes.kubernetes.backend.
KubernetesBackend` uses (agent-sandbox ``SandboxClaim``/``Sandbox``/``SandboxTemplate``/
``SandboxWarmPool`` and ``coordination.k8s.io`` ``Lease``) at their real URL paths, so the
real ``kubernetes`` client talks to it unchanged (``Configuration(host=fake.url)``):

* create ``201`` (``409 AlreadyExists``, ``422 Invalid`` with causes), get/list with
  ``labelSelector``/``fieldSelector``, replace with optimistic concurrency (``409 Conflict``),
  JSON merge patch, delete with ``propagationPolicy`` and ``preconditions``; errors carry
  ``Status`` bodies. A resource type that is not "installed" answers ``404`` like an API
  server without the CRD; a denied one answers ``403 Forbidden`` like RBAC.
* ``?watch=1&resourceVersion=…`` streams newline-delimited JSON events over chunked HTTP; a
  too-old resourceVersion (see :meth:`FakeKube.compact`) yields an ``ERROR`` event with a
  ``410 Expired`` Status, as the real server does. :meth:`FakeKube.drop_watches` cuts every
  open watch connection mid-stream.
* ``/status`` subresources: the main resource ignores ``status`` on writes.
* It plays the agent-sandbox controller: a new claim gets a ``Sandbox`` (owned by the
  claim) after ``bind_delay_s``, marked ``Ready`` after ``ready_delay_s`` (``None`` = never);
  claims bind to pre-warmed sandboxes of a :meth:`FakeKube.add_warm_pool` pool at once.

Usage::

    async with open_fake_kube(ready_delay_s=0.05) as fake:
        configuration = kubernetes.client.Configuration(host=fake.url)
"""

from __future__ import annotations

import copy
import datetime
import functools
import http
import itertools
import json
import re
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import attrs
import h11
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

Obj = dict[str, Any]
ResKey = tuple[str, str]  # (group, plural)

SANDBOXES: ResKey = ("agents.x-k8s.io", "sandboxes")
CLAIMS: ResKey = ("extensions.agents.x-k8s.io", "sandboxclaims")
TEMPLATES: ResKey = ("extensions.agents.x-k8s.io", "sandboxtemplates")
WARM_POOLS: ResKey = ("extensions.agents.x-k8s.io", "sandboxwarmpools")
LEASES: ResKey = ("coordination.k8s.io", "leases")

_KINDS: dict[ResKey, str] = {
    SANDBOXES: "Sandbox",
    CLAIMS: "SandboxClaim",
    TEMPLATES: "SandboxTemplate",
    WARM_POOLS: "SandboxWarmPool",
    LEASES: "Lease",
}
_STATUS_SUBRESOURCE = {SANDBOXES, CLAIMS, WARM_POOLS}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PATH = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$"
)
#: Label the fake puts on unbound warm-pool sandboxes.
WARM_POOL_LABEL = "agents.x-k8s.io/warm-pool"


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


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(status: str, reason: str, message: str) -> Obj:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": _now(),
        "observedGeneration": 1,
    }


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


def _is_watch(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


def _match_fields(selector: str, obj: Obj) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        k, _, v = term.partition("=")
        path = k.strip().split(".")
        cur: Any = obj
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        if str(cur) != v.strip():
            return False
    return True


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = _merge_patch(result.get(k), v)
    return result


def _validate(res: ResKey, version: str, obj: Obj) -> None:
    """The CRD-schema checks that matter for the backend (required refs, enums, formats)."""
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
        kind = _KINDS[res]
        raise KubeStatusError(
            422,
            "Invalid",
            f'{kind}.{res[0]} "{name}" is invalid: '
            + "; ".join(f"{c['field']}: {c['message']}" for c in causes),
            {"name": name, "group": res[0], "kind": kind, "causes": causes},
        )


class FakeKube:
    """The fake API server's state and controller; create with :func:`open_fake_kube`.

    Attributes:
        url: ``http://127.0.0.1:<port>`` once serving.
        bind_delay_s: controller delay before a claim gets its Sandbox.
        ready_delay_s: further delay before the Sandbox is Ready (``None`` = never).
        installed: resource types the server knows (others answer 404 like a missing CRD).
        forbidden: ``(group, plural, verb)`` triples answered with 403 (verb as in RBAC).
        requests: ``(method, path)`` of every request, for assertions.
    """

    def __init__(self, *, bind_delay_s: float = 0.0, ready_delay_s: float | None = 0.0) -> None:
        self.url = ""
        self.bind_delay_s = bind_delay_s
        self.ready_delay_s = ready_delay_s
        self.installed: set[ResKey] = set(_KINDS)
        self.forbidden: set[tuple[str, str, str]] = set()
        self.requests: list[tuple[str, str]] = []
        self._objects: dict[tuple[str, str, str, str], Obj] = {}
        self._history: list[WatchEvent] = []
        self._floor = 0  # watches from a resourceVersion below this get 410
        self._rv = itertools.count(1000)
        self._last_rv = 999
        self._changed = trio.Event()
        self._activity = trio.Event()
        self._watch_scopes: set[trio.CancelScope] = set()
        self._pool_seq = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        #: answer this many upcoming watches with a ``410 Expired`` ERROR event
        self.expire_watches = 0
        #: the controller fills ``status.sandbox.name`` of claims (False: older controllers)
        self.report_sandbox_name = True

    # ----- direct state access for tests (no HTTP) -----------------------------------

    def get(self, res: ResKey, namespace: str, name: str) -> Obj | None:
        """A deep copy of the stored object, or ``None``."""
        obj = self._objects.get((*res, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self, res: ResKey, namespace: str) -> list[Obj]:
        """Deep copies of every stored object of a type in a namespace."""
        return [
            copy.deepcopy(o)
            for (g, p, ns, _), o in sorted(self._objects.items())
            if (g, p) == res and ns == namespace
        ]

    def put(self, res: ResKey, version: str, namespace: str, body: Obj) -> Obj:
        """Create an object directly, as ``kubectl apply`` would (no RBAC checks)."""
        return self._create(res, version, namespace, copy.deepcopy(body))

    def update_status(self, res: ResKey, namespace: str, name: str, status: Obj) -> None:
        """Replace an object's status (e.g. to play a failing controller)."""
        key = (*res, namespace, name)
        obj = copy.deepcopy(self._objects[key])
        obj["status"] = status
        self._store(res, key, obj, "MODIFIED")

    def add_warm_pool(self, namespace: str, name: str, template: str, replicas: int) -> None:
        """A SandboxWarmPool with ``replicas`` pre-warmed, already Ready sandboxes."""
        self.put(
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

    def compact(self) -> None:
        """Forget the change history, so watches from an older resourceVersion get 410."""
        self._history.clear()
        self._floor = self._last_rv + 1

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream (no terminating chunk)."""
        for scope in list(self._watch_scopes):
            scope.cancel()

    def _poke(self) -> None:
        self._activity.set()
        self._activity = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait (event-driven, no polling) until ``predicate()`` holds; it is re-checked
        after every request, change and watch open/close. Bound it with ``trio.fail_after``.
        """
        while not predicate():
            activity = self._activity
            await activity.wait()

    @property
    def watch_requests(self) -> int:
        """How many watch requests the server has received."""
        return sum(
            1
            for m, t in self.requests
            if m == "GET" and _is_watch(parse_qs(urlsplit(t).query).get("watch", [""])[-1])
        )

    @property
    def open_watches(self) -> int:
        """How many watch streams are currently open."""
        return len(self._watch_scopes)

    # ----- store ----------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._last_rv = next(self._rv)
        return str(self._last_rv)

    def _store(self, res: ResKey, key: tuple[str, str, str, str], obj: Obj, kind: str) -> Obj:
        obj["metadata"]["resourceVersion"] = self._next_rv()
        if kind == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = obj
        self._history.append(WatchEvent(self._last_rv, kind, res, copy.deepcopy(obj)))
        self._changed.set()
        self._changed = trio.Event()
        self._poke()
        return copy.deepcopy(obj)

    def _create(self, res: ResKey, version: str, ns: str, body: Obj) -> Obj:
        meta = body.setdefault("metadata", {})
        name = meta.get("name", "")
        _validate(res, version, body)
        key = (*res, ns, name)
        if key in self._objects:
            raise KubeStatusError(
                409,
                "AlreadyExists",
                f'{res[1]}.{res[0]} "{name}" already exists',
                {"name": name, "group": res[0], "kind": res[1]},
            )
        body["apiVersion"] = f"{res[0]}/{version}"
        body["kind"] = _KINDS[res]
        meta.update(
            namespace=ns,
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            generation=1,
        )
        meta.pop("deletionTimestamp", None)
        if res in _STATUS_SUBRESOURCE:
            body.pop("status", None)
        created = self._store(res, key, body, "ADDED")
        if res == CLAIMS and self._nursery is not None:
            self._nursery.start_soon(self._provision, ns, name, meta["uid"])
        return created

    def _existing(self, res: ResKey, ns: str, name: str) -> Obj:
        obj = self._objects.get((*res, ns, name))
        if obj is None:
            raise KubeStatusError(
                404,
                "NotFound",
                f'{res[1]}.{res[0]} "{name}" not found',
                {"name": name, "group": res[0], "kind": res[1]},
            )
        return obj

    def _replace(self, res: ResKey, ns: str, name: str, body: Obj, *, sub: str | None) -> Obj:
        current = self._existing(res, ns, name)
        want_rv = body.get("metadata", {}).get("resourceVersion")
        if want_rv and want_rv != current["metadata"]["resourceVersion"]:
            raise KubeStatusError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {res[1]}.{res[0]} "{name}": the object '
                "has been modified; please apply your changes to the latest version and try again",
                {"name": name, "group": res[0], "kind": res[1]},
            )
        new = copy.deepcopy(current)
        if sub == "status":
            new["status"] = body.get("status", {})
        else:
            _validate(
                res, current["apiVersion"].split("/")[1], {**body, "metadata": current["metadata"]}
            )
            for k, v in body.items():
                if k not in ("metadata", "status", "apiVersion", "kind"):
                    new[k] = copy.deepcopy(v)
            for mk in ("labels", "annotations", "ownerReferences", "finalizers"):
                if mk in body.get("metadata", {}):
                    new["metadata"][mk] = copy.deepcopy(body["metadata"][mk])
            if res not in _STATUS_SUBRESOURCE and "status" in body:
                new["status"] = body["status"]
            if new.get("spec") != current.get("spec"):
                new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        return self._store(res, (*res, ns, name), new, "MODIFIED")

    def _patch(self, res: ResKey, ns: str, name: str, patch: Obj, *, sub: str | None) -> Obj:
        current = self._existing(res, ns, name)
        # The merged object keeps the current resourceVersion unless the patch names one,
        # which then acts as an optimistic-concurrency precondition (as on a real server).
        merged = _merge_patch(current, patch)
        return self._replace(res, ns, name, merged, sub=sub)

    def _dependents(self, uid: str) -> list[tuple[ResKey, tuple[str, str, str, str]]]:
        return [
            ((k[0], k[1]), k)
            for k, o in self._objects.items()
            if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences", []))
        ]

    def _delete(self, res: ResKey, ns: str, name: str, options: Obj) -> Obj:
        current = self._existing(res, ns, name)
        pre = options.get("preconditions") or {}
        meta = current["metadata"]
        for field, have in (("uid", meta["uid"]), ("resourceVersion", meta["resourceVersion"])):
            if pre.get(field) and pre[field] != have:
                raise KubeStatusError(
                    409,
                    "Conflict",
                    f"Precondition failed: {field} in precondition: {pre[field]}, {field} in "
                    f"object meta: {have}",
                    {"name": name, "group": res[0], "kind": res[1]},
                )
        policy = options.get("propagationPolicy") or "Background"
        key = (*res, ns, name)
        if meta.get("deletionTimestamp"):
            return copy.deepcopy(current)
        dependents = self._dependents(meta["uid"])
        if policy == "Foreground" and dependents:
            pending = copy.deepcopy(current)
            pending["metadata"]["deletionTimestamp"] = _now()
            pending["metadata"]["finalizers"] = ["foregroundDeletion"]
            result = self._store(res, key, pending, "MODIFIED")
            assert self._nursery is not None
            self._nursery.start_soon(self._finish_foreground, res, key, meta["uid"])
            return result
        gone = self._store(res, key, copy.deepcopy(current), "DELETED")
        if policy != "Orphan":
            for dres, dkey in dependents:
                if dkey in self._objects:
                    self._store(dres, dkey, copy.deepcopy(self._objects[dkey]), "DELETED")
        return gone

    async def _finish_foreground(
        self, res: ResKey, key: tuple[str, str, str, str], uid: str
    ) -> None:
        await trio.lowlevel.checkpoint()  # the garbage collector runs after the API answered
        for dres, dkey in self._dependents(uid):
            if dkey in self._objects:
                self._store(dres, dkey, copy.deepcopy(self._objects[dkey]), "DELETED")
        if key in self._objects and self._objects[key]["metadata"]["uid"] == uid:
            self._store(res, key, copy.deepcopy(self._objects[key]), "DELETED")

    # ----- the controller ----------------------------------------------------------------

    def _claim_template(self, ns: str, claim: Obj) -> tuple[str | None, str | None]:
        spec = claim.get("spec", {})
        if claim["apiVersion"].endswith("/v1beta1"):
            pool = spec["warmPoolRef"]["name"]
            pool_obj = self._objects.get((*WARM_POOLS, ns, pool))
            if pool_obj is None:
                return None, f"SandboxWarmPool {pool!r} not found"
            tmpl = str(pool_obj["spec"]["sandboxTemplateRef"]["name"])
        else:
            tmpl = str(spec["sandboxTemplateRef"]["name"])
        if (*TEMPLATES, ns, tmpl) not in self._objects:
            return None, f"SandboxTemplate {tmpl!r} not found"
        return tmpl, None

    def _set_claim_status(self, ns: str, name: str, uid: str, status: Obj) -> bool:
        claim = self._objects.get((*CLAIMS, ns, name))
        if claim is None or claim["metadata"]["uid"] != uid:
            return False
        new = copy.deepcopy(claim)
        new["status"] = status
        if not self.report_sandbox_name:
            new["status"].pop("sandbox", None)
        self._store(CLAIMS, (*CLAIMS, ns, name), new, "MODIFIED")
        return True

    def _warm_one(self, ns: str, pool: str) -> None:
        name = f"{pool}-{next(self._pool_seq):05x}"
        self._create(
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
        if key in self._objects:
            new = copy.deepcopy(self._objects[key])
            new["status"] = {
                "conditions": [_condition("True", "DependenciesReady", "Pod is Ready")],
                "serviceFQDN": f"{name}.{ns}.svc.cluster.local",
                "service": name,
            }
            self._store(SANDBOXES, key, new, "MODIFIED")

    def _adopt_warm(self, ns: str, template: str) -> str | None:
        for (g, p, sns, sname), obj in sorted(self._objects.items()):
            pool = obj["metadata"].get("labels", {}).get(WARM_POOL_LABEL)
            if (g, p) != SANDBOXES or sns != ns or pool is None:
                continue
            pool_obj = self._objects.get((*WARM_POOLS, ns, pool))
            if pool_obj and pool_obj["spec"]["sandboxTemplateRef"]["name"] == template:
                return sname
        return None

    async def _provision(self, ns: str, name: str, uid: str) -> None:
        claim = self._objects.get((*CLAIMS, ns, name))
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
            sandbox = copy.deepcopy(self._objects[(*SANDBOXES, ns, warm)])
            pool = sandbox["metadata"]["labels"].pop(WARM_POOL_LABEL)
            sandbox["metadata"]["ownerReferences"] = [owner]
            self._store(SANDBOXES, (*SANDBOXES, ns, warm), sandbox, "MODIFIED")
            ready = _condition("True", "SandboxReady", "bound to a warm sandbox")
            self._set_claim_status(
                ns, name, uid, {"conditions": [ready], "sandbox": {"name": warm}}
            )
            self._warm_one(ns, pool)  # replenish
            return
        await trio.sleep(self.bind_delay_s)
        if (*CLAIMS, ns, name) not in self._objects:
            return
        pod_template = copy.deepcopy(
            self._objects[(*TEMPLATES, ns, template)]["spec"].get("podTemplate", {})
        )
        try:
            self._create(
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
        self.update_status(
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

    def mark_ready(self, namespace: str, claim_name: str) -> None:
        """Mark the claim's Sandbox (and the claim) Ready now, as the controller would."""
        claim = self._objects.get((*CLAIMS, namespace, claim_name))
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

    # ----- HTTP ------------------------------------------------------------------------

    def _route(
        self, method: str, target: str
    ) -> tuple[ResKey, str, str, str | None, str | None, dict[str, str]]:
        parts = urlsplit(target)
        m = _PATH.match(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if m is None or (m["group"], m["plural"]) not in self.installed:
            # What an API server says for a group/resource it does not serve (missing CRD).
            raise KubeStatusError(
                404, "NotFound", "the server could not find the requested resource"
            )
        res = (m["group"], m["plural"])
        verb = {
            "GET": "get",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }[method]
        if method == "GET" and m["name"] is None:
            verb = "watch" if _is_watch(query.get("watch")) else "list"
        if (*res, verb) in self.forbidden:
            raise KubeStatusError(
                403,
                "Forbidden",
                f'{res[1]}.{res[0]} is forbidden: User "system:serviceaccount:amicable:amicable-agent" '
                f'cannot {verb} resource "{res[1]}" in API group "{res[0]}" in the namespace "{m["ns"]}"',
                {"group": res[0], "kind": res[1]},
            )
        return res, m["version"], m["ns"], m["name"], m["sub"], query

    def _select(self, res: ResKey, ns: str, query: dict[str, str]) -> list[Obj]:
        return [
            o
            for (g, p, ons, _), o in sorted(self._objects.items())
            if (g, p) == res
            and ons == ns
            and match_labels(query.get("labelSelector", ""), o["metadata"].get("labels", {}))
            and _match_fields(query.get("fieldSelector", ""), o)
        ]

    @staticmethod
    def _as_version(obj: Obj, res: ResKey, version: str) -> Obj:
        out = copy.deepcopy(obj)
        out["apiVersion"] = f"{res[0]}/{version}"
        return out

    def _handle(self, method: str, target: str, body: bytes) -> tuple[int, Obj]:
        res, version, ns, name, sub, query = self._route(method, target)
        data: Obj = json.loads(body) if body else {}
        if name is None:
            if method == "POST":
                return 201, self._as_version(self._create(res, version, ns, data), res, version)
            if method == "GET":
                items = [self._as_version(o, res, version) for o in self._select(res, ns, query)]
                return 200, {
                    "apiVersion": f"{res[0]}/{version}",
                    "kind": f"{_KINDS[res]}List",
                    "metadata": {"resourceVersion": str(self._last_rv)},
                    "items": items,
                }
            raise KubeStatusError(405, "MethodNotAllowed", f"{method} is not supported here")
        if sub == "status" and res not in _STATUS_SUBRESOURCE:
            raise KubeStatusError(
                404, "NotFound", "the server could not find the requested resource"
            )
        if method == "GET":
            return 200, self._as_version(self._existing(res, ns, name), res, version)
        if method == "PUT":
            return 200, self._as_version(self._replace(res, ns, name, data, sub=sub), res, version)
        if method == "PATCH":
            return 200, self._as_version(self._patch(res, ns, name, data, sub=sub), res, version)
        if method == "DELETE":
            options = {**data, **{k: v for k, v in query.items() if k == "propagationPolicy"}}
            return 200, self._as_version(self._delete(res, ns, name, options), res, version)
        raise KubeStatusError(405, "MethodNotAllowed", f"{method} is not supported here")

    async def _serve_conn(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, stream)
                if request is None:
                    return
                method = request.method.decode()
                target = request.target.decode()
                self.requests.append((method, target))
                self._poke()
                query = parse_qs(urlsplit(target).query)
                if method == "GET" and _is_watch(query.get("watch", [""])[-1]):
                    try:
                        res, version, ns, _, _, q = self._route(method, target)
                    except KubeStatusError as exc:
                        await self._send_json(conn, stream, exc.code, exc.body())
                    else:
                        await self._serve_watch(conn, stream, res, version, ns, q)
                        return  # a watch stream ends its connection
                else:
                    try:
                        code, answer = self._handle(method, target, body)
                    except KubeStatusError as exc:
                        code, answer = exc.code, exc.body()
                    except (ValueError, KeyError, TypeError) as exc:
                        code, answer = 400, KubeStatusError(400, "BadRequest", str(exc)).body()
                    await self._send_json(conn, stream, code, answer)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    @staticmethod
    async def _read_request(
        conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            else:  # ConnectionClosed or PAUSED at a closed peer
                return None, b""

    @staticmethod
    async def _send_json(
        conn: h11.Connection, stream: trio.SocketStream, code: int, body: Obj
    ) -> None:
        data = json.dumps(body).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
        reason = http.HTTPStatus(code).phrase.encode()
        response = h11.Response(status_code=code, headers=headers, reason=reason)
        await stream.send_all(conn.send(response) or b"")
        await stream.send_all(conn.send(h11.Data(data=data)) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")

    async def _serve_watch(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        res: ResKey,
        version: str,
        ns: str,
        query: dict[str, str],
    ) -> None:
        headers = [("content-type", "application/json"), ("transfer-encoding", "chunked")]
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)) or b"")

        async def send(event_type: str, obj: Obj) -> None:
            line = json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
            await stream.send_all(conn.send(h11.Data(data=line)) or b"")

        async def detect_client_close(scope: trio.CancelScope) -> None:
            # A real API server ends a watch when its client goes away; so does this one.
            try:
                while await stream.receive_some(4096):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            scope.cancel()

        with trio.CancelScope() as scope:
            self._watch_scopes.add(scope)
            self._poke()
            try:
                async with trio.open_nursery() as watchers:
                    watchers.start_soon(detect_client_close, scope)
                    await self._stream_events(conn, stream, res, version, ns, query, send)
                    watchers.cancel_scope.cancel()
            finally:
                self._watch_scopes.discard(scope)
                self._poke()
        # cancelled by drop_watches(): the caller closes the socket without a last chunk

    async def _stream_events(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        res: ResKey,
        version: str,
        ns: str,
        query: dict[str, str],
        send: Callable[[str, Obj], Awaitable[None]],
    ) -> None:
        rv_text = query.get("resourceVersion", "")
        timeout = float(query.get("timeoutSeconds", "0") or 0) or float("inf")
        with trio.move_on_after(timeout):
            too_old = rv_text and rv_text != "0" and int(rv_text) < self._floor - 1
            if too_old or self.expire_watches > 0:
                self.expire_watches = max(0, self.expire_watches - 1)
                expired = KubeStatusError(
                    410, "Expired", f"too old resource version: {rv_text} ({self._floor})"
                )
                await send("ERROR", expired.body())
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                return
            if not rv_text or rv_text == "0":
                for obj in self._select(res, ns, query):
                    await send("ADDED", self._as_version(obj, res, version))
                cursor = self._last_rv
            else:
                cursor = int(rv_text)
            while True:
                changed = self._changed
                for ev in [e for e in self._history if e.rv > cursor]:
                    cursor = ev.rv
                    labels = ev.obj["metadata"].get("labels", {})
                    if (
                        ev.res == res
                        and ev.obj["metadata"]["namespace"] == ns
                        and match_labels(query.get("labelSelector", ""), labels)
                        and _match_fields(query.get("fieldSelector", ""), ev.obj)
                    ):
                        await send(ev.type, self._as_version(ev.obj, res, version))
                await changed.wait()
        # timeoutSeconds elapsed: end the stream cleanly, as the server does
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


@asynccontextmanager
async def open_fake_kube(
    *, bind_delay_s: float = 0.0, ready_delay_s: float | None = 0.0
) -> AsyncIterator[FakeKube]:
    """Serve a :class:`FakeKube` on a free loopback port for the duration of the block.

    Cancellation: leaving the block closes the listener, every connection (watches
    included) and the controller's pending work.
    """
    fake = FakeKube(bind_delay_s=bind_delay_s, ready_delay_s=ready_delay_s)
    async with trio.open_nursery() as nursery:
        fake._nursery = nursery
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, fake._serve_conn, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        fake.url = f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()
