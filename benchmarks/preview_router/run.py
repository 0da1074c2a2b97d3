"""Preview router benchmark: ours next to nginx, on the same fixed upstream.

HTTP (wrk, same connections/duration, equal worker counts):
  (a) nginx configured as the seed's router (``Connection $connection_upgrade``, ``'' close``:
      a new upstream connection per request), (b) nginx with an upstream keep-alive pool,
  (c) amicable-preview-router. The upstream is nginx serving a static file.
WebSocket relay: ping-pong messages/s and p99 round trip, direct to a Node echo server vs
through our router. Two rows, the same load (``--ws-connections`` connections, one 64-byte
message in flight on each): the original one driven by a Python Trio client (``ws_bench``),
and, added later, the same ping-pong driven by a Node client (``ws_client.js``; skip with
``--no-ws-node-client``). The Python client spends more CPU per message than the echo server
and the router together, and on 2 cores it competes with both in the routed run only, so
that row mostly measures the client; the Node row leaves more of the machine to the relay.
Both are printed; the target (>= 0.5x direct) applies to each. As a reference, nginx
configured as the seed's router relays the same WebSocket ping-pong in both rows ("via
nginx"): what a C relay reaches on the same machine under the same sharing of the cores.

Fairness: every proxy under test gets the same worker count (nginx ``worker_processes`` =
``--workers``); the upstream nginx has one worker in every configuration; nothing is pinned,
so wrk, the upstream and the proxy share the cores the same way in each run. Outside load
takes CPU in fair shares and so costs the (CPU-hungrier) Python router more than nginx: run
under the shared lock, use ``--repeat`` and read the load average printed with each round.
``cpu.py`` next to this file measures the router's own CPU per request, which is steadier.

Usage: python benchmarks/preview_router/run.py [--duration 5] [--connections 50] [--workers 1]
       [--repeat 3] [--no-ws-node-client]
Prints req/s, p99 and our ratios against targets; exits 0 (numbers are for people, not CI).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
HOST = "app.preview.localhost"
STATIC = (
    b"<!doctype html><title>preview</title>" + b"x" * 575 + b"\n"
)  # ~612 bytes, like nginx's index

NGINX_COMMON = """
{user}
worker_processes {workers};
daemon off;
pid {prefix}/{name}.pid;
error_log {prefix}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/tmp_{name};
  proxy_temp_path {prefix}/tmp_{name};
  fastcgi_temp_path {prefix}/tmp_{name};
  uwsgi_temp_path {prefix}/tmp_{name};
  scgi_temp_path {prefix}/tmp_{name};
  keepalive_requests 1000000;
{body}
}}
"""

UPSTREAM_BODY = """
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{ root {prefix}/www; }}
  }}
"""

# (a) The seed guide's router, with the upstream fixed (no DNS) so only proxying is measured.
SEED_BODY = """
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    server_name ~^(?<sandbox>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\\.preview\\.localhost$;
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
    }}
  }}
