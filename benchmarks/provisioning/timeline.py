"""Per-stage timeline of one cold provisioning (``init`` -> first 200 through the router).

Runs ``amicable up`` (in-process agent, router child, no warm pool) like ``run.py`` and sends
one WebSocket ``init`` for a new session. A watcher polls every ~10 ms and stamps, relative
to the moment ``init`` was sent:

* the ``sandbox_status`` stages and the ``init`` reply as the client receives them;
* files appearing in the sandbox directory (workspace, ``package.json``, ``node_modules``,
  the runtime's ready file, ``preview.log``);
* every process working under the sandbox directory (init-workspace, ``cp``, the runtime,
  ``npm``/``sh``/``node`` of the dev server): its start (kernel start time, 10 ms ticks) and
  when it was last seen (its end, to ~10 ms);
* the dev server's port accepting a TCP connection, its first 200 on ``/`` directly, and the
  first 200 of the preview URL through the router.

Run: ``flock /work/team/bench.lock .venv/bin/python benchmarks/provisioning/timeline.py``.
The watcher costs a little CPU itself (a /proc scan per tick), so totals read slightly
higher than ``run.py``'s.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import httpx
import trio
from amicable_agent.cli import UpOptions, up
from amicable_agent.config import AgentConfig
from amicable_agent.sandboxes.local.backend import LocalBackendConfig
from amicable_protocol import decode_server_message
from amicable_templates import get_template
from amicable_testing import ws_send
from trio_websocket import open_websocket_url

sys.path.insert(0, str(Path(__file__).parent))
from run import wait_prepared

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CACHE = ROOT / ".cache" / "node_modules"
TICK_S = 0.01
CLK_TCK = os.sysconf("SC_CLK_TCK")


@attrs.define
class Proc:
    """A process seen under the sandbox directory."""

    pid: int
    name: str
    start: float
    last_seen: float
    gone: bool = False


@attrs.define
class Timeline:
    """Events relative to ``t0`` (perf_counter seconds)."""

    t0: float
    boot0: float
    events: dict[str, float] = attrs.field(factory=dict)
    procs: dict[int, Proc] = attrs.field(factory=dict)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def mark(self, name: str, at: float | None = None) -> None:
        self.events.setdefault(name, self.now() if at is None else at)


def _describe(argv: list[str]) -> str:
    text = " ".join(argv)
    for needle, label in (  # the most specific first (bwrap's argv names everything)
        ("bwrap", "bwrap"),
        ("pasta", "pasta"),
        ("init-workspace", "init-workspace"),
        ("amicable-sandbox-runtime", "runtime"),
        ("cp -a", "cp node_modules"),
        ("npm run dev", "sh -c npm run dev"),
        ("esbuild", "esbuild"),
        ("vite", "node vite"),
        ("npm", "npm"),
    ):
        if needle in text:
            return label
    return Path(argv[0]).name if argv else "?"


def scan(tl: Timeline, root: Path) -> None:
    """One watcher tick: files and processes of the sandboxes under ``root``."""
    now = tl.now()
    for sandbox in root.glob("amicable-*"):
        tl.mark("sandbox dir created", now)
        ws = sandbox / "workspace"
        for rel, name in (
            ("workspace/package.json", "template copied (package.json)"),
            ("workspace/node_modules", "node_modules in place"),
            ("workspace/node_modules/.vite", "node_modules/.vite exists"),
            ("run/runtime.ready.json", "runtime listening (ready file)"),
            ("run/preview.log", "preview.log created"),
        ):
            if (sandbox / rel).exists():
                tl.mark(name, now)
        del ws
    seen = set()
    prefix = str(root.resolve())
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            argv_l = [a for a in argv.split("\0") if a]
            # inside bubblewrap a process's cwd and paths are the sandbox's own (/app): those
            # are known by their command lines (nothing else runs them during the timeline)
            if (
                not cwd.startswith(prefix)
                and prefix not in argv
                and not any(mark in argv for mark in SANDBOX_COMMANDS)
            ):
                continue
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        if fields[0] == b"Z":
            continue
        seen.add(pid)
        if pid not in tl.procs:
            start = int(fields[19]) / CLK_TCK - tl.boot0
            tl.procs[pid] = Proc(pid, _describe(argv_l), start, now)
        tl.procs[pid].last_seen = now
    for proc in tl.procs.values():
        if proc.pid not in seen:
            proc.gone = True


#: Command-line fragments of the processes a sandbox runs (seen from outside its namespaces).
SANDBOX_COMMANDS = ("amicable-sandbox-runtime", "/.bin/", "bwrap", "pasta")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.05)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def preview_port(tl: Timeline) -> int | None:
    for proc in tl.procs.values():
        if proc.name == "runtime" and not proc.gone:
            try:
                env = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for item in env:
                if item.startswith(b"AMICABLE_PREVIEW_PORT="):
                    return int(item.split(b"=", 1)[1])
    return None


async def watch(tl: Timeline, root: Path, done: trio.Event) -> None:
    port: int | None = None
    async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
        while not done.is_set():
            await trio.to_thread.run_sync(scan, tl, root)
            port = port or preview_port(tl)
            if port and "dev server port open" not in tl.events and port_open(port):
                tl.mark("dev server port open")
            if "dev server port open" in tl.events and "dev server 200 (direct)" not in tl.events:
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200:
                        tl.mark("dev server 200 (direct)")
                except httpx.HTTPError:
                    pass
            await trio.sleep(TICK_S)


def without_spares() -> None:
    """Make the agent's local backend keep no spare workspace (the path taken when two cold
    starts come within seconds): patch the config mapping, as the agent has no setting."""
    original = LocalBackendConfig.from_agent_config

    def patched(config: AgentConfig) -> LocalBackendConfig:
        return attrs.evolve(original(config), spare_workspaces=0)

    LocalBackendConfig.from_agent_config = patched  # type: ignore[method-assign]


async def one_cold_start(data_dir: Path, spare: bool, template_id: str) -> Timeline:
    template = get_template(template_id)
    config = attrs.evolve(
        AgentConfig.from_env({}),
        port=0,
        internal_port=0,
        data_dir=data_dir,
        warm_pool_size=0,
        template_id=template_id,
        warm_pool_templates=(template_id,),
        node_modules_cache_dir=CACHE,
        runtime_command=(str(BIN / "amicable-sandbox-runtime"),),
    )
    options = UpOptions(
        config=config, preview_port=0, router_command=(str(BIN / "amicable-preview-router"),)
    )
    async with trio.open_nursery() as nursery:
        editor_url = await nursery.start(up, options, None)
        port = urlsplit(editor_url).port
        async with httpx.AsyncClient(trust_env=False) as client:
            if spare:
                await wait_prepared(client, port, "spare")
        tl = Timeline(time.perf_counter(), time.clock_gettime(time.CLOCK_BOOTTIME))
        done = trio.Event()
        nursery.start_soon(watch, tl, data_dir / "sandboxes", done)
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await ws_send(ws, {"type": "init", "data": {"session_id": str(uuid.uuid4())}})
            while True:
                with trio.fail_after(300):
                    msg = decode_server_message(await ws.get_message())
                if msg.type == "sandbox_status":
                    tl.mark(f"ws sandbox_status {msg.data.stage}")
                else:
                    tl.mark("ws init reply")
                    break
        preview = urlsplit(msg.data.url)
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            with trio.fail_after(300):
                while True:
                    try:
                        r = await client.get(
                            f"http://127.0.0.1:{preview.port}{template.dev_path}",
                            headers={"Host": preview.netloc},
                        )
                        if r.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await trio.sleep(0.01)
        tl.mark("first 200 through the router")
        await trio.sleep(0.3)  # let the watcher see the dev server's own 200
        done.set()
        nursery.cancel_scope.cancel()
    return tl


def report(tl: Timeline) -> None:
    rows = [(at, name) for name, at in tl.events.items()]
    for proc in tl.procs.values():
        end = f"-> {proc.last_seen * 1000:6.0f} ms" if proc.gone else "(still running)"
        rows.append((proc.start, f"process {proc.name} [{proc.pid}] {end}"))
    for at, name in sorted(rows):
        print(f"{at * 1000:7.0f} ms  {name}")


async def main(data_dir: Path | None, spare: bool, template_id: str) -> None:
    if data_dir is not None:
        report(await one_cold_start(data_dir, spare, template_id))
        return
    with tempfile.TemporaryDirectory(prefix="amicable-timeline-") as tmp:
        report(await one_cold_start(Path(tmp), spare, template_id))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="keep the sandbox here (default: temp)")
    parser.add_argument(
        "--no-spare", action="store_true", help="no spare workspace: create it while starting"
    )
    parser.add_argument("--template", default="vite", help="template id (amicable_templates)")
    args = parser.parse_args()
    if args.no_spare:
        without_spares()
    trio.run(main, args.data_dir, not args.no_spare, args.template)
