"""The ``container`` sandbox backend against a real ``podman system service``: one container
per project from the sandbox image, limits, an internal fenced network, the workspace on a
named volume, idle stop and a warm restart, reconnection, deletion, and its refusals.
The fence and the warm pool have their own files (test_container_fence.py,
test_container_pool.py)."""

from __future__ import annotations

import json
import secrets
from functools import partial

import attrs
import httpx
import pytest
import trio
from amicable_agent.errors import ConfigError, SandboxProvisionError
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.container.backend import open_container_backend
from amicable_agent.sandboxes.container.config import ContainerBackendConfig
from amicable_templates.registry import get_template
from amicable_testing.container_backend import backend_for, run
from amicable_testing.podman import build_images, image_ref, podman, remove, ulimit_args


@pytest.fixture
def config(podman_socket: str) -> ContainerBackendConfig:
    return ContainerBackendConfig(
        socket_path=podman_socket,
        image=image_ref("sandbox"),
        network=f"amicable-sbx-{secrets.token_hex(3)}",
        memory_bytes=768 * 1024**2,
        cpus=1.5,
        pids_max=300,
        reap_interval_s=3600,
        warm_pool_size=0,
    )


async def test_a_project_gets_a_limited_isolated_container(config: ContainerBackendConfig) -> None:
    stages: list[str] = []

    async def on_stage(stage: str, message: str) -> None:
        stages.append(stage)

    session = f"s-{secrets.token_hex(4)}"
    async with backend_for(config) as backend:
        handle = await backend.ensure(
            session, project_id="p1", template_id="vite", on_stage=on_stage
        )
        assert handle.sandbox_id == sandbox_id_for(session)
        assert not handle.existed
        assert stages[:2] == ["creating", "starting_runtime"]
        async with httpx.AsyncClient(timeout=30) as client:
            page = await client.get(f"{handle.preview_upstream}/")
            assert page.status_code == 200
            assert "/@vite/client" in page.text
            refused = await client.get(f"{handle.runtime_url}/v1/preview")
            assert refused.status_code == 401
        who = await run(handle, "id -u; cat /proc/net/route; cat /sys/fs/cgroup/pids.max "
                                "/sys/fs/cgroup/pids/pids.max 2>/dev/null")  # fmt: skip
        out = str(who["stdout"])
        assert out.splitlines()[0] == "10001"
        routes = [line.split()[1] for line in out.splitlines() if line.startswith("eth")]
        assert routes, out
        assert "00000000" not in routes, "no default route out of the sandbox network"
        inspected = json.loads(podman("inspect", handle.sandbox_id))[0]
        host = inspected["HostConfig"]
        assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (
            768 * 1024**2, 1_500_000_000, 300,
        )  # fmt: skip
        assert {"CAP_CHOWN", "CAP_SETUID", "CAP_DAC_OVERRIDE"} <= set(host["CapDrop"])
        assert not host.get("CapAdd")
        assert any("no-new-privileges" in opt for opt in host["SecurityOpt"])
        assert inspected["Config"]["Labels"]["org.amicable.project"] == "p1"
        mounts = {m["Destination"]: m.get("Name") for m in inspected["Mounts"]}
        assert mounts["/app"] == f"{handle.sandbox_id}-workspace"
        status = str((await run(handle, "grep -E 'CapBnd|NoNewPrivs' /proc/self/status"))["stdout"])
        assert "CapBnd:\t0000000000000000" in status, "every capability dropped, bounding set too"
        assert "NoNewPrivs:\t1" in status
        network = podman("network", "inspect", "--format", "{{.Internal}}", config.network)
        assert network == "true"
        # Reconnecting gives the same sandbox and token.
        again = await backend.ensure(session, project_id="p1", template_id="vite")
        assert again.existed
        assert again.runtime_token == handle.runtime_token
        assert await backend.lookup(handle.sandbox_id) == again
        listed = await backend.list()
        assert [(i.sandbox_id, i.project_id, i.ready) for i in listed] == [
            (handle.sandbox_id, "p1", True)
        ]


