"""Provisioning benchmark: time from ``init`` to the first 200 from the preview URL.

Three measurements of the same template (``--template``, default ``vite``) in one run, on this
machine:

* **bare**: the stack's dev server (``vite``; for another template its registry ``[dev]
  command``) started directly in a prepared workspace, spawn -> first 200 on its page;
* **cold**: ``amicable up`` (in-process agent + router child, no warm pool): WebSocket
  ``init`` for a new session -> first 200 from the preview URL through the router;
* **warm**: the same with ``AMICABLE_WARM_POOL_SIZE=1`` after the pool is filled.

Each measurement starts with the system at rest: both agents have made what they prepare in
the background (the warm sandbox; the spare workspace a cold start takes, see
``amicable_agent.sandboxes.local.spares``). The variants run interleaved, one round at a time, so
each sees about the same background load on this shared machine (before: all bare runs,
then all cold, then all warm). ``bare`` reuses one workspace, so from its second run on Vite
finds its deps cache (``node_modules/.vite``), which cold workspaces do not have; measured
separately, that cache does not change the time to the first 200 of ``/``.

Prints medians and the ratios against *bare* (targets: warm <= 0.2x, cold <= 1.5x), then
what one sandbox costs: memory (PSS of every process the agents started, sandboxes and
their pasta, router excluded, per sandbox; and what the sandboxes' memory cgroups count)
and disk (its directory). ``--isolation none`` measures sandboxes without bubblewrap.
``timeline.py`` prints where the time of one cold start goes.
Run: ``.venv/bin/python benchmarks/provisioning/run.py [--runs N] [--isolation auto|none]
[--template ID]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import httpx
import trio
from amicable_agent.cli import UpOptions, up
from amicable_agent.config import AgentConfig
from amicable_agent.sandboxes.local.backend import free_port
from amicable_agent.sandboxes.local.watchdog import disk_usage
from amicable_templates import get_template
from amicable_testing import ws_recv_until, ws_send
from trio_websocket import open_websocket_url

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CACHE = ROOT / ".cache" / "node_modules"


async def first_200(
    url: str, headers: dict[str, str] | None = None, timeout_s: float = 300
) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        with trio.fail_after(timeout_s):
            while True:
                try:
                    r = await client.get(url, headers=headers)
                    if r.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.02)


async def bare_vite(workspace: Path) -> float:
    port = free_port()
    vite = workspace / "node_modules" / ".bin" / "vite"
    argv = [str(vite), "--host", "127.0.0.1", "--port", str(port), "--strictPort"]
    env = dict(os.environ, BROWSER="none")
    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        proc: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                argv,
                cwd=str(workspace),
                env=env,
                check=False,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
            )
        )
        await first_200(f"http://127.0.0.1:{port}/")
        elapsed = time.perf_counter() - start
        os.killpg(proc.pid, signal.SIGKILL)
        nursery.cancel_scope.cancel()
    return elapsed


async def bare_stack(workspace: Path, template_id: str) -> float:
    """The template's own dev command (what the sandbox runs), spawn -> first 200."""
    template = get_template(template_id)
    port = free_port()
    path = f"{workspace}/node_modules/.bin:{os.environ.get('PATH', '')}"
    env = dict(
        os.environ,
        BROWSER="none",
        PATH=path,
        AMICABLE_PREVIEW_HOST="127.0.0.1",
        AMICABLE_PREVIEW_PORT=str(port),
    )
    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        proc: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                ["sh", "-c", template.dev_command],
                cwd=str(workspace),
                env=env,
                check=False,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        await first_200(f"http://127.0.0.1:{port}{template.dev_path}")
        elapsed = time.perf_counter() - start
        os.killpg(proc.pid, signal.SIGKILL)
        nursery.cancel_scope.cancel()
    return elapsed


async def wait_prepared(client: httpx.AsyncClient, port: int | None, kind: str) -> None:
    health = f"http://127.0.0.1:{port}/healthz"
    with trio.fail_after(300):
        # Another process's state: poll its health endpoint.
        while (await client.get(health)).json()["sandboxes"].get(kind, 1) < 1:  # noqa: ASYNC110
            await trio.sleep(0.2)


def up_options(data_dir: Path, warm: bool, isolation: str, template_id: str) -> UpOptions:
    config = attrs.evolve(
        AgentConfig.from_env({}),
        port=0,
        internal_port=0,
        data_dir=data_dir,
        local_isolation=isolation,
        warm_pool_size=1 if warm else 0,
        template_id=template_id,
        warm_pool_templates=(template_id,),
        node_modules_cache_dir=CACHE,
        runtime_command=(str(BIN / "amicable-sandbox-runtime"),),
    )
    return UpOptions(
        config=config,
        preview_port=0,
        router_command=(str(BIN / "amicable-preview-router"),),
    )


async def init_to_200(port: int | None, path: str = "/") -> tuple[float, float]:
    """A WebSocket ``init`` for a new session -> first 200 of its preview URL.

    Returns:
        ``(init -> first 200, init -> init reply)``, in seconds.
    """
    sid = str(uuid.uuid4())
    start = time.perf_counter()
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        init = (await ws_recv_until(ws, "init", timeout_s=300))[-1]
        replied = time.perf_counter() - start
        # as the editor does: the session stays open while the preview loads (closing it
        # first would add the close handshake, which no user waits for)
        preview = urlsplit(init.data.url)
        await first_200(f"http://127.0.0.1:{preview.port}{path}", {"Host": preview.netloc})
        return time.perf_counter() - start, replied


