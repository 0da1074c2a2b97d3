"""The fake API server's storage: objects, resourceVersions, the change history and watches.

:class:`ObjectStore` gives every write the semantics the real server has (``AlreadyExists``,
optimistic concurrency on ``resourceVersion``, ``/status`` subresources, delete
preconditions and propagation with owner references) and replays its history to watches.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from typing import TYPE_CHECKING, NoReturn

import trio

from ._resources import (
    KINDS,
    STATUS_SUBRESOURCE,
    KubeStatusError,
    WatchEvent,
    as_version,
    merge_patch,
    now,
    selected,
    validate,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._resources import Key, Obj, ResKey


class ObjectStore:
    """Objects by ``(group, plural, namespace, name)`` and every change made to them.

    Args:
        nursery: where the garbage collector finishes foreground deletions (the API answers
            first, as the real one does); without one, a foreground delete of an object
            with dependents fails.

    Attributes:
        objects: the stored objects (the store's own copies: never hand them out).
        history: every change since the last :meth:`compact`, oldest first.
        floor: watches from a resourceVersion below ``floor - 1`` are too old (410).
        last_rv: the newest resourceVersion handed out.
        listeners: called with each change as it is recorded (no checkpoint in between).
    """

    def __init__(self, *, nursery: trio.Nursery | None = None) -> None:
        self.objects: dict[Key, Obj] = {}
        self.history: list[WatchEvent] = []
        self.floor = 0
        self.last_rv = 999
        self.listeners: list[Callable[[WatchEvent], None]] = []
        self._rv = itertools.count(1000)
        self._changed = trio.Event()
        self._nursery = nursery

    def get(self, res: ResKey, namespace: str, name: str) -> Obj | None:
        """A deep copy of the stored object, or ``None``."""
        obj = self.objects.get((*res, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def copies(self, res: ResKey, namespace: str) -> list[Obj]:
        """Deep copies of every stored object of a type in a namespace."""
        return [
            copy.deepcopy(o)
            for (g, p, ns, _), o in sorted(self.objects.items())
            if (g, p) == res and ns == namespace
        ]

    def select(self, res: ResKey, ns: str, query: dict[str, str]) -> list[Obj]:
        """The stored objects (not copies) a list with ``query``'s selectors returns."""
        return [
            o
            for (g, p, ons, _), o in sorted(self.objects.items())
            if (g, p) == res and ons == ns and selected(query, o)
        ]

    def compact(self) -> None:
        """Forget the change history, so watches from an older resourceVersion get 410."""
        self.history.clear()
        self.floor = self.last_rv + 1

    # ----- writes -------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self.last_rv = next(self._rv)
        return str(self.last_rv)

    def record(self, res: ResKey, key: Key, obj: Obj, kind: str) -> Obj:
        """Store (or drop, for ``DELETED``) ``obj`` under a new resourceVersion; a copy."""
        obj["metadata"]["resourceVersion"] = self._next_rv()
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        event = WatchEvent(self.last_rv, kind, res, copy.deepcopy(obj))
        self.history.append(event)
        self._changed.set()
        self._changed = trio.Event()
        for listener in self.listeners:
            listener(event)
        return copy.deepcopy(obj)

    def set_status(self, res: ResKey, namespace: str, name: str, status: Obj) -> None:
        """Replace an object's status (``KeyError`` when there is no such object)."""
        key = (*res, namespace, name)
        obj = copy.deepcopy(self.objects[key])
        obj["status"] = status
        self.record(res, key, obj, "MODIFIED")

    def create(self, res: ResKey, version: str, ns: str, body: Obj) -> Obj:
        """POST: store ``body`` (taken over, not copied) as a new object."""
        meta = body.setdefault("metadata", {})
        name = meta.get("name", "")
        validate(res, version, body)
        key = (*res, ns, name)
        if key in self.objects:
            raise KubeStatusError(
                409,
                "AlreadyExists",
                f'{res[1]}.{res[0]} "{name}" already exists',
                {"name": name, "group": res[0], "kind": res[1]},
            )
        body["apiVersion"] = f"{res[0]}/{version}"
        body["kind"] = KINDS[res]
        meta.update(
            namespace=ns,
            uid=str(uuid.uuid4()),
            creationTimestamp=now(),
            generation=1,
        )
        meta.pop("deletionTimestamp", None)
        if res in STATUS_SUBRESOURCE:
            body.pop("status", None)
        return self.record(res, key, body, "ADDED")

    def existing(self, res: ResKey, ns: str, name: str) -> Obj:
        """The stored object (not a copy), or ``404 NotFound``."""
        obj = self.objects.get((*res, ns, name))
        if obj is None:
            raise KubeStatusError(
                404,
                "NotFound",
                f'{res[1]}.{res[0]} "{name}" not found',
                {"name": name, "group": res[0], "kind": res[1]},
            )
        return obj

    def replace(self, res: ResKey, ns: str, name: str, body: Obj, *, sub: str | None) -> Obj:
        """PUT (of the object or its ``/status``), with optimistic concurrency."""
        current = self.existing(res, ns, name)
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
            validate(
                res, current["apiVersion"].split("/")[1], {**body, "metadata": current["metadata"]}
            )
            for k, v in body.items():
                if k not in ("metadata", "status", "apiVersion", "kind"):
                    new[k] = copy.deepcopy(v)
            for mk in ("labels", "annotations", "ownerReferences", "finalizers"):
                if mk in body.get("metadata", {}):
                    new["metadata"][mk] = copy.deepcopy(body["metadata"][mk])
            if res not in STATUS_SUBRESOURCE and "status" in body:
                new["status"] = body["status"]
            if new.get("spec") != current.get("spec"):
                new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        return self.record(res, (*res, ns, name), new, "MODIFIED")

    def patch(self, res: ResKey, ns: str, name: str, patch: Obj, *, sub: str | None) -> Obj:
        """PATCH with a JSON merge patch."""
        current = self.existing(res, ns, name)
        # The merged object keeps the current resourceVersion unless the patch names one,
        # which then acts as an optimistic-concurrency precondition (as on a real server).
        merged = merge_patch(current, patch)
        return self.replace(res, ns, name, merged, sub=sub)

    def _dependents(self, uid: str) -> list[tuple[ResKey, Key]]:
        return [
            ((k[0], k[1]), k)
            for k, o in self.objects.items()
            if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences", []))
        ]

    def delete(self, res: ResKey, ns: str, name: str, options: Obj) -> Obj:
        """DELETE with ``preconditions`` and ``propagationPolicy`` (default Background)."""
        current = self.existing(res, ns, name)
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
            pending["metadata"]["deletionTimestamp"] = now()
            pending["metadata"]["finalizers"] = ["foregroundDeletion"]
            result = self.record(res, key, pending, "MODIFIED")
            assert self._nursery is not None
            self._nursery.start_soon(self._finish_foreground, res, key, meta["uid"])
            return result
        gone = self.record(res, key, copy.deepcopy(current), "DELETED")
        if policy != "Orphan":
            for dres, dkey in dependents:
                if dkey in self.objects:
                    self.record(dres, dkey, copy.deepcopy(self.objects[dkey]), "DELETED")
        return gone

    async def _finish_foreground(self, res: ResKey, key: Key, uid: str) -> None:
        await trio.lowlevel.checkpoint()  # the garbage collector runs after the API answered
        for dres, dkey in self._dependents(uid):
            if dkey in self.objects:
                self.record(dres, dkey, copy.deepcopy(self.objects[dkey]), "DELETED")
        if key in self.objects and self.objects[key]["metadata"]["uid"] == uid:
            self.record(res, key, copy.deepcopy(self.objects[key]), "DELETED")

    # ----- watches ------------------------------------------------------------------------

    def too_old(self, rv_text: str) -> bool:
        """Whether a watch from ``rv_text`` starts before the kept history (410 Expired)."""
        return bool(rv_text and rv_text != "0" and int(rv_text) < self.floor - 1)

    async def watch(
        self,
        res: ResKey,
        version: str,
        ns: str,
        query: dict[str, str],
        send: Callable[[str, Obj], Awaitable[None]],
    ) -> NoReturn:
        """``send(type, object)`` every matching change after ``query``'s resourceVersion.

        Without one (or ``"0"``), every matching object is sent as ``ADDED`` first. Runs until
        cancelled.
        """
        rv_text = query.get("resourceVersion", "")
        if not rv_text or rv_text == "0":
            for obj in self.select(res, ns, query):
                await send("ADDED", as_version(obj, res, version))
            cursor = self.last_rv
        else:
            cursor = int(rv_text)
        while True:
            changed = self._changed
            for ev in [e for e in self.history if e.rv > cursor]:
                cursor = ev.rv
                if (
                    ev.res == res
                    and ev.obj["metadata"]["namespace"] == ns
                    and selected(query, ev.obj)
                ):
                    await send(ev.type, as_version(ev.obj, res, version))
            await changed.wait()
