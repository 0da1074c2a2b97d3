"""``KubernetesBackend``: one agent-sandbox ``SandboxClaim`` per session.

On :meth:`KubernetesBackend.ensure` the backend creates (or reconnects to) the claim named
:func:`~amicable_agent.sandboxes.base.sandbox_id_for` of the session, waits with a watch bounded
by ``K8S_SANDBOX_READY_TIMEOUT`` until the claim is bound to a ``Sandbox`` and that Sandbox
is ``Ready`` (a pre-warmed one from a ``SandboxWarmPool`` binds at once), then probes the
runtime at ``http://<sandbox>.<ns>.svc.cluster.local:8888/healthz``.

Idle TTL: claims carry ``spec.lifecycle.shutdownTime`` = last activity + idle TTL (both
claim API versions have it), renewed by :meth:`~KubernetesBackend.touch`; the
:mod:`~amicable_agent.sandboxes.kubernetes.reaper` deletes idle and orphaned claims in case the
controller does not. With ``idle_action="pause"`` claims carry no shutdown time: the reaper
scales an idle claim's Sandbox to zero instead (its volumes kept), and :meth:`~KubernetesBackend.
ensure` scales it back up. Either way the project's snapshots are the source of truth: a
sandbox that comes back without its files is restored from them.

Runtime token: with ``AMICABLE_RUNTIME_TOKEN_SECRET`` set, every sandbox gets its own token,
``HMAC-SHA256(secret, sandbox id)``, passed to the sandbox in the claim's ``spec.env``
(the SandboxTemplate must set ``envVarsInjectionPolicy: Allowed``). Anyone allowed to read
claims in the sandbox namespace can read it; without a secret the runtime URL is protected
by NetworkPolicy alone (only the agent may reach port 8888). A sandbox taken from a warm
pool was started before its claim existed, so it cannot receive a claim's env: with warm
pools, either run without a token secret (NetworkPolicy only) or accept that binding fails
where the controller refuses env on pre-warmed sandboxes.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import trio

from amicable_agent.errors import SandboxError, SandboxProvisionError
from amicable_agent.sandboxes.base import (
    SandboxHandle,
    SandboxInfo,
    StageCallback,
    ignore_stage,
    sandbox_id_for,
)
from amicable_agent.sandboxes.kubernetes import api as kube
from amicable_agent.sandboxes.kubernetes.config import KubernetesBackendConfig
from amicable_agent.sandboxes.kubernetes.objects import (
    LABEL_VALUE,
    LAST_ACTIVE_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PROJECT_ANNOTATION,
    PROJECT_LABEL,
    SESSION_ANNOTATION,
    TOKEN_ENV,
    claim_info,
    claims,
    derive_runtime_token,
    describe_conditions,
    format_time,
    is_ready,
    paused_at,
    ready_condition,
    sandboxes,
    templates,
    warm_pools,
)
from amicable_agent.sandboxes.kubernetes.pause import pause_claim, resume_claim

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from amicable_agent.sandboxes.kubernetes.reaper import SandboxReaper

logger = logging.getLogger(__name__)

Obj = dict[str, Any]


def api_error(
    exc: kube.KubeApiError, action: str, *, namespace: str, claims_res: kube.Resource
) -> SandboxProvisionError:
    """A Kubernetes API error as a sentence for the user."""
    ns = namespace
    if isinstance(exc, kube.KubeForbidden):
        return SandboxProvisionError(
            f"The agent is not allowed to {action} in namespace {ns!r} (RBAC): {exc.message}"
        )
    if isinstance(exc, kube.KubeNotFound) and not exc.named:
        return SandboxProvisionError(
            "The agent-sandbox CRDs are not installed in this cluster (the API server does "
            f"not serve {claims_res.plural}.{claims_res.group}/{claims_res.version}); "
            "install agent-sandbox with its extensions."
        )
    if isinstance(exc, kube.KubeInvalid):
        return SandboxProvisionError(f"The cluster rejected the sandbox claim: {exc.message}")
    return SandboxProvisionError(f"Kubernetes API error while trying to {action}: {exc}")


async def check_template(
    api: kube.KubeApi, config: KubernetesBackendConfig, template_id: str
) -> None:
    """Fail clearly when the template (or warm pool) a claim would name does not exist."""
    beta = config.claim_api_version == "v1beta1"
    res = (warm_pools if beta else templates)(config.claim_api_version)
    wanted = config.template_for(template_id)
    try:
        found = await api.find(res, config.namespace, wanted)
    except (kube.KubeForbidden, kube.KubeNotFound):
        return  # not allowed to look (RBAC) or type not served: the claim will tell
    if found is None:
        raise SandboxProvisionError(
            f"{res.kind} {wanted!r} (for template {template_id!r}) does not exist in "
            f"namespace {config.namespace!r}; apply the sandbox templates first."
        )


class KubernetesBackend:
    """:class:`~amicable_agent.sandboxes.base.SandboxBackend` on agent-sandbox SandboxClaims.

    Create with :func:`open_kubernetes_backend`, which also runs the reaper.
    """

    def __init__(
        self,
        config: KubernetesBackendConfig,
        api: kube.KubeApi,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._api = api
        self._clock = clock
        self._claims = claims(config.claim_api_version)
        self._sandboxes = sandboxes(config.claim_api_version)
        self._last_touch: dict[str, float] = {}
        #: claim -> bound Sandbox name, last seen by this process (lookup during API outages)
        self._bound: dict[str, str] = {}
        #: the reaper :func:`open_kubernetes_backend` runs (``None`` if disabled)
        self.reaper: SandboxReaper | None = None
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(5.0))

    # ----- helpers --------------------------------------------------------------------

    def _token(self, sandbox_id: str) -> str | None:
        secret = self.config.runtime_token_secret
        return derive_runtime_token(secret, sandbox_id) if secret else None

    def _handle(self, claim_name: str, sandbox_name: str, *, existed: bool) -> SandboxHandle:
        host = self.config.service_host_template.format(
            name=sandbox_name, namespace=self.config.namespace
        )
        return SandboxHandle(
            sandbox_id=claim_name,
            runtime_url=f"http://{host}:{self.config.runtime_port}",
            runtime_token=self._token(claim_name),
            preview_upstream=f"http://{host}:{self.config.preview_port}",
            existed=existed,
        )

    def _lifecycle(self) -> Obj:
        if self.config.idle_ttl_s <= 0 or self.config.idle_action == "pause":
            return {}  # paused by the reaper, never deleted by the controller
        expires = format_time(self._clock() + self.config.idle_ttl_s)
        return {"lifecycle": {"shutdownTime": expires, "shutdownPolicy": "Delete"}}

    def claim_body(self, session_id: str, *, project_id: str, template_id: str) -> Obj:
        """The SandboxClaim this backend creates for a session (pure; see the CRDs)."""
        name = sandbox_id_for(session_id)
        labels = {MANAGED_BY_LABEL: MANAGED_BY}
        if len(project_id) <= 63 and LABEL_VALUE.match(project_id):
            labels[PROJECT_LABEL] = project_id
        ref = "warmPoolRef" if self.config.claim_api_version == "v1beta1" else "sandboxTemplateRef"
        spec: Obj = {ref: {"name": self.config.template_for(template_id)}, **self._lifecycle()}
        token = self._token(name)
        if token is not None:
            spec["env"] = [{"name": TOKEN_ENV, "value": token}]
        return {
            "apiVersion": self._claims.api_version,
            "kind": "SandboxClaim",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {
                    SESSION_ANNOTATION: session_id,
                    PROJECT_ANNOTATION: project_id,
                    LAST_ACTIVE_ANNOTATION: format_time(self._clock()),
                },
            },
            "spec": spec,
        }

    def _api_error(self, exc: kube.KubeApiError, action: str) -> SandboxProvisionError:
        return api_error(exc, action, namespace=self.config.namespace, claims_res=self._claims)

    # ----- SandboxBackend -------------------------------------------------------------

    async def ensure(
        self,
        session_id: str,
        *,
        project_id: str,
        template_id: str,
        on_stage: StageCallback = ignore_stage,
    ) -> SandboxHandle:
        """Create or reconnect to the session's claim and wait until the runtime answers.

        Raises:
            SandboxProvisionError: missing CRDs, RBAC denial, missing template, timeout (with
                the Sandbox's conditions) or an unreachable runtime.

        Cancellation: a cancelled ensure leaves the claim in place; the next ensure
        reconnects to it and the reaper removes it if nobody does.
        """
        name = sandbox_id_for(session_id)
        ns = self.config.namespace
        started = trio.current_time()
        # The session frames provisioning with "queued" and "ready"; we report what is between.
        with trio.move_on_after(self.config.ready_timeout_s) as scope:
            try:
                claim, existed = await self._create_or_reconnect(
                    session_id, project_id=project_id, template_id=template_id, on_stage=on_stage
                )
                sandbox = await self._wait_bound_and_ready(claim)
            except kube.KubeApiError as exc:
                raise self._api_error(exc, "manage sandbox claims") from exc
        if scope.cancelled_caught:
            last = await self._last_seen(name)
            raise SandboxProvisionError(
                f"Timed out after {self.config.ready_timeout_s:g} s waiting for the sandbox to "
                f"become Ready (claim={name}, namespace={ns}, conditions={describe_conditions(last)})"
            )
        ready_s = trio.current_time() - started
        sandbox_name = str(sandbox["metadata"]["name"])
        logger.info(
            "sandbox claim %s ready in %.2f s (sandbox=%s, warm=%s, existed=%s)",
            name, ready_s, sandbox_name, sandbox_name != name, existed,
        )  # fmt: skip
        handle = self._handle(name, sandbox_name, existed=existed)
        self._bound[name] = sandbox_name
        await on_stage("starting_runtime", "Starting the sandbox runtime…")
        # A sandbox that was already Ready when we found it should answer at once; a new
        # (or still starting) one gets the longer grace period.
        probe_timeout = (
            self.config.runtime_probe_existing_timeout_s
            if existed and is_ready(claim)
            else self.config.runtime_probe_timeout_s
        )
        await self._probe_runtime(handle, probe_timeout)
        self._last_touch[name] = self._clock()
        return handle

    async def _last_seen(self, name: str) -> Obj | None:
        """The Sandbox (or, before it exists, the claim) for a timeout message."""
        with trio.move_on_after(self.config.request_timeout_s):
            try:
                claim = await self._api.find(self._claims, self.config.namespace, name)
                bound = ((claim or {}).get("status") or {}).get("sandbox", {}).get("name")
                sandbox = await self._api.find(
                    self._sandboxes, self.config.namespace, bound or name
                )
                return sandbox or claim
            except kube.KubeApiError:
                return None
        return None

    async def _create_or_reconnect(
        self, session_id: str, *, project_id: str, template_id: str, on_stage: StageCallback
    ) -> tuple[Obj, bool]:
        name = sandbox_id_for(session_id)
        ns = self.config.namespace
        while True:
            claim = await self._api.find(self._claims, ns, name)
            if claim is not None and claim["metadata"].get("deletionTimestamp"):
                await on_stage("queued", "Waiting for the previous sandbox to be removed…")
                await self._wait_gone(claim)
                continue
            if claim is not None:
                if paused_at(claim) is not None:
                    await on_stage("creating", "Resuming the paused sandbox…")
                    claim = await resume_claim(self._api, self.config, claim, now=self._clock())
                    logger.info("resumed paused sandbox claim %s", name)
                else:
                    await self._renew(name)
                return claim, True
            await check_template(self._api, self.config, template_id)
            await on_stage("creating", "Creating sandbox…")
            body = self.claim_body(session_id, project_id=project_id, template_id=template_id)
            try:
                return await self._api.create(self._claims, ns, body), False
            except kube.KubeConflict:
                continue  # another replica created it first: reconnect to theirs

    async def pause_if_unchanged(self, claim: Obj) -> None:
        """Pause a claim's Sandbox (scaled to zero, volumes kept) if the claim still has the
        ``resourceVersion`` it was listed with (see :func:`.pause.pause_claim`).

        Raises:
            KubeConflict: the claim changed since it was listed (renewed: kept running).
            KubeNotFound: it is gone.
        """
        name = str(claim["metadata"]["name"])
        await pause_claim(self._api, self.config, claim, now=self._clock())
        self._last_touch.pop(name, None)
        self._bound.pop(name, None)

    async def _wait_gone(self, obj: Obj) -> None:
        await self._wait_for(
            self._claims, str(obj["metadata"]["name"]), lambda o: o is None, initial=obj
        )

    async def _wait_bound_and_ready(self, claim: Obj) -> Obj:
        name = str(claim["metadata"]["name"])

        def bound(o: Obj | None) -> bool:
            if o is None:
                raise SandboxProvisionError(f"The sandbox claim {name} was deleted while starting.")
            cond = ready_condition(o)
            if cond is not None and "NotFound" in str(cond.get("reason")) and not is_ready(o):
                raise SandboxProvisionError(
                    f"The sandbox claim {name} cannot be satisfied: {cond.get('message') or cond.get('reason')}"
                )
            # Bound = the controller named the Sandbox; a Ready claim without that field (older
            # controllers) means the Sandbox has the claim's name, as upstream assumes.
            return bool((o.get("status") or {}).get("sandbox", {}).get("name")) or is_ready(o)

        bound_claim = await self._wait_for(self._claims, name, bound, initial=claim)
        assert bound_claim is not None  # bound() raises on None
        sandbox_name = str((bound_claim.get("status") or {}).get("sandbox", {}).get("name") or name)
        sandbox = await self._wait_for(self._sandboxes, sandbox_name, is_ready)
        assert sandbox is not None
        return sandbox

    async def _wait_for(
        self,
        res: kube.Resource,
        name: str,
        done: Callable[[Obj | None], bool],
        *,
        initial: Obj | None = None,
    ) -> Obj | None:
        """GET, then watch from that resourceVersion until ``done(obj)``; survives lost
        connections (re-watch) and expired resourceVersions (re-GET). Bounded by the caller.
        """
        ns = self.config.namespace
        obj = initial if initial is not None else await self._api.find(res, ns, name)
        backoff = 0.05
        while True:
            if done(obj):
                return obj
            rv = obj["metadata"]["resourceVersion"] if obj is not None else None
            if rv is None:
                _, rv = await self._api.list(res, ns, label_selector="")
            try:
                async with self._api.watch(res, ns, name=name, resource_version=rv) as stream:
                    while (event := await stream.next()) is not None:
                        current = event["object"]
                        obj = None if event["type"] == "DELETED" else current
                        if done(obj):
                            return obj
                        rv = current["metadata"]["resourceVersion"]
                        backoff = 0.05
            except (kube.KubeGone, kube.KubeUnavailable) as exc:
                logger.info("watch on %s/%s restarting: %s", res.plural, name, exc)
            # Stream ended (server timeout, lost connection, 410): re-read and watch again,
            # backing off so a server that keeps cutting watches is not hammered.
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            obj = await self._api.find(res, ns, name)

    async def _probe_runtime(self, handle: SandboxHandle, timeout_s: float) -> None:
        headers = (
            {"authorization": f"Bearer {handle.runtime_token}"} if handle.runtime_token else {}
        )
        last_error = "no answer"
        with trio.move_on_after(timeout_s):
            while True:
                try:
                    response = await self._http.get(
                        f"{handle.runtime_url}/healthz", headers=headers
                    )
                    if response.status_code == 200:
                        return
                    last_error = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                await trio.sleep(self.config.runtime_probe_interval_s)
        raise SandboxProvisionError(
            f"runtime_unreachable: the sandbox {handle.sandbox_id} is Ready but its runtime at "
            f"{handle.runtime_url} did not answer within {timeout_s:g} s ({last_error})"
        )

    async def lookup(self, sandbox_id: str) -> SandboxHandle | None:
        """The handle of an existing, bound claim (no probe, no creation).

        While the API server cannot be asked (outage, RBAC change), a sandbox this process
        has seen bound keeps its last known handle, so live previews and sessions are not
        torn down by an API hiccup.

        Raises:
            SandboxError: the API failed and this process has never seen the sandbox.
        """
        try:
            claim = await self._api.find(self._claims, self.config.namespace, sandbox_id)
        except kube.KubeApiError as exc:
            known = self._bound.get(sandbox_id)
            if known is None:
                raise SandboxError(f"cannot look up sandbox {sandbox_id}: {exc}") from exc
            logger.warning("lookup of %s failed, using its last known Sandbox: %s", sandbox_id, exc)
            return self._handle(sandbox_id, known, existed=True)
        bound = ((claim or {}).get("status") or {}).get("sandbox", {}).get("name")
        if (
            claim is None
            or claim["metadata"].get("deletionTimestamp")
            or not bound
            or paused_at(claim) is not None
        ):
            self._bound.pop(sandbox_id, None)
            return None
        self._bound[sandbox_id] = str(bound)
        return self._handle(sandbox_id, str(bound), existed=True)

    async def _renew(self, sandbox_id: str) -> None:
        patch: Obj = {
            "metadata": {"annotations": {LAST_ACTIVE_ANNOTATION: format_time(self._clock())}}
        }
        if self._lifecycle():
            patch["spec"] = self._lifecycle()
        await self._api.patch(self._claims, self.config.namespace, sandbox_id, patch)
        self._last_touch[sandbox_id] = self._clock()

    async def touch(self, sandbox_id: str) -> None:
        """Renew the claim's ``shutdownTime`` and last-activity annotation; best effort.

        Throttled to once per ``min(60 s, idle TTL / 10)`` per sandbox; a missing claim is
        ignored (the next ensure recreates it). An API failure is logged, never raised
        (callers are the preview resolver, INIT and the session keep-alive, none of which
        should fail because a renewal did): the next touch tries again.
        """
        interval = min(60.0, self.config.idle_ttl_s / 10) if self.config.idle_ttl_s > 0 else 60.0
        last = self._last_touch.get(sandbox_id)
        if last is not None and self._clock() - last < interval:
            return
        try:
            await self._renew(sandbox_id)
        except kube.KubeNotFound:
            self._last_touch.pop(sandbox_id, None)
        except kube.KubeApiError as exc:
            logger.warning("cannot renew sandbox %s (will retry): %s", sandbox_id, exc)

    async def delete(self, sandbox_id: str) -> None:
        """Delete the claim with foreground propagation (its Sandbox goes first); idempotent.

        Raises:
            SandboxError: the API refused the deletion.
        """
        self._last_touch.pop(sandbox_id, None)
        self._bound.pop(sandbox_id, None)
        try:
            await self._api.delete(self._claims, self.config.namespace, sandbox_id)
        except kube.KubeNotFound:
            return
        except kube.KubeApiError as exc:
            raise SandboxError(f"cannot delete sandbox {sandbox_id}: {exc}") from exc

    async def delete_if_unchanged(self, claim: Obj) -> None:
        """Delete a claim only if it still has the ``resourceVersion`` it was listed with.

        Used by the reaper, so that a claim renewed by another replica meanwhile survives.

        Raises:
            KubeConflict: it changed since it was listed.
            KubeNotFound: it is already gone.
        """
        meta = claim["metadata"]
        self._last_touch.pop(str(meta["name"]), None)
        await self._api.delete(
            self._claims,
            self.config.namespace,
            str(meta["name"]),
            resource_version=str(meta["resourceVersion"]),
        )
        self._bound.pop(str(meta["name"]), None)

    async def list_claims(self) -> list[Obj]:
        """Every claim this backend manages (label ``app.kubernetes.io/managed-by``)."""
        items, _ = await self._api.list(
            self._claims, self.config.namespace, label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}"
        )
        return items

    async def list(self) -> list[SandboxInfo]:
        """Every managed sandbox.

        Raises:
            SandboxError: the claims cannot be listed.
        """
        try:
            claims = await self.list_claims()
        except kube.KubeApiError as exc:
            raise SandboxError(f"cannot list sandboxes: {exc}") from exc
        return [claim_info(c) for c in claims]

    async def aclose(self) -> None:
        """Close the HTTP client and the API connection pool."""
        await self._http.aclose()
        self._api.close()


@asynccontextmanager
async def open_kubernetes_backend(
    config: KubernetesBackendConfig,
    *,
    project_exists: Callable[[str], Awaitable[bool]],
    configuration: Any = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[KubernetesBackend]:
    """Open the backend and run its reaper for the duration of the block.

    Args:
        config: the backend configuration.
        project_exists: ``await project_exists(project_id)``; claims of deleted projects are
            reaped.
        configuration: a ``kubernetes.client.Configuration`` (tests); default: in-cluster
            config, else the kubeconfig.
        clock: wall clock (epoch seconds) for TTLs and the Lease.

    Raises:
        SandboxError: no cluster configuration could be loaded.

    Cancellation: leaving the block cancels the reaper and closes the API client; sandboxes
    are left running (they belong to the cluster, not to this process).
    """
    from amicable_agent.sandboxes.kubernetes.reaper import (
        SandboxReaper,  # cycle: reaper uses this module
    )

    if configuration is None:
        try:
            configuration = await trio.to_thread.run_sync(
                kube.load_configuration, config.kubeconfig
            )
        except kube.KubeApiError as exc:
            raise SandboxError(f"cannot configure the Kubernetes client: {exc.message}") from exc
    api = kube.KubeApi(configuration, request_timeout_s=config.request_timeout_s)
    backend = KubernetesBackend(config, api, clock=clock)
    try:
        async with trio.open_nursery() as nursery:
            if config.reap_interval_s > 0:
                backend.reaper = SandboxReaper(
                    backend, api, project_exists=project_exists, clock=clock
                )
                await nursery.start(backend.reaper.run)
            yield backend
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await backend.aclose()


__all__ = [
    "KubernetesBackend",
    "KubernetesBackendConfig",
    "derive_runtime_token",
    "open_kubernetes_backend",
]
