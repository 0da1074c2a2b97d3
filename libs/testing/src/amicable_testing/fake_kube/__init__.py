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

Modules, each importing only those below it: ``_server`` (:class:`FakeKube`: HTTP
connections, watch streams, the test API), ``_controller`` (the agent-sandbox controller),
``_rest`` (routing a request to a store operation), ``_store`` (objects, resourceVersions,
history, watches), ``_resources`` (resource types, ``Status`` errors, validation, selectors).
"""

from ._controller import WARM_POOL_LABEL
from ._resources import (
    CLAIMS,
    LEASES,
    SANDBOXES,
    TEMPLATES,
    WARM_POOLS,
    KubeStatusError,
    Obj,
    ResKey,
    WatchEvent,
    match_labels,
)
from ._server import FakeKube, open_fake_kube

__all__ = [
    "CLAIMS",
    "LEASES",
    "SANDBOXES",
    "TEMPLATES",
    "WARM_POOLS",
    "WARM_POOL_LABEL",
    "FakeKube",
    "KubeStatusError",
    "Obj",
    "ResKey",
    "WatchEvent",
    "match_labels",
    "open_fake_kube",
]
