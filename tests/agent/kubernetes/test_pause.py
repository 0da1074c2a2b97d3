"""``AMICABLE_SANDBOX_IDLE_ACTION=pause``: the reaper scales an idle claim's Sandbox to zero
(volumes kept) instead of deleting it, the next ``ensure`` scales it back up, a sandbox paused
too long is deleted after all; in both API versions."""

from __future__ import annotations

import pytest
import trio
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.kubernetes.config import KubernetesBackendConfig
from amicable_agent.sandboxes.kubernetes.objects import (
    format_time,
    is_paused,
    pause_patch,
)
from amicable_agent.sandboxes.kubernetes.reaper import reap_verdict
from amicable_testing.fake_kube import CLAIMS, SANDBOXES, WARM_POOLS

NS = "sandboxes"
TEMPLATE = "amicable-sandbox-vite"


def _claim(last_active: float, *, paused: float | None = None) -> dict:
    annotations = {"amicable.dev/last-active": format_time(last_active)}
    if paused is not None:
        annotations["amicable.dev/paused-at"] = format_time(paused)
    return {"metadata": {"name": "c", "annotations": annotations}}


def test_pause_verdicts() -> None:
    now = 1_800_000_000.0
    common = {"now": now, "idle_ttl_s": 60, "idle_action": "pause", "paused_ttl_s": 3600}
    assert reap_verdict(_claim(now - 10), project_exists=True, **common) is None  # type: ignore[arg-type]
    action, why = reap_verdict(_claim(now - 61), project_exists=True, **common)  # type: ignore[arg-type, misc]
    assert (action, why.startswith("idle")) == ("pause", True)
    # a paused claim stays paused (however long idle) until its paused TTL is over
    assert reap_verdict(_claim(now - 999, paused=now - 100), project_exists=True, **common) is None  # type: ignore[arg-type]
    assert (
        reap_verdict(_claim(now - 9999, paused=now - 3601), project_exists=True, **common)[0]
        == "delete"
    )  # type: ignore[arg-type, index]
    # a deleted project's claim goes, paused or not
    assert reap_verdict(_claim(now, paused=now), project_exists=False, **common) == (  # type: ignore[arg-type]
        "delete",
        "project deleted",
    )
    assert pause_patch("v1alpha1", paused=True) == {"spec": {"replicas": 0}}
    assert pause_patch("v1beta1", paused=False) == {"spec": {"operatingMode": "Running"}}
    assert is_paused({"spec": {"operatingMode": "Suspended"}})
    assert not is_paused({"spec": {"replicas": 1}})


def test_idle_action_comes_from_the_environment() -> None:
    env = {"AMICABLE_SANDBOX_IDLE_ACTION": "pause", "AMICABLE_SANDBOX_PAUSED_TTL_S": "86400"}
    config = KubernetesBackendConfig.from_env(env)
    assert (config.idle_action, config.paused_ttl_s) == ("pause", 86400.0)
    assert KubernetesBackendConfig.from_env({}).idle_action == "delete"
    with pytest.raises(ValueError, match="AMICABLE_SANDBOX_IDLE_ACTION"):
        KubernetesBackendConfig.from_env({"AMICABLE_SANDBOX_IDLE_ACTION": "hibernate"})


async def test_an_idle_claim_is_paused_then_resumed_by_the_next_ensure(
    fake, open_backend, clock
) -> None:
    name = sandbox_id_for("s1")
    settings = {"idle_ttl_s": 600, "idle_action": "pause", "reap_interval_s": 0.05}
    async with open_backend(**settings) as backend:
        first = await backend.ensure("s1", project_id="p1", template_id="vite")
        assert first.existed is False
        claim = fake.get(CLAIMS, NS, name)
        assert "lifecycle" not in claim["spec"]  # the controller must not delete it
        uids = (claim["metadata"]["uid"], fake.get(SANDBOXES, NS, name)["metadata"]["uid"])
        clock.advance(601)
        with trio.fail_after(10):
            await fake.wait_until(lambda: is_paused(fake.get(SANDBOXES, NS, name)))
            await fake.wait_until(
                lambda: (
                    (fake.get(CLAIMS, NS, name) or {})
                    .get("status", {})
                    .get("conditions", [{}])[0]
                    .get("status")
                    == "False"
                )
            )
        assert backend.reaper is not None
        with trio.fail_after(10):
            while backend.reaper.paused != [name]:  # recorded once the API answered
                await trio.sleep(0.01)
        assert backend.reaper.reaped == []
        assert fake.get(SANDBOXES, NS, name)["spec"]["replicas"] == 0
        assert "amicable.dev/paused-at" in fake.get(CLAIMS, NS, name)["metadata"]["annotations"]
        assert await backend.lookup(name) is None  # not running: previews answer 404

        stages: list[str] = []

        async def on_stage(stage: str, message: str) -> None:
            stages.append(message)

        clock.advance(10)
        resumed = await backend.ensure("s1", project_id="p1", template_id="vite", on_stage=on_stage)  # type: ignore[arg-type]
        assert resumed.existed is True
        assert "Resuming the paused sandbox…" in stages
        assert fake.get(SANDBOXES, NS, name)["spec"]["replicas"] == 1
        claim = fake.get(CLAIMS, NS, name)
        assert "amicable.dev/paused-at" not in claim["metadata"]["annotations"]
        assert await backend.lookup(name) is not None
        # the same claim and Sandbox (and so its volumes), not a new one
        assert (claim["metadata"]["uid"], fake.get(SANDBOXES, NS, name)["metadata"]["uid"]) == uids
        assert len(fake.objects(CLAIMS, NS)) == 1


async def test_a_sandbox_paused_too_long_is_deleted(fake, open_backend, clock) -> None:
    name = sandbox_id_for("s2")
    settings = {
        "idle_ttl_s": 600, "idle_action": "pause", "paused_ttl_s": 3600, "reap_interval_s": 0.05,
    }  # fmt: skip
    async with open_backend(**settings) as backend:
        await backend.ensure("s2", project_id="p1", template_id="vite")
        clock.advance(601)
        with trio.fail_after(10):
            await fake.wait_until(lambda: is_paused(fake.get(SANDBOXES, NS, name)))
        clock.advance(3601)
        assert backend.reaper is not None
        with trio.fail_after(10):
            await backend.reaper.wait_reaped(1)
            await fake.wait_until(lambda: fake.get(CLAIMS, NS, name) is None)


async def test_pause_in_the_v1beta1_api(fake, open_backend, clock) -> None:
    fake.put(
        WARM_POOLS,
        "v1beta1",
        NS,
        {
            "metadata": {"name": TEMPLATE},
            "spec": {"replicas": 0, "sandboxTemplateRef": {"name": TEMPLATE}},
        },
    )
    name = sandbox_id_for("s3")
    settings = {
        "idle_ttl_s": 600, "idle_action": "pause", "reap_interval_s": 0.05,
        "claim_api_version": "v1beta1",
    }  # fmt: skip
    async with open_backend(**settings) as backend:
        await backend.ensure("s3", project_id="p1", template_id="vite")
        clock.advance(601)
        with trio.fail_after(10):
            await fake.wait_until(lambda: is_paused(fake.get(SANDBOXES, NS, name)))
        assert fake.get(SANDBOXES, NS, name)["spec"]["operatingMode"] == "Suspended"
        await backend.ensure("s3", project_id="p1", template_id="vite")
        assert fake.get(SANDBOXES, NS, name)["spec"]["operatingMode"] == "Running"
