"""`amicable up` end to end: real agent, real preview router, real runtime, real Vite.

INIT over a real WebSocket -> the `url` -> GET through the router returns the Vite page;
files written through the API survive an `amicable up` restart; after Ctrl-C nothing that
belonged to it (router, runtime, Vite) is left running.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from amicable_testing import ws_recv_until, ws_send
from trio_websocket import open_websocket_url

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
AMICABLE = str(Path(sys.executable).parent / "amicable")
CACHE = ROOT / ".cache" / "node_modules"


def processes_under(path: Path) -> list[int]:
    """Live, non-zombie processes whose cwd or command line mentions ``path``."""
    found = []
    needle = str(path)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            if "\nState:\tZ" in status:
                continue
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(needle) or needle in cmdline:
            found.append(int(entry.name))
    return found


def router_alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@asynccontextmanager
async def amicable_up(
    data_dir: Path, stop_signal: int = signal.SIGINT
) -> AsyncIterator[dict[str, object]]:
    ready = data_dir.parent / f"ready-{uuid.uuid4().hex}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMICABLE_", "ANTHROPIC_"))}
    env.update(
        AMICABLE_WARM_POOL_SIZE="0",
        AMICABLE_NODE_MODULES_CACHE_DIR=str(CACHE),
    )
    argv = [AMICABLE, "up", "--data-dir", str(data_dir), "--port", "0", "--preview-port", "0"]
    argv += ["--ready-file", str(ready)]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(trio.run_process, argv, env=env, check=False, start_new_session=True)
        )
        try:
            with trio.fail_after(180):
                # The child writes the file; there is no event to wait on.
                while not ready.exists():
                    assert process.returncode is None, "amicable up exited early"
                    await trio.sleep(0.1)
            info = json.loads(ready.read_text())
            yield info
        finally:
            with trio.CancelScope(shield=True):
                process.send_signal(stop_signal)
                with trio.move_on_after(60):
                    await process.wait()
                if process.returncode is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()
                    pytest.fail(f"amicable up did not stop on signal {stop_signal}")
        assert process.returncode == 0


async def init(info: dict[str, object], session_id: str) -> dict[str, object]:
    async with open_websocket_url(f"ws://127.0.0.1:{info['port']}/") as ws:
        await ws_send(
            ws,
            {
                "type": "init",
                "data": {"session_id": session_id, "permission_mode": "default"},
                "id": str(uuid.uuid4()),
                "timestamp": 1,
            },
        )
        msgs = await ws_recv_until(ws, "init", timeout_s=300)
    stages = [m.data.stage for m in msgs if str(m.type) == "sandbox_status"]
    assert stages[-1] == "ready"
    reply = msgs[-1].data
    return {"url": reply.url, "exists": reply.exists, "sandbox_id": reply.sandbox_id}


async def test_init_preview_through_router_resume_and_no_orphans(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    sid = str(uuid.uuid4())
    async with amicable_up(data_dir) as info:
        reply = await init(info, sid)
        assert reply["exists"] is False
        url = urlsplit(str(reply["url"]))
        assert url.hostname is not None
        assert url.hostname.endswith(".preview.localhost")
        assert url.port == info["preview_port"]
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            page = await client.get(f"http://127.0.0.1:{url.port}/", headers={"Host": url.netloc})
            assert page.status_code == 200
            assert "/@vite/client" in page.text
            unknown = await client.get(
                f"http://127.0.0.1:{url.port}/",
                headers={"Host": f"nobody.preview.localhost:{url.port}"},
            )
            assert unknown.status_code == 404
            api = f"http://127.0.0.1:{info['port']}/api/sandbox/{sid}"
            wrote = await client.put(
                api + "/write", json={"path": "/src/keep.txt", "content": "survives"}
            )
            assert wrote.status_code == 200, wrote.text
            editor = await client.get(f"http://127.0.0.1:{info['port']}/config.js")
            assert editor.status_code == 200
        assert processes_under(data_dir), "the sandbox should be running"

    assert processes_under(data_dir) == []
    assert not router_alive(int(str(info["router_pid"])))

    async with amicable_up(data_dir) as info:
        again = await init(info, sid)
        assert again["exists"] is True
        assert again["sandbox_id"] == reply["sandbox_id"]
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            read = await client.get(
                f"http://127.0.0.1:{info['port']}/api/sandbox/{sid}/read",
                params={"path": "src/keep.txt"},
            )
        assert read.status_code == 200
        assert read.json()["content"] == "survives"
    assert processes_under(data_dir) == []


async def test_sigterm_stops_router_and_agent(tmp_path: Path) -> None:
    async with amicable_up(tmp_path / "data", signal.SIGTERM) as info:
        async with httpx.AsyncClient(trust_env=False) as client:
            health = await client.get(f"http://127.0.0.1:{info['port']}/healthz")
        assert health.status_code == 200
        assert router_alive(int(str(info["router_pid"])))
    assert not router_alive(int(str(info["router_pid"])))
