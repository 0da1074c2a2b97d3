"""The sandbox reaper: deletes (or pauses) managed SandboxClaims that are idle or orphaned.

A claim is reaped when its project no longer exists, or when its last activity (the
``amicable.dev/last-active`` annotation that :meth:`KubernetesBackend.touch` renews) is
older than the idle TTL. The controller should already have honoured
``spec.lifecycle.shutdownTime``; the reaper is the safety net for clusters where it did not,
and the only thing that notices deleted projects. A reaped project comes back on its next
INIT (a new claim with the same deterministic name), restored from its snapshots.

With ``AMICABLE_SANDBOX_IDLE_ACTION=pause`` an idle claim is not deleted: its Sandbox is
scaled to zero (volumes kept) and the claim annotated ``amicable.dev/paused-at``; the next
INIT resumes it. A claim paused longer than ``paused_ttl_s`` is deleted after all.

Several agent replicas run a reaper each. They do not fight:

* only the holder of the ``coordination.k8s.io`` Lease (``amicable-sandbox-reaper``) reaps;
  a holder that stops renewing loses it after ``leaseDurationSeconds``;
* every deletion is conditional on the claim's observed ``resourceVersion``, so a claim that
  another replica touched (renewed) in between is kept (409), and a claim already deleted
  (404) is simply gone.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any, Protocol

import trio

from amicable_agent.errors import SandboxError
from amicable_agent.sandboxes.kubernetes import api as kube
from amicable_agent.sandboxes.kubernetes.objects import (
    LAST_ACTIVE_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    IdleAction,
    claim_info,
    parse_time,
    paused_at,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from amicable_agent.sandboxes.kubernetes.config import KubernetesBackendConfig

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
LEASES = kube.Resource("coordination.k8s.io", "v1", "leases", "Lease")


def format_micro_time(epoch_s: float) -> str:
    """A Kubernetes ``MicroTime`` (RFC 3339 with microseconds, UTC)."""
    moment = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def reap_reason(
    claim: Obj, *, now: float, idle_ttl_s: float, project_exists: bool | None
) -> str | None:
    """Why a claim should be deleted now (``None`` = keep it), idle claims being deleted.
    Pure; see :func:`reap_verdict`."""
    verdict = reap_verdict(claim, now=now, idle_ttl_s=idle_ttl_s, project_exists=project_exists)
    return verdict[1] if verdict is not None else None


def reap_verdict(
    claim: Obj,
    *,
    now: float,
    idle_ttl_s: float,
    project_exists: bool | None,
    idle_action: IdleAction = "delete",
    paused_ttl_s: float = 0.0,
) -> tuple[IdleAction, str] | None:
    """What to do with a claim now, and why (``None`` = keep it as it is). Pure.

    Args:
        claim: the SandboxClaim object.
        now: wall-clock epoch seconds.
        idle_ttl_s: idle lifetime (0 = never idle out).
        project_exists: whether the claim's project exists (``None`` = unknown: keep).
        idle_action: ``delete`` or ``pause`` an idle claim.
        paused_ttl_s: delete a claim paused longer than this (0 = never).
    """
    meta = claim.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None  # already going
    if project_exists is False:
        return "delete", "project deleted"
    paused = paused_at(claim)
    if paused is not None:
        if paused_ttl_s > 0 and now - paused > paused_ttl_s:
            return "delete", f"paused for {now - paused:.0f} s (TTL {paused_ttl_s:g} s)"
        return None
    reason = _idle_reason(meta, now=now, idle_ttl_s=idle_ttl_s)
    return (idle_action, reason) if reason is not None else None


def _idle_reason(meta: Obj, *, now: float, idle_ttl_s: float) -> str | None:
    if idle_ttl_s > 0:
        annotations = meta.get("annotations") or {}
        last = parse_time(annotations.get(LAST_ACTIVE_ANNOTATION))
        if last is None:
            last = parse_time(meta.get("creationTimestamp"))
        if last is not None and now - last > idle_ttl_s:
            return f"idle for {now - last:.0f} s (TTL {idle_ttl_s:g} s)"
    return None


class ReaperLease:
    """Leader election over one ``coordination.k8s.io/v1`` Lease.

    Args:
        api: the Kubernetes adapter.
        namespace / name: where the Lease lives.
        identity: this replica's ``holderIdentity``.
        duration_s: how long a holder keeps the Lease without renewing it.
        clock: wall clock (epoch seconds).
    """

    def __init__(
        self,
        api: kube.KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._duration = max(1, int(duration_s))
        self._clock = clock

    async def try_acquire(self) -> bool:
        """Take or renew the Lease; ``False`` if another live replica holds it.

        Raises:
            KubeApiError: the API failed (other than a lost race, which is ``False``).
        """
        now = self._clock()
        lease = await self._api.find(LEASES, self._namespace, self._name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self._name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self._duration,
                    "acquireTime": format_micro_time(now),
                    "renewTime": format_micro_time(now),
                    "leaseTransitions": 0,
                },
            }
            try:
                await self._api.create(LEASES, self._namespace, body)
            except kube.KubeConflict:
                return False
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = parse_time(spec.get("renewTime")) or 0.0
        duration = float(spec.get("leaseDurationSeconds") or self._duration)
        if holder and holder != self.identity and renewed + duration > now:
            return False
        new_spec = dict(spec)
        new_spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=self._duration,
            renewTime=format_micro_time(now),
        )
        if holder != self.identity:
            new_spec["acquireTime"] = format_micro_time(now)
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = new_spec
        try:
            # lease.metadata.resourceVersion makes this a compare-and-swap.
            await self._api.replace(LEASES, self._namespace, self._name, lease)
        except kube.KubeConflict:
            return False
        return True


class ReapedBackend(Protocol):
    """What the reaper needs of :class:`~.backend.KubernetesBackend`."""

    @property
    def config(self) -> KubernetesBackendConfig:
        """The backend's configuration (TTL, interval, lease name, replica id)."""
        ...

    async def list_claims(self) -> list[Obj]:
        """Every claim the backend manages."""
        ...

    async def delete_if_unchanged(self, claim: Obj) -> None:
        """Delete a claim only if it still has the ``resourceVersion`` it was listed with."""
        ...

    async def pause_if_unchanged(self, claim: Obj) -> None:
        """Pause a claim's Sandbox only if the claim is unchanged since it was listed."""
        ...