async def at_rest(client: httpx.AsyncClient, cold: int | None, warm: int | None) -> None:
    """Wait until both agents made what they prepare in the background (the spare
    workspace, the warm sandbox), then a moment for their dev servers to settle."""
    await wait_prepared(client, cold, "spare")
    await wait_prepared(client, warm, "warm")
    await wait_prepared(client, warm, "spare")
    await trio.sleep(1)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def sandboxes_pss() -> int:
    """PSS of every process started below this one except the preview routers."""
    total = 0
    routers: set[int] = set()
    for pid in _descendants(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"amicable-preview-router" in cmdline:
            routers.add(pid)
            routers.update(_descendants(pid))
    for pid in _descendants(os.getpid()):
        if pid not in routers:
            total += _pss(pid)
    return total


def sandbox_dirs(data_dirs: list[Path]) -> list[Path]:
    """Every sandbox directory (running, warm, stopped) and spare workspace on disk."""
    found = []
    for data in data_dirs:
        root = data / "sandboxes"
        found += [p for p in root.iterdir() if p.name.startswith(("amicable-", "pool-"))
                  and not p.is_symlink()]  # fmt: skip
        if (root / ".spares").is_dir():
            found += list((root / ".spares").iterdir())
    return found


async def report_cost(
    client: httpx.AsyncClient, ports: list[int | None], data_dirs: list[Path]
) -> None:
    """Per-sandbox memory (from /proc and the agents' /healthz) and disk (walked here)."""
    count = cgroup_memory = 0
    for port in ports:
        stats = (await client.get(f"http://127.0.0.1:{port}/healthz")).json()["sandboxes"]
        count += stats["running"] + stats["warm"]
        cgroup_memory += stats.get("memory_bytes", 0)
    pss = await trio.to_thread.run_sync(sandboxes_pss)
    dirs = await trio.to_thread.run_sync(sandbox_dirs, data_dirs)
    sizes = [await trio.to_thread.run_sync(disk_usage, d) for d in dirs]
    mib = 1024 * 1024
    print(f"sandboxes running    {count}")
    print(f"memory per sandbox   {pss / count / mib:8.0f} MiB PSS (processes incl. pasta)"
          f"; cgroup count {cgroup_memory / count / mib:.0f} MiB (0 = no memory cgroup)")  # fmt: skip
    print(f"disk per sandbox     {statistics.median(sizes) / mib:8.0f} MiB median of "
          f"{len(sizes)} directories (workspaces and spares)")  # fmt: skip


async def main(runs: int, isolation: str, template_id: str) -> None:
    load = [f"{os.getloadavg()[0]:.2f}"]
    bare: list[float] = []
    cold: list[float] = []
    warm: list[float] = []
    replies: dict[str, list[float]] = {"cold": [], "warm": []}
    path = get_template(template_id).dev_path
    with tempfile.TemporaryDirectory(prefix="amicable-bench-") as tmp:
        base = Path(tmp)
        workspace = base / "bare" / "workspace"
        await trio.run_process(
            [
                str(BIN / "amicable-sandbox-runtime"),
                "init-workspace",
                str(workspace),
                "--template",
                template_id,
                "--cache-dir",
                str(CACHE),
            ],
            capture_stdout=True,
        )
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as client:
            cold_options = up_options(base / "cold", False, isolation, template_id)
            warm_options = up_options(base / "warm", True, isolation, template_id)
            cold_port = urlsplit(await nursery.start(up, cold_options, None))
            warm_port = urlsplit(await nursery.start(up, warm_options, None))
            # Interleaved rounds: the machine is shared, so each variant of a round sees
            # about the same background load.
            for _ in range(runs):
                await at_rest(client, cold_port.port, warm_port.port)
                if template_id == "vite":
                    bare.append(await bare_vite(workspace))
                else:
                    bare.append(await bare_stack(workspace, template_id))
                await at_rest(client, cold_port.port, warm_port.port)
                total, replied = await init_to_200(cold_port.port, path)
                cold.append(total)
                replies["cold"].append(replied)
                await at_rest(client, cold_port.port, warm_port.port)
                total, replied = await init_to_200(warm_port.port, path)
                warm.append(total)
                replies["warm"].append(replied)
            await at_rest(client, cold_port.port, warm_port.port)
            await report_cost(
                client, [cold_port.port, warm_port.port], [base / "cold", base / "warm"]
            )
            nursery.cancel_scope.cancel()
    load.append(f"{os.getloadavg()[0]:.2f}")
    b, c, w = (statistics.median(x) for x in (bare, cold, warm))
    print(f"template {template_id}")
    print(f"bare dev-server start median {b * 1000:8.0f} ms  runs {[round(x, 2) for x in bare]}")
    print(f"init->200 cold       median {c * 1000:8.0f} ms  runs {[round(x, 2) for x in cold]}")
    print(f"init->200 warm pool  median {w * 1000:8.0f} ms  runs {[round(x, 2) for x in warm]}")
    for kind, times in replies.items():
        print(f"  of which {kind} init reply  median {statistics.median(times) * 1000:5.0f} ms"
              f"  runs {[round(x, 2) for x in times]}")  # fmt: skip
    print(f"ratio cold/bare {c / b:.2f}x (target <= 1.5x)")
    print(f"ratio warm/bare {w / b:.2f}x (target <= 0.2x)")
    print(f"load average (1 min) before/after: {' / '.join(load)}")
    print(f"isolation: {isolation}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="measurements per variant")
    parser.add_argument("--isolation", default="auto", choices=("auto", "bwrap", "none"))
    parser.add_argument("--template", default="vite", help="template id (amicable_templates)")
    args = parser.parse_args()
    trio.run(main, args.runs, args.isolation, args.template)
