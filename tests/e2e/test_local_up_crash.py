"""`amicable up` when things end badly: a `kill -9` of the agent, a leftover of an earlier
run that still holds the ports, a port someone else holds.

Real `amicable up` processes, real router, runtime (isolated as by default) and Vite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from contextlib import suppress
from pathlib import Path

import httpx
import pytest
import trio
from amicable_testing import ws_recv_until, ws_send
from amicable_testing.processes import free_port, process_alive, wait_for_exit
from trio_websocket import open_websocket_url

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
AMICABLE = str(Path(sys.executable).parent / "amicable")
CACHE = ROOT / ".cache" / "node_modules"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMICABLE_", "ANTHROPIC_"))}
    env.update(AMICABLE_WARM_POOL_SIZE="0", AMICABLE_NODE_MODULES_CACHE_DIR=str(CACHE))
    return env


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (through ``/proc/*/stat`` parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in (b"Z", b"X"):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


async def start_up(data_dir: Path, *args: str) -> tuple[trio.Process, dict[str, object]]:
    """Start `amicable up` (own session) and wait for its ready file."""
    ready = data_dir.parent / f"ready-{uuid.uuid4().hex}.json"
    argv = [AMICABLE, "up", "--data-dir", str(data_dir), "--ready-file", str(ready), *args]
    process = await trio.lowlevel.open_process(argv, env=_env(), start_new_session=True)
    with trio.fail_after(180):
        while not ready.exists():  # the child writes the file; no event to wait on
            assert process.returncode is None, "amicable up exited early"
            await trio.sleep(0.1)
    return process, json.loads(ready.read_text())


async def stop(process: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            with trio.move_on_after(60):
                await process.wait()
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def open_project(info: dict[str, object]) -> None:
    async with open_websocket_url(f"ws://127.0.0.1:{info['port']}/") as ws:
        await ws_send(
            ws,
            {
                "type": "init",
                "data": {"session_id": str(uuid.uuid4()), "permission_mode": "default"},
                "id": str(uuid.uuid4()),
                "timestamp": 1,
            },
        )
        msgs = await ws_recv_until(ws, "init", timeout_s=300)
    assert [m.data.stage for m in msgs if str(m.type) == "sandbox_status"][-1] == "ready"


async def test_kill_9_of_the_agent_alone_takes_every_child(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = ("--port", str(free_port()), "--preview-port", str(free_port()))
    process, info = await start_up(data_dir, *ports)
    try:
        await open_project(info)
        below = descendants(process.pid)
        assert int(str(info["router_pid"])) in below
        assert len(below) >= 3, "router + the sandbox (bubblewrap/runtime, Vite)"
        os.kill(process.pid, signal.SIGKILL)  # the agent only, not its group
        await process.wait()
        # Deadline, not a timing claim: the kernel delivers the parent-death signals.
        await wait_for_exit(*below, timeout_s=30)
    finally:
        with trio.CancelScope(shield=True):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    again, info = await start_up(data_dir, *ports)  # the same ports are free again
    try:
        assert str(info["port"]) == ports[1]
        assert str(info["preview_port"]) == ports[3]
        await open_project(info)
    finally:
        await stop(again)
    assert again.returncode == 0


def leave_a_leftover(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """What a crashed run whose child had no parent-death signal leaves: a process holding
    ``port``, in its own session, recorded in the run directory by an agent that is gone."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, time\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('127.0.0.1', {port})); s.listen()\n"
            "print('ok', flush=True); time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == b"ok\n"
    holder.stdout.close()
    owner = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, check=True)  # fmt: skip
    run = data_dir / "run"
    run.mkdir(parents=True)
    stat = Path(f"/proc/{holder.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    (run / f"{holder.pid}.json").write_text(
        json.dumps(
            {
                "pid": holder.pid,
                "start": int(stat[19]),
                "owner": int(owner.stdout),  # exited: the earlier agent is gone
                "owner_start": 1,
                "argv0": "amicable-preview-router",
            }
        )
    )
    return holder


async def test_a_leftover_of_an_earlier_run_is_swept_before_binding(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    preview_port = free_port()
    holder = leave_a_leftover(data_dir, preview_port)
    try:
        process, info = await start_up(data_dir, "--port", "0", "--preview-port", str(preview_port))
        try:
            assert info["preview_port"] == preview_port
            assert not process_alive(holder.pid), "the leftover was ended"
            async with httpx.AsyncClient(trust_env=False) as client:
                health = await client.get(f"http://127.0.0.1:{info['port']}/healthz")
            assert health.status_code == 200
            assert not list((data_dir / "run").glob(f"{holder.pid}.*"))
            assert (data_dir / "run" / f"{info['router_pid']}.json").is_file()
        finally:
            await stop(process)
        assert process.returncode == 0
        assert list((data_dir / "run").glob("*.json")) == [], "every child reaped"
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("flag", ["--port", "--preview-port"])
async def test_a_port_in_use_is_one_readable_line(tmp_path: Path, flag: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--preview-port" if flag == "--port" else "--port"
        argv = [AMICABLE, "up", "--data-dir", str(tmp_path / "data"), flag, str(port)]
        done = await trio.run_process(
            [*argv, other, "0"], env=_env(), capture_stdout=True, capture_stderr=True,
            check=False,
        )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert f"port {port}" in lines[0]
    assert flag in lines[0]
    assert "Trio" not in lines[0]
    assert "Traceback" not in lines[0]