class SandboxReaper:
    """Periodically deletes idle and orphaned claims while holding the reaper Lease.

    Args:
        backend: the backend whose claims to reap (its config gives TTL and interval).
        api: the Kubernetes adapter (for the Lease).
        project_exists: ``await project_exists(project_id)``.
        clock: wall clock (epoch seconds).
    """

    def __init__(
        self,
        backend: ReapedBackend,
        api: kube.KubeApi,
        *,
        project_exists: Callable[[str], Awaitable[bool]],
        clock: Callable[[], float],
    ) -> None:
        config = backend.config
        self._backend = backend
        self._project_exists = project_exists
        self._clock = clock
        self.lease = ReaperLease(
            api,
            namespace=config.namespace,
            name=config.lease_name,
            identity=config.replica_id,
            duration_s=max(15.0, 3 * config.reap_interval_s),
            clock=clock,
        )
        #: every claim this reaper deleted (for tests and ``statistics()``-style reporting)
        self.reaped: list[str] = []
        #: every claim this reaper paused
        self.paused: list[str] = []
        self._reaped_event = trio.Event()

    async def _exists(self, project_id: str | None) -> bool | None:
        if not project_id:
            return None
        try:
            return await self._project_exists(project_id)
        except Exception:  # the store is down: keep the claim rather than guess
            logger.warning("reaper: cannot check project %s", project_id, exc_info=True)
            return None

    async def reap_once(self) -> list[str]:
        """One pass (without the Lease check): delete what :func:`reap_reason` selects.

        Returns:
            The names of the claims this pass deleted (paused ones are in :attr:`paused`).

        Raises:
            SandboxError: the claims cannot be listed or a deletion failed.
        """
        config = self._backend.config
        try:
            claims = await self._backend.list_claims()
        except kube.KubeApiError as exc:
            raise SandboxError(f"reaper cannot list claims: {exc}") from exc
        deleted: list[str] = []
        for claim in claims:
            info = claim_info(claim)
            verdict = reap_verdict(
                claim,
                now=self._clock(),
                idle_ttl_s=config.idle_ttl_s,
                project_exists=await self._exists(info.project_id),
                idle_action=config.idle_action,
                paused_ttl_s=config.paused_ttl_s,
            )
            if verdict is None:
                continue
            action, reason = verdict
            try:
                if action == "pause":
                    await self._backend.pause_if_unchanged(claim)
                else:
                    await self._backend.delete_if_unchanged(claim)
            except kube.KubeConflict:
                logger.info("reaper: %s changed since listed; kept", info.sandbox_id)
                continue
            except kube.KubeNotFound:
                continue  # someone else reaped it
            except kube.KubeApiError as exc:
                raise SandboxError(f"reaper cannot {action} {info.sandbox_id}: {exc}") from exc
            if action == "pause":
                logger.info("reaper: paused sandbox claim %s (%s)", info.sandbox_id, reason)
                self.paused.append(info.sandbox_id)
                continue
            logger.info("reaper: deleted sandbox claim %s (%s)", info.sandbox_id, reason)
            deleted.append(info.sandbox_id)
            self.reaped.append(info.sandbox_id)
            self._reaped_event.set()
            self._reaped_event = trio.Event()
        return deleted

    async def wait_reaped(self, count: int) -> None:
        """Wait until this reaper has deleted at least ``count`` claims in total."""
        while len(self.reaped) < count:
            await self._reaped_event.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reap every ``reap_interval_s`` while this replica holds the Lease; never returns.

        Cancellation: stops between or during passes; a half-done pass is safe to repeat.
        """
        task_status.started()
        interval = self._backend.config.reap_interval_s
        while True:
            with trio.move_on_after(max(interval, self._backend.config.request_timeout_s * 3)):
                try:
                    if await self.lease.try_acquire():
                        await self.reap_once()
                except (SandboxError, kube.KubeApiError) as exc:
                    logger.warning("reaper pass failed: %s", exc)
            await trio.sleep(interval)
