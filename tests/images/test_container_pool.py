"""The container backend's warm pool and leak sweep on real podman: a new project's ``init``
claims a started spare (the same container, renamed: nothing is created on the hot path),
the pool refills with a spare of its own token, the claimed workspace is the project's (it
survives the container being removed and created again), deleting the project removes its
container, volume and claim record, and neither a closed nor a crashed agent leaks spares."""

from __future__ import annotations

import json
import secrets

import attrs
import pytest
import trio
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.container import spec
from amicable_agent.sandboxes.container.config import ContainerBackendConfig
from amicable_testing.container_backend import backend_for, cleanup, network_objects, run
from amicable_testing.podman import image_ref, podman, remove, ulimit_args


@pytest.fixture
def config(podman_socket: str) -> ContainerBackendConfig:
    return ContainerBackendConfig(
        socket_path=podman_socket,
        image=image_ref("sandbox"),
        network=f"amicable-pool-{secrets.token_hex(3)}",
        memory_bytes=768 * 1024**2,
        cpus=1.0,
        reap_interval_s=3600,
        warm_pool_size=1,
        warm_pool_templates=("vite",),
        refill_delay_s=0,
    )


def inspect(name: str) -> dict[str, object]:
    return dict(json.loads(podman("inspect", name))[0])


def env_token(inspected: dict[str, object]) -> str | None:
    return spec.token_of(inspected)


async def test_init_claims_a_spare_and_the_pool_refills(config: ContainerBackendConfig) -> None:
    stages: list[str] = []

    async def on_stage(stage: str, message: str) -> None:
        stages.append(stage)

    session = f"s-{secrets.token_hex(4)}"
    sandbox_id = sandbox_id_for(session)
    async with backend_for(config) as backend:
        with trio.fail_after(240):
            await backend.pool.wait_filled()
        [spare] = backend.pool.names()
        spare_before = inspect(spare)
        spare_volume = f"{spare}-workspace"
        assert await backend.list() == [], "spares are no project's"
        assert await backend.lookup(spare) is None

        handle = await backend.ensure(
            session, project_id="p1", template_id="vite", on_stage=on_stage
        )
        claimed = inspect(sandbox_id)
        assert claimed["Id"] == spare_before["Id"], "the spare itself, renamed: no create"
        assert "creating" not in stages
        assert not handle.existed
        assert handle.runtime_token == env_token(spare_before)
        assert spec.workspace_of(claimed) == spare_volume
        record = json.loads(podman("volume", "inspect", spec.claim_name(sandbox_id)))[0]
        assert record["Labels"][spec.PROJECT_LABEL] == "p1"
        assert record["Labels"][spec.WORKSPACE_LABEL] == spare_volume
        assert [(i.sandbox_id, i.project_id) for i in await backend.list()] == [(sandbox_id, "p1")]
        await run(handle, "echo mine > /app/marker.txt")

        # The pool refills in the background, with a container (and token) of its own.
        with trio.fail_after(240):
            while backend.pool.count("vite") < 1:
                await trio.sleep(0.2)
        [refill] = backend.pool.names()
        assert refill != spare
        assert env_token(inspect(refill)) not in (None, handle.runtime_token)

        # The claimed workspace is the project's: removed behind the backend's back, the
        # container is created again on it (and gets a new token).
        remove(sandbox_id)
        again = await backend.ensure(session, project_id="p1", template_id="vite")
        assert not again.existed
        assert again.runtime_token != handle.runtime_token
        assert str((await run(again, "cat /app/marker.txt"))["stdout"]).strip() == "mine"
        assert spec.workspace_of(inspect(sandbox_id)) == spare_volume
        assert backend.pool.names() == [refill], "a project with a workspace takes no spare"

        # Deleting the project removes its container, its workspace and its claim record.
        await backend.delete(sandbox_id)
        containers, volumes = network_objects(config.network)
        assert containers == [refill]
        assert sorted(volumes) == [f"{refill}-workspace"]
    # Closing the backend removes its spares.
    assert network_objects(config.network) == ([], [])


async def test_a_restart_sweeps_leaked_spares_and_deleted_projects(
    config: ContainerBackendConfig,
) -> None:
    """What a crashed agent left: a spare (its token was never anyone's), the container and
    volume of a project deleted meanwhile, the half of a failed create (a spare's volume);
    a live project's container and a stranger's container on the network stay."""
    cold = attrs.evolve(config, warm_pool_size=0)
    live, dead = f"s-{secrets.token_hex(4)}", f"s-{secrets.token_hex(4)}"
    stranger = f"amicable-stranger-{secrets.token_hex(3)}"
    try:
        async with backend_for(cold, keep=True) as backend:
            await backend.ensure(live, project_id="live", template_id="vite")
            await backend.ensure(dead, project_id="dead", template_id="vite")
            # A spare as a crashed agent leaves it (created through the backend's own start).
            leaked = await backend._start_spare("vite")
            half = spec.volume_name(spec.spare_name("vite", "deadbeef"))
            labels = spec.spare_labels("vite", config.network)
            podman("volume", "create", *[f"--label={k}={v}" for k, v in labels.items()], half)
        podman("run", "-d", "--name", stranger, "--network", config.network, *ulimit_args(),
               "--label", f"{spec.NETWORK_LABEL}={config.network}",
               image_ref("sandbox"), "sleep", "600")  # fmt: skip
        assert leaked in network_objects(config.network)[0], "the crash left the spare"

        async def project_exists(project_id: str) -> bool:
            return project_id == "live"

        async with backend_for(cold, project_exists=project_exists, keep=True) as backend:
            containers, volumes = network_objects(config.network)
            assert sorted(containers) == sorted([sandbox_id_for(live), stranger])
            assert volumes == [spec.volume_name(sandbox_id_for(live))]
            assert [i.project_id for i in await backend.list()] == ["live"]
    finally:
        remove(stranger)
        await trio.to_thread.run_sync(cleanup, config.network)