"""

# (b) The same with an upstream keep-alive pool.
KEEPALIVE_BODY = """
  upstream sandbox {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ""; }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    server_name ~^(?<sandbox>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\\.preview\\.localhost$;
    location / {{
      proxy_pass http://sandbox;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def kill_group(process: trio.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with trio.move_on_after(5):
        await process.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def start(nursery: trio.Nursery, cmd: list[str], port: int, **kwargs: object) -> trio.Process:
    """Start a server in its own process group and wait until ``port`` accepts connections."""
    run = functools.partial(
        trio.run_process,
        cmd,
        start_new_session=True,
        deliver_cancel=kill_group,
        check=False,
        stdout=subprocess.DEVNULL,
        **kwargs,
    )
    process: trio.Process = await nursery.start(run)
    with trio.fail_after(30):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"{cmd[0]} exited with {process.returncode}")
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return process


def make_prefix() -> Path:
    """A temp dir for nginx (readable by its workers) holding the static upstream file."""
    prefix = Path(tempfile.mkdtemp(prefix="amicable-router-bench-"))
    prefix.chmod(0o755)
    (prefix / "www").mkdir()
    (prefix / "www" / "index.html").write_bytes(STATIC)
    return prefix


def nginx_conf(prefix: Path, name: str, body: str, workers: int) -> Path:
    (prefix / f"tmp_{name}").mkdir(exist_ok=True)
    conf = prefix / f"{name}.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        NGINX_COMMON.format(user=user, workers=workers, prefix=prefix, name=name, body=body)
    )
    return conf


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> tuple[float, float, int]:
    """(requests/s, p99 ms, errors) from ``wrk --latency`` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    errors = 0
    if n := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(n.group(1))
    if s := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in s.groups())
    return rps, p99, errors


async def wrk(port: int, args: argparse.Namespace) -> tuple[float, float, int]:
    url = f"http://127.0.0.1:{port}/index.html"
    base = ["wrk", f"-t{args.threads}", f"-c{args.connections}", "-H", f"Host: {HOST}", "--latency"]
    await trio.run_process([*base, "-d1s", url], capture_stdout=True)  # warm-up
    result = await trio.run_process([*base, f"-d{args.duration}s", url], capture_stdout=True)
    return parse_wrk(result.stdout.decode())


# --- WebSocket relay ----------------------------------------------------------------------

_MASK = b"\x01\x02\x03\x04"


def _frame(payload: bytes) -> bytes:
    masked = bytes(b ^ _MASK[i & 3] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + _MASK + masked


async def _ws_connect(port: int) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    await stream.send_all(
        (
            f"GET / HTTP/1.1\r\nHost: ws.preview.localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"no upgrade: {head[:80]!r}")
    return stream


async def ws_bench(port: int, connections: int, duration: float) -> tuple[float, float]:
    """(messages/s, p99 round trip ms) of ping-pong over ``connections`` sockets."""
    payload = b"m" * 64
    frame = _frame(payload)
    expect = 2 + len(payload)
    rtts: list[float] = []
    streams = [await _ws_connect(port) for _ in range(connections)]

    async def one(stream: trio.SocketStream) -> None:
        while True:
            t0 = trio.current_time()
            await stream.send_all(frame)
            got = 0
            while got < expect:
                got += len(await stream.receive_some(65536))
            rtts.append(trio.current_time() - t0)

    with trio.move_on_after(duration):
        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(one, stream)
    for stream in streams:
        await stream.aclose()
    rtts.sort()
    p99 = rtts[int(len(rtts) * 0.99)] * 1000 if rtts else float("nan")
    return len(rtts) / duration, p99


async def ws_bench_node(port: int, connections: int, duration: float) -> tuple[float, float]:
    """The same ping-pong from ``ws_client.js`` (Node): (messages/s, p99 round trip ms)."""
    cmd = ["node", str(HERE / "ws_client.js"), str(port), str(connections), str(duration)]
    result = await trio.run_process(cmd, capture_stdout=True)
    out = json.loads(result.stdout)
    return out["messages"] / out["seconds"], float(out["p99_ms"])


# --- main ---------------------------------------------------------------------------------


# wrk results by name; WebSocket (messages/s, p99 ms) by client and path ("python direct", ...)
Round = tuple[dict[str, tuple[float, float, int]], dict[str, tuple[float, float]]]


async def one_round(args: argparse.Namespace) -> Round:
    """Run every configuration once; wrk results by name plus the WebSocket rows."""
    prefix = make_prefix()
    nginx = shutil.which("nginx") or "nginx"
    router_cmd = [sys.executable, "-m", "amicable_preview_router", "--log-level", "WARNING"]
    results: dict[str, tuple[float, float, int]] = {}
    ws: dict[str, tuple[float, float]] = {}
    try:
        async with trio.open_nursery() as nursery:
            up = free_port()
            conf = nginx_conf(prefix, "upstream", UPSTREAM_BODY.format(port=up, prefix=prefix), 1)
            await start(nursery, [nginx, "-p", str(prefix), "-c", str(conf)], up)
            results["upstream direct"] = await wrk(up, args)

            for name, body in (
                ("nginx seed router (a)", SEED_BODY),
                ("nginx keep-alive (b)", KEEPALIVE_BODY),
            ):
                port = free_port()
                conf = nginx_conf(
                    prefix, name.split()[1], body.format(port=port, upstream=up), args.workers
                )
                async with trio.open_nursery() as inner:
                    await start(inner, [nginx, "-p", str(prefix), "-c", str(conf)], port)
                    results[name] = await wrk(port, args)
                    inner.cancel_scope.cancel()

            port = free_port()
            env = {
                **os.environ,
                "AMICABLE_PREVIEW_ROUTER_HOST": "127.0.0.1",
                "AMICABLE_PREVIEW_ROUTER_PORT": str(port),
                "AMICABLE_PREVIEW_UPSTREAM_TEMPLATE": f"http://127.0.0.1:{up}",
            }
            async with trio.open_nursery() as inner:
                await start(inner, [*router_cmd, "--workers", str(args.workers)], port, env=env)
                results["amicable-preview-router (c)"] = await wrk(port, args)

                ws_port = free_port()
                await start(inner, ["node", str(HERE / "ws_echo_server.js"), str(ws_port)], ws_port)
                env_ws = {
                    **env,
                    "AMICABLE_PREVIEW_UPSTREAM_TEMPLATE": f"http://127.0.0.1:{ws_port}",
                }
                ws_router = free_port()
                env_ws["AMICABLE_PREVIEW_ROUTER_PORT"] = str(ws_router)
                await start(
                    inner, [*router_cmd, "--workers", str(args.workers)], ws_router, env=env_ws
                )
                # Reference: nginx as the seed configures it, relaying the same WebSocket.
                ws_nginx = free_port()
                conf = nginx_conf(
                    prefix,
                    "wsrelay",
                    SEED_BODY.format(port=ws_nginx, upstream=ws_port),
                    args.workers,
                )
                await start(inner, [nginx, "-p", str(prefix), "-c", str(conf)], ws_nginx)
                n, d = args.ws_connections, args.duration
                ws["python direct"] = await ws_bench(ws_port, n, d)
                ws["python routed"] = await ws_bench(ws_router, n, d)
                ws["python nginx"] = await ws_bench(ws_nginx, n, d)
                if args.ws_node_client:
                    ws["node direct"] = await ws_bench_node(ws_port, n, d)
                    ws["node routed"] = await ws_bench_node(ws_router, n, d)
                    ws["node nginx"] = await ws_bench_node(ws_nginx, n, d)
                inner.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
    return results, ws


def _ratios(rnd: Round) -> dict[str, float]:
    results, ws = rnd
    ours = results["amicable-preview-router (c)"]
    seed = results["nginx seed router (a)"]
    keep = results["nginx keep-alive (b)"]
    ratios = {
        "(c)/(a) req/s": ours[0] / seed[0] if seed[0] else float("nan"),
        "(c)/(b) req/s": ours[0] / keep[0] if keep[0] else float("nan"),
        "(c)/(b) p99": ours[1] / keep[1] if keep[1] else float("nan"),
    }
    for client, key in (("python", "ws relay/direct"), ("node", "ws relay/direct node")):
        if f"{client} direct" in ws:
            direct, routed = ws[f"{client} direct"][0], ws[f"{client} routed"][0]
            ratios[key] = routed / direct if direct else float("nan")
            nginx = ws[f"{client} nginx"][0]
            ratios[f"{key} (nginx)"] = nginx / direct if direct else float("nan")
    return ratios


def print_round(args: argparse.Namespace, rnd: Round) -> None:
    results, ws = rnd
    print(
        f"HTTP: wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"{args.workers} worker(s) each, static {len(STATIC)}-byte upstream (nginx)"
    )
    print(f"  {'':30s} {'req/s':>10s} {'p99 ms':>8s} {'errors':>7s}")
    for name, (rps, p99, errors) in results.items():
        print(f"  {name:30s} {rps:10.0f} {p99:8.2f} {errors:7d}")
    r = _ratios(rnd)
    print(f"  throughput vs (a): {r['(c)/(a) req/s']:.2f}x  (target >= 1.0x)")
    print(f"  throughput vs (b): {r['(c)/(b) req/s']:.2f}x  (target >= 0.5x)")
    print(f"  p99 vs (b):        {r['(c)/(b) p99']:.2f}x  (target <= 2.0x)")
    print(f"WebSocket relay: {args.ws_connections} connections ping-pong, 64-byte messages")
    for client, key in (("python", "ws relay/direct"), ("node", "ws relay/direct node")):
        if key not in r:
            continue
        direct, routed = ws[f"{client} direct"], ws[f"{client} routed"]
        nginx = ws[f"{client} nginx"]
        print(f"  {client} client, direct      {direct[0]:10.0f} msg/s  p99 {direct[1]:.2f} ms")
        print(f"  {client} client, via router  {routed[0]:10.0f} msg/s  p99 {routed[1]:.2f} ms")
        print(f"  {client} client, via nginx   {nginx[0]:10.0f} msg/s  p99 {nginx[1]:.2f} ms")
        print(f"  {client} client: relay vs direct {r[key]:.2f}x  (target >= 0.5x); "
              f"nginx (reference) {r[key + ' (nginx)']:.2f}x")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    for tool in ("nginx", "wrk", "node"):
        if shutil.which(tool) is None:
            sys.exit(f"benchmark needs {tool} (make apt-deps)")
    rounds = []
    for i in range(args.repeat):
        rnd = await one_round(args)
        rounds.append(rnd)
        if args.repeat > 1:
            print(f"--- round {i + 1}/{args.repeat}, load average {os.getloadavg()[0]:.1f}")
        print_round(args, rnd)
    if args.repeat > 1:
        print(f"Medians over {args.repeat} rounds (the machine is shared and noisy):")
        ours = statistics.median(r[0]["amicable-preview-router (c)"][0] for r in rounds)
        print(f"  ours {ours:.0f} req/s")
        ratios = [_ratios(r) for r in rounds]
        targets = {
            "(c)/(a) req/s": ">= 1.0",
            "(c)/(b) req/s": ">= 0.5",
            "(c)/(b) p99": "<= 2.0",
            "ws relay/direct": ">= 0.5",
            "ws relay/direct (nginx)": "reference",
            "ws relay/direct node": ">= 0.5",
            "ws relay/direct node (nginx)": "reference",
        }
        for key, target in targets.items():
            if key not in ratios[0]:
                continue
            value = statistics.median(r[key] for r in ratios)
            print(f"  {key:28s} {value:.2f}x  ({target})")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="router workers, each (default 1)")
    parser.add_argument(
        "--ws-connections", type=int, default=10, help="WebSocket clients (default 10)"
    )
    parser.add_argument(
        "--no-ws-node-client",
        dest="ws_node_client",
        action="store_false",
        help="skip the extra WebSocket row driven by the Node client (ws_client.js)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds to run; medians printed (default 1)"
    )
    trio.run(main, parser.parse_args())


if __name__ == "__main__":
    cli()
