"""The local backend's lifecycle end to end through the agent server: idle stop and restart,
an ``init`` naming a deleted project, spare workspaces.

Real agent (hypercorn on port 0), real ``amicable-sandbox-runtime`` processes, real Vite.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.local.backend import LocalBackend, open_local_backend
from amicable_protocol.messages import ServerMessage
from amicable_testing import ws_recv_until, ws_send
from trio_websocket import open_websocket_url

from .conftest import alive, backend_config, processes_left_under

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


async def init(agent: Any, session_id: str) -> list[ServerMessage]:
    """Send ``init``; the messages up to the reply (or the ``failed`` status)."""
    async with open_websocket_url(agent.ws) as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": session_id}})
        seen: list[ServerMessage] = []
        with trio.fail_after(300):
            while True:
                msg = (await ws_recv_until(ws, "sandbox_status", timeout_s=300))[-1]
                seen.append(msg)
                if msg.data.stage == "failed":
                    return seen
                if msg.data.stage == "ready":
                    seen.extend(await ws_recv_until(ws, "init", timeout_s=300))
                    return seen


async def test_idle_sandbox_stops_and_the_next_init_restarts_it(
    tmp_path: Path, agent_factory: Callable[..., Any]
) -> None:
    config = backend_config(tmp_path / "data", idle_ttl_s=1.0)
    async with open_local_backend(config) as backend, agent_factory(backend=backend) as agent:
        first = await init(agent, "idle-1")
        sandbox_id = sandbox_id_for("idle-1")
        assert first[-1].data.sandbox_id == sandbox_id
        assert await backend.lookup(sandbox_id) is not None
        workspace = tmp_path / "data" / "sandboxes" / sandbox_id / "workspace"
        (workspace / "kept.txt").write_text("still here")
        pids = backend.process_ids(sandbox_id)
        assert len(pids) == 2
        assert all(alive(p) for p in pids)

        # The socket is closed: nothing touches the sandbox any more.
        with trio.fail_after(60):
            while await backend.lookup(sandbox_id) is not None:
                await trio.sleep(0.1)
        with trio.fail_after(30):
            while any(alive(p) for p in pids):
                await trio.sleep(0.05)
        assert backend.statistics()["running"] == 0
        assert (workspace / "kept.txt").read_text() == "still here", "stopped, not deleted"

        again = await init(agent, "idle-1")
        stages = [m.data.stage for m in again if m.type == "sandbox_status"]
        assert "creating" not in stages
        assert stages[-1] == "ready"
        handle = await backend.lookup(sandbox_id)
        assert handle is not None
        assert set(backend.process_ids(sandbox_id)).isdisjoint(pids), "new processes"
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.get(handle.preview_upstream + "/")).status_code == 200
        assert (workspace / "kept.txt").read_text() == "still here"


async def test_idle_clock_starts_when_the_sandbox_is_ready(tmp_path: Path) -> None:
    # A cold start (template copy, npm, Vite) takes longer than this TTL; counted from the
    # start's beginning, the reaper (every TTL/4) stopped the sandbox right after it was ready.
    async with open_local_backend(backend_config(tmp_path, idle_ttl_s=1.0)) as backend:
        handle = await backend.ensure("slow-1", project_id="slow-1", template_id="vite")
        await trio.sleep(0.5)  # two reaper passes, half the TTL
        assert await backend.lookup(handle.sandbox_id) is not None


@attrs.define
class GatedDelete:
    """A real LocalBackend whose ``delete`` waits for ``release`` (holds the project in its
    soft-deleted state while the test sends ``init``)."""

    inner: LocalBackend
    release: trio.Event = attrs.field(factory=trio.Event)
    entered: trio.Event = attrs.field(factory=trio.Event)

    async def delete(self, sandbox_id: str) -> None:
        self.entered.set()
        await self.release.wait()
        await self.inner.delete(sandbox_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_init_naming_a_deleted_project(
    tmp_path: Path, agent_factory: Callable[..., Any]
) -> None:
    """Soft-deleted: ``init`` fails with a reason and starts nothing. Purged: the id is
    unknown again, so (as for any unknown id) ``init`` creates a new, empty project — from
    the template, never from the deleted project's files."""
    async with open_local_backend(backend_config(tmp_path / "data")) as inner:
        backend = GatedDelete(inner)
        async with agent_factory(backend=backend) as agent:
            first = await init(agent, "doomed")
            sandbox_id = first[-1].data.sandbox_id
            workspace = tmp_path / "data" / "sandboxes" / sandbox_id / "workspace"
            (workspace / "secret.txt").write_text("deleted project's data")
            async with httpx.AsyncClient(trust_env=False) as client:
                deleted = await client.delete(f"{agent.http}/api/projects/doomed")
                assert deleted.status_code == 202
                with trio.fail_after(10):
                    await backend.entered.wait()

                refused = await init(agent, "doomed")
                assert refused[-1].data.stage == "failed"
                assert "deleted" in refused[-1].data.message
                stages = [m.data.stage for m in refused if m.type == "sandbox_status"]
                assert stages == ["queued", "failed"], "no sandbox work for a deleted project"

                backend.release.set()
                with trio.fail_after(60):
                    while True:  # the row is purged right after the sandbox is deleted
                        reborn = await init(agent, "doomed")
                        if reborn[-1].type == "init":
                            break
                        assert "deleted" in reborn[-1].data.message
                        await trio.sleep(0.05)
                reply = reborn[-1].data
                assert reply.sandbox_id == sandbox_id, "the id still maps to the same sandbox"
                assert reply.exists is False
                assert reply.project.name == "Untitled"
                assert not (workspace / "secret.txt").exists()
                assert (workspace / "package.json").exists()
                listed = (await client.get(f"{agent.http}/api/projects")).json()["projects"]
                assert [p["project_id"] for p in listed] == ["doomed"]
    leftovers = [p.name for p in (tmp_path / "data" / "sandboxes").iterdir()]
    assert leftovers == [sandbox_id], "no trash left behind"