async def test_workspace_survives_recreation_and_idle_stop(config: ContainerBackendConfig) -> None:
    session = f"s-{secrets.token_hex(4)}"
    async with backend_for(attrs.evolve(config, idle_ttl_s=0)) as backend:
        handle = await backend.ensure(session, project_id="p2", template_id="vite")
        await run(handle, "echo kept > /app/marker.txt")
        # Idle stop keeps the container; ensure starts it again (warm) with its files.
        assert await backend.stop_idle() == [handle.sandbox_id]
        assert await backend.lookup(handle.sandbox_id) is None
        warm = await backend.ensure(session, project_id="p2", template_id="vite")
        assert warm.existed
        assert str((await run(warm, "cat /app/marker.txt"))["stdout"]).strip() == "kept"
        # The container removed behind the backend's back: created again on the same volume.
        remove(handle.sandbox_id)
        cold = await backend.ensure(session, project_id="p2", template_id="vite")
        assert not cold.existed
        assert cold.runtime_token != handle.runtime_token
        assert str((await run(cold, "cat /app/marker.txt"))["stdout"]).strip() == "kept"
        await backend.delete(handle.sandbox_id)
        await backend.delete(handle.sandbox_id)  # idempotent
        assert await backend.lookup(handle.sandbox_id) is None
        volumes = podman("volume", "ls", "--format", "{{.Name}}").split()
        assert f"{handle.sandbox_id}-workspace" not in volumes


async def test_each_template_runs_its_own_image(config: ContainerBackendConfig) -> None:
    """``AMICABLE_CONTAINER_IMAGE`` with ``{template}``: a hono project gets the hono image
    (built here as `TEMPLATES=hono make images` builds it) and serves the hono app."""
    await trio.to_thread.run_sync(partial(build_images, ["sandbox"], templates=["hono"]))
    per_template = attrs.evolve(config, image=image_ref("sandbox-{template}"))
    async with backend_for(per_template) as backend:
        hono = await backend.ensure(
            f"s-{secrets.token_hex(4)}", project_id="ph", template_id="hono"
        )
        vite = await backend.ensure(
            f"s-{secrets.token_hex(4)}", project_id="pv", template_id="vite"
        )
        images = {
            h.sandbox_id: json.loads(podman("inspect", h.sandbox_id))[0]["ImageName"]
            for h in (hono, vite)
        }
        assert images == {
            hono.sandbox_id: image_ref("sandbox-hono"),
            vite.sandbox_id: image_ref("sandbox-vite"),
        }
        async with httpx.AsyncClient(timeout=30) as client:
            with trio.fail_after(120):  # tsx boots after the runtime answers
                while (page := await client.get(f"{hono.preview_upstream}/")).status_code != 200:
                    await trio.sleep(0.5)
            assert get_template("hono").dev_expect in page.text
            assert "/@vite/client" in (await client.get(f"{vite.preview_upstream}/")).text


async def test_strangers_containers_are_never_handed_out(
    config: ContainerBackendConfig, network: str
) -> None:
    session = f"s-{secrets.token_hex(4)}"
    stranger = sandbox_id_for(session)
    podman("run", "-d", "--name", stranger, "--network", network, *ulimit_args(),
           "--env", "AMICABLE_RUNTIME_TOKEN=x", image_ref("sandbox"))  # fmt: skip
    try:
        async with backend_for(config) as backend:
            assert await backend.lookup(stranger) is None
            with pytest.raises(SandboxProvisionError, match="not an Amicable sandbox"):
                await backend.delete(stranger)
            assert stranger not in [i.sandbox_id for i in await backend.list()]
            with pytest.raises(SandboxProvisionError, match="not an Amicable sandbox"):
                await backend.ensure(session, project_id="p", template_id="vite")
    finally:
        remove(stranger)


async def test_missing_image_and_engine_are_clear_errors(config: ContainerBackendConfig) -> None:
    async with backend_for(attrs.evolve(config, image="localhost/amicable-nope:x")) as backend:
        with pytest.raises(SandboxProvisionError, match="not on this engine"):
            await backend.ensure("s-missing", project_id="p", template_id="vite")
    # One image per template: a template whose image was not built names itself and the fix.
    per_template = attrs.evolve(config, image="localhost/amicable-nope-{template}:x")
    async with backend_for(per_template) as backend:
        with pytest.raises(SandboxProvisionError) as info:
            await backend.ensure("s-missing", project_id="p", template_id="hono")
        assert "template 'hono'" in info.value.reason
        assert "localhost/amicable-nope-hono:x" in info.value.reason
        assert "TEMPLATES=hono make images" in info.value.reason
        volumes = podman("volume", "ls", "--format", "{{.Name}}").split()
        assert f"{sandbox_id_for('s-missing')}-workspace" not in volumes, "nothing leaked"
    gone = attrs.evolve(config, socket_path=config.socket_path + ".absent")
    with pytest.raises(ConfigError, match="no container engine"):
        async with open_container_backend(gone):
            pass
