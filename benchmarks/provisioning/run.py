"""Provisioning benchmark: time from ``init`` to the first 200 from the preview URL.

Three measurements of the same Vite template in one run, on this machine:

* **bare**: ``vite`` started directly in a prepared workspace, spawn -> first 200 on ``/``;
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

Prints medians and the ratios against *bare* (targets: warm <= 0.2x, cold <= 1.5x).
``timeline.py`` prints where the time of one cold start goes.
Run: ``.venv/bin/python benchmarks/provisioning/run.py [--runs N]``.
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


async def wait_prepared(client: httpx.AsyncClient, port: int | None, kind: str) -> None:
    health = f"http://127.0.0.1:{port}/healthz"
    with trio.fail_after(300):
        # Another process's state: poll its health endpoint.
        while (await client.get(health)).json()["sandboxes"].get(kind, 1) < 1:  # noqa: ASYNC110
            await trio.sleep(0.2)


def up_options(data_dir: Path, warm: bool) -> UpOptions:
    config = attrs.evolve(
        AgentConfig.from_env({}),
        port=0,
        internal_port=0,
        data_dir=data_dir,
        warm_pool_size=1 if warm else 0,
        node_modules_cache_dir=CACHE,
        runtime_command=(str(BIN / "amicable-sandbox-runtime"),),
    )
    return UpOptions(
        config=config,
        preview_port=0,
        router_command=(str(BIN / "amicable-preview-router"),),
    )


async def init_to_200(port: int | None) -> float:
    """A WebSocket ``init`` for a new session -> first 200 of its preview URL."""
    sid = str(uuid.uuid4())
    start = time.perf_counter()
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        init = (await ws_recv_until(ws, "init", timeout_s=300))[-1]
    preview = urlsplit(init.data.url)
    await first_200(f"http://127.0.0.1:{preview.port}/", {"Host": preview.netloc})
    return time.perf_counter() - start


async def at_rest(client: httpx.AsyncClient, cold: int | None, warm: int | None) -> None:
    """Wait until both agents made what they prepare in the background (the spare
    workspace, the warm sandbox), then a moment for their dev servers to settle."""
    await wait_prepared(client, cold, "spare")
    await wait_prepared(client, warm, "warm")
    await wait_prepared(client, warm, "spare")
    await trio.sleep(1)


async def main(runs: int) -> None:
    load = [f"{os.getloadavg()[0]:.2f}"]
    bare: list[float] = []
    cold: list[float] = []
    warm: list[float] = []
    with tempfile.TemporaryDirectory(prefix="amicable-bench-") as tmp:
        base = Path(tmp)
        workspace = base / "bare" / "workspace"
        await trio.run_process(
            [
                str(BIN / "amicable-sandbox-runtime"),
                "init-workspace",
                str(workspace),
                "--cache-dir",
                str(CACHE),
            ],
            capture_stdout=True,
        )
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as client:
            cold_port = urlsplit(await nursery.start(up, up_options(base / "cold", False), None))
            warm_port = urlsplit(await nursery.start(up, up_options(base / "warm", True), None))
            # Interleaved rounds: the machine is shared, so each variant of a round sees
            # about the same background load.
            for _ in range(runs):
                await at_rest(client, cold_port.port, warm_port.port)
                bare.append(await bare_vite(workspace))
                await at_rest(client, cold_port.port, warm_port.port)
                cold.append(await init_to_200(cold_port.port))
                await at_rest(client, cold_port.port, warm_port.port)
                warm.append(await init_to_200(warm_port.port))
            nursery.cancel_scope.cancel()
    load.append(f"{os.getloadavg()[0]:.2f}")
    b, c, w = (statistics.median(x) for x in (bare, cold, warm))
    print(f"bare vite start      median {b * 1000:8.0f} ms  runs {[round(x, 2) for x in bare]}")
    print(f"init->200 cold       median {c * 1000:8.0f} ms  runs {[round(x, 2) for x in cold]}")
    print(f"init->200 warm pool  median {w * 1000:8.0f} ms  runs {[round(x, 2) for x in warm]}")
    print(f"ratio cold/bare {c / b:.2f}x (target <= 1.5x)")
    print(f"ratio warm/bare {w / b:.2f}x (target <= 0.2x)")
    print(f"load average (1 min) before/after: {' / '.join(load)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="measurements per variant")
    trio.run(main, parser.parse_args().runs)