async def test_cold_start_takes_a_spare_workspace_and_runs_the_dev_script(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = backend_config(data, spare_workspaces=1, refill_delay_s=0.5)
    async with open_local_backend(config) as backend:
        with trio.fail_after(300):
            await backend.spares.wait_filled()
        assert backend.statistics()["spare"] == 1
        # the agent may change the dev script: it is read on every start
        spare = next((data / "sandboxes" / ".spares").iterdir())
        package = spare / "package.json"
        package.write_text(package.read_text().replace('"dev": "vite"', '"dev": "vite --cors"'))
        stages: list[str] = []

        async def on_stage(stage: str, message: str) -> None:
            stages.append(stage)

        handle = await backend.ensure("spare-1", project_id="spare-1", template_id="vite",
                                      on_stage=on_stage)  # fmt: skip
        assert stages == ["creating", "starting_runtime", "starting_preview"]
        assert handle.existed is False
        assert not spare.exists(), "the spare was moved into place"
        workspace = data / "sandboxes" / handle.sandbox_id / "workspace"
        assert (workspace / "node_modules" / ".bin" / "vite").exists()
        async with httpx.AsyncClient(trust_env=False) as client:
            page = await client.get(handle.preview_upstream + "/")
        assert page.status_code == 200
        assert "/@vite/client" in page.text
        preview_pid = backend.process_ids(handle.sandbox_id)[1]
        cmdlines = [
            Path(f"/proc/{pid}/cmdline").read_bytes()
            for pid in _group_members(preview_pid)
            if Path(f"/proc/{pid}/cmdline").exists()
        ]
        assert not any(b"npm" in c for c in cmdlines), cmdlines
        assert any(b"vite\0--cors\0--host" in c for c in cmdlines), cmdlines
        assert not (workspace / ".complete").exists()
        with trio.fail_after(300):  # refilled after the refill delay
            await backend.spares.wait_filled()
        assert len(list((data / "sandboxes" / ".spares").iterdir())) == 1

    # a spare left on disk is reused by the next backend, a half-made one is removed, and
    # so is what an interrupted deletion left
    (data / "sandboxes" / ".spares" / "vite-halfmade").mkdir()
    trash = data / "sandboxes" / ".deleted-amicable-0123456789ab-cafe" / "workspace"
    trash.mkdir(parents=True)
    async with open_local_backend(backend_config(data, spare_workspaces=1)) as backend:
        assert backend.statistics()["spare"] == 1
        assert not (data / "sandboxes" / ".spares" / "vite-halfmade").exists()
        with trio.fail_after(10):
            while trash.parent.exists():
                await trio.sleep(0.01)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


async def test_cancelled_cold_start_leaves_no_process(tmp_path: Path) -> None:
    async with open_local_backend(backend_config(tmp_path)) as backend:
        with trio.CancelScope() as scope:

            async def on_stage(stage: str, message: str) -> None:
                if stage == "starting_runtime":  # init-workspace and the runtime are running
                    scope.cancel()

            await backend.ensure("gone-1", project_id="gone-1", template_id="vite",
                                 on_stage=on_stage)  # fmt: skip
        assert scope.cancelled_caught
        assert backend.statistics()["running"] == 0
    assert await processes_left_under(tmp_path) == []
