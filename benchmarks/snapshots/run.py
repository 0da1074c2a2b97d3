"""Snapshot benchmarks: what durability costs, as ratios against a baseline of the same run.

* **per turn**: a real ``amicable-sandbox-runtime`` (no dev server) on a real template
  workspace; each turn changes two files, takes its checkpoint (``Checkpoints.create``), then
  its snapshot (``Snapshots.take``: the bundle, capped reads, the fetch into the mirror,
  SQLite). Ratio: snapshot time / checkpoint time (target <= 0.3x). Turns alternate between
  the bundle made in the checkpoint commit's exec (the product) and in an exec of its own
  (the way before), so the whole turn's cost of both is compared in the same run too.
* **restored init**: the real agent (``serve``) on the local backend with real Vite and the
  LLM loop on the fake model: a project gets ``--turns`` turns, its workspace is deleted, and
  ``init`` -> first 200 of its preview is timed against a cold ``init`` of a new project
  (target <= 2x). No warm pool, no spare workspace: both start the same way.
* **resume vs re-create**: the Kubernetes backend against the fake API server, a real runtime
  standing for the pod. Re-create: the claim is deleted and the pod's workspace is the
  template again; ``ensure`` + snapshot restore. Resume: the claim is paused (Sandbox scaled
  to zero, volume kept); ``ensure`` + the restore check. ``--ready-delay`` is the fake
  controller's pod start time (both pay it).

Run: ``.venv/bin/python benchmarks/snapshots/run.py [--runs N] [--turns N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import kubernetes
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.loop.engine import Engine
from amicable_agent.loop.llm import LlmClient
from amicable_agent.loop.settings import LoopSettings
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.kubernetes.backend import (
    KubernetesBackendConfig,
    open_kubernetes_backend,
)
from amicable_agent.sandboxes.kubernetes.objects import is_paused
from amicable_agent.sandboxes.local.backend import LocalBackendConfig, open_local_backend
from amicable_agent.sandboxes.runtime_client import open_runtime_client
from amicable_agent.server import serve
from amicable_agent.sessions.checkpoints import Checkpoints
from amicable_agent.sessions.snapshots import Snapshots
from amicable_agent.snapshots import SnapshotConfig, open_snapshot_store
from amicable_agent.store.sqlite import open_sqlite_store
from amicable_testing import ws_recv_until, ws_send
from amicable_testing.fake_anthropic import FakeAnthropic, Reply, Text, ToolUse
from amicable_testing.fake_kube import CLAIMS, SANDBOXES, TEMPLATES, open_fake_kube
from trio_websocket import open_websocket_url

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CACHE = ROOT / ".cache" / "node_modules"
TOKEN = "bench-token-0123456789"
NS = "sandboxes"


def median_ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:7.1f} ms"


async def init_workspace(dest: Path) -> None:
    await trio.run_process(
        [str(BIN / "amicable-sandbox-runtime"), "init-workspace", str(dest), "--cache-dir", str(CACHE)],
        capture_stdout=True,
    )  # fmt: skip


@asynccontextmanager
async def runtime_on(workspace: Path, token: str = TOKEN) -> AsyncIterator[int]:
    """``amicable-sandbox-runtime --no-preview`` on ``workspace``; yields its port."""
    ready = workspace.parent / f"{workspace.name}.ready.json"
    ready.unlink(missing_ok=True)
    env = {**os.environ, "AMICABLE_RUNTIME_TOKEN": token, "AMICABLE_RUNTIME_HOST": "127.0.0.1"}
    proc = await trio.lowlevel.open_process(
        [str(BIN / "amicable-sandbox-runtime"), "--no-preview", "--port", "0",
         "--ready-file", str(ready), "--workspace", str(workspace)],
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        with trio.fail_after(60):
            while not ready.exists():  # noqa: ASYNC110 - another process writes it
                await trio.sleep(0.05)
        yield int(json.loads(ready.read_text())["port"])
    finally:
        with trio.CancelScope(shield=True):
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


# --- per turn -------------------------------------------------------------------------------


async def per_turn(base: Path, turns: int) -> None:
    """Turns alternate between the two ways of making the bundle: in the checkpoint commit's
    own exec (``Snapshots.preparer``, the product's way) and in a separate exec of its own
    (as before), on one workspace and one chain."""
    workspace = base / "turns" / "workspace"
    await init_workspace(workspace)
    config = SnapshotConfig(cache_dir=base / "turns" / "cache")
    times: dict[str, tuple[list[float], list[float]]] = {"in the commit's exec": ([], []),
                                                          "separate exec": ([], [])}  # fmt: skip
    async with (
        open_sqlite_store(base / "turns" / "store.db") as db,
        open_snapshot_store(config, db) as store,
        runtime_on(workspace) as port,
        open_runtime_client(f"http://127.0.0.1:{port}", TOKEN) as runtime,
    ):
        await db.create_project("Bench", template_id="vite", project_id="p")
        snapshots = Snapshots(store)
        ways = {"in the commit's exec": Checkpoints(runtime, after_commit=snapshots.preparer("p")),
                "separate exec": Checkpoints(runtime)}  # fmt: skip
        await ways["separate exec"].ensure()
        start = time.perf_counter()
        first = await snapshots.take("p", runtime)
        full_s = time.perf_counter() - start
        for n in range(turns):
            way = list(ways)[n % 2]
            await runtime.write_file(
                "/src/App.tsx", f"export default () => <h1>Turn {n}</h1>;\n".encode()
            )
            await runtime.write_file(f"/src/part{n}.ts", f"export const n = {n};\n".encode() * 20)
            start = time.perf_counter()
            await ways[way].create(f"Turn {n}")
            middle = time.perf_counter()
            await snapshots.take("p", runtime)
            times[way][0].append(middle - start)
            times[way][1].append(time.perf_counter() - middle)
    print(
        f"first (full) snapshot of the template: {full_s * 1000:.1f} ms, {first.size_bytes if first else 0} bytes"
    )
    totals = {}
    for way, (checkpoint_s, snapshot_s) in times.items():
        ratios = [s / c for s, c in zip(snapshot_s, checkpoint_s, strict=True)]
        totals[way] = [s + c for s, c in zip(snapshot_s, checkpoint_s, strict=True)]
        print(f"-- bundle made {way} ({len(ratios)} turns)")
        print(f"checkpoint commit    median {median_ms(checkpoint_s)}")
        print(f"snapshot after it    median {median_ms(snapshot_s)}")
        print(f"checkpoint + snapshot median {median_ms(totals[way])}")
        print(f"ratio snapshot/checkpoint per turn: median {statistics.median(ratios):.2f}x "
              f"(target <= 0.3x), runs {[round(r, 2) for r in ratios]}")  # fmt: skip
    head, old = (statistics.median(t) for t in totals.values())
    print(f"ratio checkpoint+snapshot, in the commit's exec / separate exec: {head / old:.2f}x")


# --- restored init --------------------------------------------------------------------------


async def first_200(url: str) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        with trio.fail_after(120):
            while True:
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.02)


async def restored_init(base: Path, runs: int, turns: int) -> None:
    data = base / "agent"
    model = FakeAnthropic()
    local = LocalBackendConfig(
        data_dir=data, runtime_command=(str(BIN / "amicable-sandbox-runtime"),),
        warm_pool_size=0, spare_workspaces=0, cache_dir=CACHE,
    )  # fmt: skip
    config = AgentConfig(
        host="127.0.0.1", port=0, internal_port=0, data_dir=data,
        preview_base_domain="preview.localhost",
    )  # fmt: skip
    cold: list[float] = []
    restored: list[float] = []
    async with trio.open_nursery() as nursery, open_local_backend(local) as backend:
        llm_url = await nursery.start(model.serve)
        settings = LoopSettings(api_key="sk-ant-bench-key-123456", base_url=llm_url,
                                partial_interval_s=0.0, qa_enabled=False)  # fmt: skip
        engine = Engine(settings, llm=LlmClient(settings))
        ports = await nursery.start(
            lambda task_status: serve(
                config, backend=backend, engine=engine, task_status=task_status
            )
        )
        ws_url = f"ws://127.0.0.1:{ports.public}/"

        async def init_to_200(sid: str) -> tuple[float, list[str]]:
            start = time.perf_counter()
            async with open_websocket_url(ws_url) as ws:
                await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
                seen = await ws_recv_until(ws, "init", timeout_s=300)
            handle = await backend.lookup(sandbox_id_for(sid))
            assert handle is not None
            await first_200(handle.preview_upstream + "/")
            stages = [m.data.stage for m in seen if str(m.type) == "sandbox_status"]
            return time.perf_counter() - start, stages

        project = str(uuid.uuid4())
        async with open_websocket_url(ws_url) as ws:
            await ws_send(ws, {"type": "init", "data": {"session_id": project}})
            await ws_recv_until(ws, "init", timeout_s=300)
            for n in range(turns):
                model.add(
                    Reply([Text("ok"), ToolUse("write_file", {"file_path": f"/src/Page{n}.tsx",
                           "content": f"export const Page{n} = () => <p>{n}</p>;\n"})]),
                    Reply([Text("done")]),
                )  # fmt: skip
                await ws_send(
                    ws, {"type": "user", "data": {"session_id": project, "text": f"page {n}"}}
                )
                await ws_recv_until(ws, "update_completed", timeout_s=60)
                while (await ws_recv_until(ws, "trace_event", timeout_s=60))[
                    -1
                ].data.tool_name != "checkpoint":
                    pass
        await trio.sleep(1)  # the last snapshot, taken in the background
        for _ in range(runs):
            sid = str(uuid.uuid4())
            took, _ = await init_to_200(sid)
            cold.append(took)
            await backend.delete(sandbox_id_for(sid))
            await backend.delete(sandbox_id_for(project))  # the workspace is gone
            took, stages = await init_to_200(project)
            assert "restoring" in stages, stages
            restored.append(took)
        nursery.cancel_scope.cancel()
    print(
        f"init->200 cold (new project)       median {median_ms(cold)}  runs {[round(x, 2) for x in cold]}"
    )
    print(
        f"init->200 restored ({turns} turns)     median {median_ms(restored)}  runs {[round(x, 2) for x in restored]}"
    )
    print(
        f"ratio restored/cold {statistics.median(restored) / statistics.median(cold):.2f}x (target <= 2x)"
    )


# --- resume vs re-create --------------------------------------------------------------------


def lay_template(template: Path, workspace: Path) -> None:
    """A new pod's workspace: the template again (emptied in place: the runtime keeps it open)."""
    for entry in workspace.iterdir():
        if entry.name == "node_modules":
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for entry in template.iterdir():
        if entry.name == "node_modules":
            continue
        target = workspace / entry.name
        shutil.copytree(entry, target) if entry.is_dir() else shutil.copy2(entry, target)


async def resume_vs_recreate(base: Path, runs: int, turns: int, ready_delay_s: float) -> None:
    from amicable_agent.sandboxes.kubernetes.objects import derive_runtime_token

    root = base / "kube"
    template = root / "template"
    await init_workspace(template)
    workspace = root / "workspace"
    shutil.copytree(template, workspace, symlinks=True)
    sid = "bench-project"
    name = sandbox_id_for(sid)
    token = derive_runtime_token("s3cret", name)
    recreate: list[float] = []
    resume: list[float] = []
    async with (
        open_fake_kube(ready_delay_s=ready_delay_s, bind_delay_s=0.0) as fake,
        runtime_on(workspace, token) as port,
        open_sqlite_store(root / "store.db") as db,
        open_snapshot_store(SnapshotConfig(cache_dir=root / "cache"), db) as store,
    ):
        fake.put(
            TEMPLATES, "v1alpha1", NS, {"metadata": {"name": "t"}, "spec": {"podTemplate": {}}}
        )
        config = KubernetesBackendConfig(
            namespace=NS, template_name="t", service_host_template="127.0.0.1", runtime_port=port,
            runtime_token_secret="s3cret", reap_interval_s=0.0, idle_action="pause",
            runtime_probe_interval_s=0.02,
        )  # fmt: skip

        async def exists(project_id: str) -> bool:
            await trio.lowlevel.checkpoint()
            return True

        await db.create_project("Bench", template_id="vite", project_id=sid)
        snapshots = Snapshots(store)
        configuration = kubernetes.client.Configuration(host=fake.url)
        async with open_kubernetes_backend(
            config, project_exists=exists, configuration=configuration
        ) as backend:
            handle = await backend.ensure(sid, project_id=sid, template_id="vite")
            async with open_runtime_client(handle.runtime_url, handle.runtime_token) as runtime:
                checkpoints = Checkpoints(runtime)
                await checkpoints.ensure()
                for n in range(turns):
                    await runtime.write_file(
                        f"/src/Page{n}.tsx", f"export const P = {n};\n".encode()
                    )
                    await checkpoints.create(f"Turn {n}")
                    await snapshots.take(sid, runtime)

            async def up_and_restored() -> float:
                start = time.perf_counter()
                handle = await backend.ensure(sid, project_id=sid, template_id="vite")
                async with open_runtime_client(handle.runtime_url, handle.runtime_token) as rt:
                    await snapshots.restore(sid, rt)
                return time.perf_counter() - start

            for _ in range(runs):
                await backend.delete(name)
                with trio.fail_after(30):
                    while fake.get(CLAIMS, NS, name) is not None:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                await trio.to_thread.run_sync(lay_template, template, workspace)
                recreate.append(await up_and_restored())
                claim = fake.get(CLAIMS, NS, name)
                await backend.pause_if_unchanged(claim)  # type: ignore[arg-type]
                with trio.fail_after(30):
                    while not is_paused(fake.get(SANDBOXES, NS, name)):  # noqa: ASYNC110
                        await trio.sleep(0.01)
                resume.append(await up_and_restored())
    print(
        f"fake pod start (ready delay) {ready_delay_s * 1000:.0f} ms, history of {turns} checkpoints"
    )
    print(
        f"re-create + restore  median {median_ms(recreate)}  runs {[round(x, 3) for x in recreate]}"
    )
    print(f"resume (volume kept) median {median_ms(resume)}  runs {[round(x, 3) for x in resume]}")
    print(f"ratio resume/re-create {statistics.median(resume) / statistics.median(recreate):.2f}x")


async def main(runs: int, turns: int, ready_delays: list[float], only: str | None) -> None:
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="amicable-snap-bench-") as tmp:
        base = Path(tmp)
        if only in (None, "turn"):
            print("== snapshot cost per turn")
            await per_turn(base, max(turns, 10) * 4)
        if only in (None, "init"):
            print("== init -> preview of a restored project")
            await restored_init(base, runs, turns)
        for delay in ready_delays if only in (None, "kube") else []:
            print("== resume vs re-create (fake Kubernetes API)")
            await resume_vs_recreate(base / f"d{delay}", runs, turns, delay)
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measurements per variant")
    parser.add_argument(
        "--turns", type=int, default=10, help="checkpoints in the project's history"
    )
    parser.add_argument("--ready-delay", type=float, action="append", default=None,
                        help="fake pod start seconds (repeatable; default 0 and 1)")  # fmt: skip
    parser.add_argument("--only", choices=("turn", "init", "kube"), help="run one benchmark")
    args = parser.parse_args()
    trio.run(main, args.runs, args.turns, args.ready_delay or [0.0, 1.0], args.only)
