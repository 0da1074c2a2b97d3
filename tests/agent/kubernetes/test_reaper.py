"""The reaper: idle and orphaned claims go, exactly one replica reaps, touched claims stay."""

from __future__ import annotations

import trio
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.kubernetes.objects import format_time
from amicable_agent.sandboxes.kubernetes.reaper import SandboxReaper, reap_reason
from amicable_testing.fake_kube import CLAIMS, LEASES, SANDBOXES

NS = "sandboxes"
TEMPLATE = "amicable-sandbox-vite"


def _claim(last_active: float | None, *, deleting: bool = False) -> dict:
    meta: dict = {"name": "c", "annotations": {}}
    if last_active is not None:
        meta["annotations"]["amicable.dev/last-active"] = format_time(last_active)
    if deleting:
        meta["deletionTimestamp"] = format_time(0)
    return {"metadata": meta}


def test_reap_reason_decisions():
    now = 1_800_000_000.0
    assert reap_reason(_claim(now - 10), now=now, idle_ttl_s=60, project_exists=True) is None
    assert "idle" in str(reap_reason(_claim(now - 61), now=now, idle_ttl_s=60, project_exists=True))
    assert reap_reason(_claim(now - 10), now=now, idle_ttl_s=60, project_exists=False) == (
        "project deleted"
    )
    # unknown project (store down / no project id): keep unless idle
    assert reap_reason(_claim(now - 10), now=now, idle_ttl_s=60, project_exists=None) is None
    # TTL 0 = never idle out
    assert reap_reason(_claim(now - 10**6), now=now, idle_ttl_s=0, project_exists=True) is None
    # already being deleted
    assert (
        reap_reason(_claim(now - 61, deleting=True), now=now, idle_ttl_s=60, project_exists=False)
        is None
    )
    # no annotation: fall back to creationTimestamp
    claim = {"metadata": {"creationTimestamp": format_time(now - 120)}}
    assert reap_reason(claim, now=now, idle_ttl_s=60, project_exists=True) is not None


async def _make_claims(backend, clock) -> dict[str, str]:
    """Three sandboxes: fresh (p1), idle (p2), orphaned (project p-gone)."""
    names = {}
    clock.advance(-1000)
    await backend.ensure("idle", project_id="p2", template_id="vite")
    names["idle"] = sandbox_id_for("idle")
    clock.advance(1000)
    await backend.ensure("fresh", project_id="p1", template_id="vite")
    names["fresh"] = sandbox_id_for("fresh")
    await backend.ensure("orphan", project_id="p-gone", template_id="vite")
    names["orphan"] = sandbox_id_for("orphan")
    return names


async def test_two_replicas_reap_idle_and_orphaned_claims_once(fake, open_backend, clock):
    fake.put(
        CLAIMS,
        "v1alpha1",
        NS,
        {"metadata": {"name": "not-ours"}, "spec": {"sandboxTemplateRef": {"name": TEMPLATE}}},
    )
    async with open_backend(idle_ttl_s=600) as setup:
        names = await _make_claims(setup, clock)

    overrides = {"idle_ttl_s": 600, "reap_interval_s": 0.05}
    async with (
        open_backend(replica_id="agent-a", **overrides) as a,
        open_backend(replica_id="agent-b", **overrides) as b,
    ):
        with trio.fail_after(10):
            await fake.wait_until(
                lambda: fake.get(LEASES, NS, "amicable-sandbox-reaper") is not None
            )
            lease = fake.get(LEASES, NS, "amicable-sandbox-reaper")
            assert lease is not None
            leader, follower = (a, b) if lease["spec"]["holderIdentity"] == "agent-a" else (b, a)
            assert leader.reaper is not None
            assert follower.reaper is not None
            await leader.reaper.wait_reaped(2)
            await fake.wait_until(lambda: fake.get(CLAIMS, NS, names["idle"]) is None)
        # exactly one replica (the Lease holder) did the reaping, each claim once
        assert sorted(leader.reaper.reaped) == sorted([names["idle"], names["orphan"]])
        assert follower.reaper.reaped == []

    assert fake.get(CLAIMS, NS, names["orphan"]) is None
    assert fake.get(CLAIMS, NS, names["fresh"]) is not None
    assert fake.get(CLAIMS, NS, "not-ours") is not None  # unmanaged claims are never touched
    # the Sandbox of a reaped claim is gone too (foreground deletion)
    assert fake.get(SANDBOXES, NS, names["idle"]) is None


async def test_lease_passes_to_another_replica_when_the_holder_stops_renewing(
    fake, open_backend, clock
):
    async with (
        open_backend(replica_id="agent-a", reap_interval_s=10) as a,
        open_backend(replica_id="agent-b", reap_interval_s=10) as b,
    ):
        assert a.reaper is not None
        assert b.reaper is not None
        with trio.fail_after(10):  # both reapers ran their first pass: one holds the Lease
            await fake.wait_until(
                lambda: fake.get(LEASES, NS, "amicable-sandbox-reaper") is not None
            )
        first = fake.get(LEASES, NS, "amicable-sandbox-reaper")
        assert first is not None
        holder, other = (a, b) if first["spec"]["holderIdentity"] == "agent-a" else (b, a)
        assert holder.reaper is not None
        assert other.reaper is not None
        assert await holder.reaper.lease.try_acquire()  # renewing works
        assert not await other.reaper.lease.try_acquire()
        clock.advance(31)  # past leaseDurationSeconds (3 x interval = 30 s) without renewal
        assert await other.reaper.lease.try_acquire()
        assert not await holder.reaper.lease.try_acquire()
        lease = fake.get(LEASES, NS, "amicable-sandbox-reaper")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == other.config.replica_id
        assert lease["spec"]["leaseTransitions"] == 1


async def test_claim_touched_by_another_replica_during_a_pass_is_kept(
    fake, open_backend, clock, projects
):
    async with open_backend(idle_ttl_s=600) as backend, open_backend(idle_ttl_s=600) as other:
        clock.advance(-1000)
        handle = await backend.ensure("busy", project_id="p1", template_id="vite")
        clock.advance(1000)

        async def project_exists(project_id: str) -> bool:
            # between the reaper's list and its delete, the user gets active on another replica
            await other.touch(handle.sandbox_id)
            return True

        async with open_backend(idle_ttl_s=600, project_exists=project_exists) as reaping:
            reaper = SandboxReaper(
                reaping, reaping._api, project_exists=project_exists, clock=clock
            )
            assert await reaper.reap_once() == []
        assert fake.get(CLAIMS, NS, handle.sandbox_id) is not None

        # and a reaped project comes back on its next INIT
        clock.advance(1000)
        async with open_backend(idle_ttl_s=600) as reaping:

            async def exists(project_id: str) -> bool:
                await trio.lowlevel.checkpoint()
                return True

            reaper = SandboxReaper(reaping, reaping._api, project_exists=exists, clock=clock)
            assert await reaper.reap_once() == [handle.sandbox_id]
            with trio.fail_after(10):
                await fake.wait_until(lambda: fake.get(CLAIMS, NS, handle.sandbox_id) is None)
        again = await backend.ensure("busy", project_id="p1", template_id="vite")
        assert again.sandbox_id == handle.sandbox_id
        assert not again.existed
