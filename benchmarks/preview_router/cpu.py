"""Router CPU per proxied request: user and system microseconds, read from /proc under wrk.

Throughput ratios on a shared 2-core machine swing with whatever else runs; the CPU the
router spends per request is steadier and is what optimisation work changes. This starts the
same static nginx upstream as ``run.py``, one router worker, runs wrk (after a 1 s warm-up)
and divides the router process's utime/stime by the requests served. ``--pythonpath DIR``
runs the router from another source tree (e.g. an older commit from ``git archive``) for
an A/B comparison; rounds alternate when several trees are given.

Usage: python benchmarks/preview_router/cpu.py [--duration 5] [--repeat 3]
       [--pythonpath DIR ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # the benchmark's own helpers: nginx upstream, wrk, process groups


def _cpu_ticks(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


async def one(args: argparse.Namespace, up: int, pythonpath: str | None) -> tuple[float, ...]:
    """(req/s, user us/req, sys us/req) of one router process under one wrk run."""
    port = run.free_port()
    env = {
        **os.environ,
        "AMICABLE_PREVIEW_ROUTER_HOST": "127.0.0.1",
        "AMICABLE_PREVIEW_ROUTER_PORT": str(port),
        "AMICABLE_PREVIEW_UPSTREAM_TEMPLATE": f"http://127.0.0.1:{up}",
    }
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-m", "amicable_preview_router", "--log-level", "WARNING"]
    async with trio.open_nursery() as nursery:
        process = await run.start(nursery, cmd, port, env=env)
        url = f"http://127.0.0.1:{port}/index.html"
        base = ["wrk", "-t1", f"-c{args.connections}", "-H", f"Host: {run.HOST}", "--latency"]
        await trio.run_process([*base, "-d1s", url], capture_stdout=True)  # warm-up
        user0, sys0 = _cpu_ticks(process.pid)
        result = await trio.run_process([*base, f"-d{args.duration}s", url], capture_stdout=True)
        user1, sys1 = _cpu_ticks(process.pid)
        nursery.cancel_scope.cancel()
    rps, _, _ = run.parse_wrk(result.stdout.decode())
    requests = rps * args.duration
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    return rps, (user1 - user0) * tick_us / requests, (sys1 - sys0) * tick_us / requests


async def main(args: argparse.Namespace) -> None:
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"benchmark needs {tool} (make apt-deps)")
    trees: list[str | None] = list(args.pythonpath) or [None]
    results: dict[str | None, list[tuple[float, ...]]] = {tree: [] for tree in trees}
    prefix = run.make_prefix()
    try:
        async with trio.open_nursery() as nursery:
            up = run.free_port()
            body = run.UPSTREAM_BODY.format(port=up, prefix=prefix)
            conf = run.nginx_conf(prefix, "upstream", body, 1)
            await run.start(nursery, ["nginx", "-p", str(prefix), "-c", str(conf)], up)
            for _ in range(args.repeat):
                for tree in trees:
                    rps, user, system = await one(args, up, tree)
                    results[tree].append((rps, user, system))
                    print(
                        f"{tree or 'installed'}: {rps:.0f} req/s, user {user:.1f} us/req, "
                        f"sys {system:.1f} us/req, load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
    print(f"Medians over {args.repeat} run(s):")
    for tree, rows in results.items():
        rps, user, system = (statistics.median(col) for col in zip(*rows, strict=True))
        print(f"  {tree or 'installed'}: {rps:.0f} req/s, user {user:.1f} us, sys {system:.1f} us")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tree (default 3)")
    parser.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        help="run the router from this source dir (repeatable; default: the installed one)",
    )
    trio.run(main, parser.parse_args())


if __name__ == "__main__":
    cli()
