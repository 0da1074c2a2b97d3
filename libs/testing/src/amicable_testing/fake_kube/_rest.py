"""REST routing: a request's method and target -> a resource, a verb and a store operation.

Pure and synchronous: which resource a URL names (404 for a type that is not installed, like
a missing CRD), the RBAC verb and its 403, and the answer of a non-watch request.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import attrs

from ._resources import KINDS, STATUS_SUBRESOURCE, KubeStatusError, ResKey, as_version

if TYPE_CHECKING:
    from ._resources import Obj
    from ._store import ObjectStore

_PATH = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$"
)
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def is_watch(value: str | None) -> bool:
    """Whether a ``watch`` query parameter asks for a watch."""
    return (value or "").lower() in ("1", "true")


def is_watch_request(method: str, target: str) -> bool:
    """Whether a request is a watch (a GET with ``?watch=1``)."""
    return method == "GET" and is_watch(parse_qs(urlsplit(target).query).get("watch", [""])[-1])


@attrs.frozen
class Route:
    """What a request's target names."""

    res: ResKey
    version: str
    ns: str
    name: str | None
    sub: str | None
    query: dict[str, str]


def route(
    method: str, target: str, *, installed: set[ResKey], forbidden: set[tuple[str, str, str]]
) -> Route:
    """Resolve a request target.

    Raises:
        KubeStatusError: 404 for an unknown path or a type not in ``installed``; 403 when
            ``(group, plural, verb)`` is in ``forbidden``.
    """
    parts = urlsplit(target)
    m = _PATH.match(parts.path)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if m is None or (m["group"], m["plural"]) not in installed:
        # What an API server says for a group/resource it does not serve (missing CRD).
        raise KubeStatusError(404, "NotFound", "the server could not find the requested resource")
    res = (m["group"], m["plural"])
    verb = _VERBS[method]
    if method == "GET" and m["name"] is None:
        verb = "watch" if is_watch(query.get("watch")) else "list"
    if (*res, verb) in forbidden:
        raise KubeStatusError(
            403,
            "Forbidden",
            f'{res[1]}.{res[0]} is forbidden: User "system:serviceaccount:amicable:amicable-agent" '
            f'cannot {verb} resource "{res[1]}" in API group "{res[0]}" in the namespace "{m["ns"]}"',
            {"group": res[0], "kind": res[1]},
        )
    return Route(res, m["version"], m["ns"], m["name"], m["sub"], query)


def answer(store: ObjectStore, method: str, to: Route, body: bytes) -> tuple[int, Obj]:
    """Apply a non-watch request to ``store``: ``(status code, JSON body)``.

    Raises:
        KubeStatusError: the API's refusal.
        ValueError: a body that is not JSON (and ``KeyError``/``TypeError`` for one of the
            wrong shape): the caller answers 400.
    """
    res, version, ns, name = to.res, to.version, to.ns, to.name
    data: Obj = json.loads(body) if body else {}
    if name is None:
        if method == "POST":
            return 201, as_version(store.create(res, version, ns, data), res, version)
        if method == "GET":
            items = [as_version(o, res, version) for o in store.select(res, ns, to.query)]
            return 200, {
                "apiVersion": f"{res[0]}/{version}",
                "kind": f"{KINDS[res]}List",
                "metadata": {"resourceVersion": str(store.last_rv)},
                "items": items,
            }
        raise KubeStatusError(405, "MethodNotAllowed", f"{method} is not supported here")
    if to.sub == "status" and res not in STATUS_SUBRESOURCE:
        raise KubeStatusError(404, "NotFound", "the server could not find the requested resource")
    if method == "GET":
        return 200, as_version(store.existing(res, ns, name), res, version)
    if method == "PUT":
        return 200, as_version(store.replace(res, ns, name, data, sub=to.sub), res, version)
    if method == "PATCH":
        return 200, as_version(store.patch(res, ns, name, data, sub=to.sub), res, version)
    if method == "DELETE":
        options = {**data, **{k: v for k, v in to.query.items() if k == "propagationPolicy"}}
        return 200, as_version(store.delete(res, ns, name, options), res, version)
    raise KubeStatusError(405, "MethodNotAllowed", f"{method} is not supported here")
