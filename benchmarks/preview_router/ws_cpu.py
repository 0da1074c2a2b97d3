"""WebSocket relay CPU: microseconds of CPU per relayed message for each process involved.

``run.py``'s WebSocket row is ping-pong from one Python client over 10 connections; on a
2-core machine the client, the router and the Node echo server compete for CPU, so the
ratio depends on how much each of them burns per message. This runs the same ping-pong
(``run.ws_bench``) direct and through one router worker and prints messages/s plus user and
system CPU per message of the client (this process), the router and the echo server, read
from ``/proc/<pid>/stat`` (and ``resource.getrusage`` for the client).

``--pythonpath DIR`` (repeatable) runs one router per source tree (e.g. an older commit from
``git archive``); the rows alternate within each round.

Usage: python benchmarks/preview_router/ws_cpu.py [--duration 5] [--repeat 3]
       [--ws-connections 10] [--pythonpath DIR ...]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # the benchmark's own helpers

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def _ticks(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) * TICK_US, int(fields[12]) * TICK_US


def _self_us() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1e6


async def measure(port: int, pids: dict[str, int], args: argparse.Namespace) -> dict[str, float]:
    """msg/s, p99 and CPU us per message for the client and every pid, over one run."""
    before = {name: _ticks(pid) for name, pid in pids.items()}
    client0 = _self_us()
    rate, p99 = await run.ws_bench(port, args.ws_connections, args.duration)
    client1 = _self_us()
    after = {name: _ticks(pid) for name, pid in pids.items()}
    messages = rate * args.duration
    row = {"msg/s": rate, "p99 ms": p99, "client us": (client1 - client0) / messages}
    for name in pids:
        user = (after[name][0] - before[name][0]) / messages
        system = (after[name][1] - before[name][1]) / messages
        row[f"{name} us"] = user + system
        if name == "router":
            row["(usr"] = user
            row["sys)"] = system
    return row


async def main(args: argparse.Namespace) -> None:
    if shutil.which("node") is None:
        sys.exit("benchmark needs node")
    trees: list[str | None] = list(args.pythonpath) or [None]
    rows: dict[str, list[dict[str, float]]] = {"direct": []}
    async with trio.open_nursery() as nursery:
        ws_port = run.free_port()
        node = await run.start(
            nursery, ["node", str(run.HERE / "ws_echo_server.js"), str(ws_port)], ws_port
        )
        targets: list[tuple[str, int, dict[str, int]]] = [("direct", ws_port, {"echo": node.pid})]
        for tree in trees:
            port = run.free_port()
            env = {
                **os.environ,
                "AMICABLE_PREVIEW_ROUTER_HOST": "127.0.0.1",
                "AMICABLE_PREVIEW_ROUTER_PORT": str(port),
                "AMICABLE_PREVIEW_UPSTREAM_TEMPLATE": f"http://127.0.0.1:{ws_port}",
            }
            if tree:
                env["PYTHONPATH"] = tree
            cmd = [sys.executable, "-m", "amicable_preview_router", "--log-level", "WARNING"]
            router = await run.start(nursery, cmd, port, env=env)
            name = f"routed {tree or 'installed'}"
            rows[name] = []
            targets.append((name, port, {"echo": node.pid, "router": router.pid}))
        for _ in range(args.repeat):
            for name, target, pids in targets:
                row = await measure(target, pids, args)
                rows[name].append(row)
                text = "  ".join(f"{k} {v:.1f}" for k, v in row.items())
                print(f"{name}: {text}  load {os.getloadavg()[0]:.1f}", flush=True)
        nursery.cancel_scope.cancel()
    print(f"Medians over {args.repeat} run(s):")
    for name, runs in rows.items():
        keys = runs[0].keys()
        text = "  ".join(f"{k} {statistics.median(r[k] for r in runs):.1f}" for k in keys)
        print(f"  {name}: {text}")
    for name, runs in rows.items():
        if name != "direct":
            ratio = statistics.median(
                r["msg/s"] / d["msg/s"] for r, d in zip(runs, rows["direct"], strict=True)
            )
            print(f"  {name} vs direct: {ratio:.2f}x (median of per-round ratios)")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="runs each (default 3)")
    parser.add_argument("--ws-connections", type=int, default=10, help="connections (default 10)")
    parser.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        help="run a router from this source dir (repeatable, alternated; default: installed)",
    )
    trio.run(main, parser.parse_args())


if __name__ == "__main__":
    cli()
