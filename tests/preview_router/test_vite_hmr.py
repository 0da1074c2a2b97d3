"""Vite HMR through the router: a real Vite dev server, a real edit, the update on the socket.

The fixture project lives in ``vite_app/``; its node_modules are installed once with ``npm ci``
into ``.cache/preview-router-vite/<lockfile hash>/`` and symlinked into a temp copy per test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
from amicable_protocol.preview import PreviewResolution
from trio_websocket import wrap_client_stream

from .conftest import BASE, RouterUnderTest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.slow

APP_DIR = Path(__file__).parent / "vite_app"
REPO = Path(__file__).resolve().parents[2]
HOST = f"vite.{BASE}"


async def _node_modules() -> Path:
    lock = (APP_DIR / "package-lock.json").read_bytes()
    cache = REPO / ".cache" / "preview-router-vite" / hashlib.sha256(lock).hexdigest()[:16]
    if not (cache / "node_modules" / "vite").is_dir():
        staging = cache.with_name(cache.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(APP_DIR / name, staging / name)
        with trio.fail_after(600):
            await trio.run_process(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=staging,
                capture_stdout=True,
                capture_stderr=True,
            )
        try:
            staging.rename(cache)
        except OSError:  # another run won the race
            shutil.rmtree(staging, ignore_errors=True)
    return cache / "node_modules"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _kill_group(process: trio.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


@pytest.fixture
async def vite(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[tuple[int, Path]]:
    node_modules = await _node_modules()
    app = tmp_path / "app"
    shutil.copytree(APP_DIR, app, ignore=shutil.ignore_patterns("node_modules"))
    (app / "node_modules").symlink_to(node_modules)
    port = _free_port()
    env = {**os.environ, "VITE_CACHE_DIR": str(tmp_path / "vite-cache"), "NO_COLOR": "1"}
    cmd = [
        "node",
        "node_modules/vite/bin/vite.js",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--strictPort",
    ]

    async def run(task_status: trio.TaskStatus[trio.Process]) -> None:
        await trio.run_process(
            cmd,
            cwd=app,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            deliver_cancel=_kill_group,
            check=False,
            task_status=task_status,
        )

    process: trio.Process = await nursery.start(run)
    assert process.stdout is not None
    output = b""
    with trio.fail_after(60):
        while b"ready in" not in output:
            chunk = await process.stdout.receive_some(4096)
            assert chunk, f"vite exited: {output.decode(errors='replace')}"
            output += chunk

    async def drain() -> None:
        assert process.stdout is not None
        while await process.stdout.receive_some(4096):
            pass

    nursery.start_soon(drain)
    yield port, app
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def test_hmr_update_arrives_through_the_router(
    router: RouterUnderTest, vite: tuple[int, Path]
) -> None:
    vite_port, app = vite
    router.resolver.answers[HOST] = PreviewResolution("vite", f"http://127.0.0.1:{vite_port}")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{router.port}", headers={"Host": HOST}, timeout=30
    ) as client:
        page = await client.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert "/@vite/client" in page.text
        vite_client = await client.get("/@vite/client")
        token = re.search(r'wsToken = "([^"]+)"', vite_client.text)
        assert token, "no HMR token in /@vite/client"
        # Load main.js so it is in Vite's module graph (as the browser would).
        assert "version 1" in (await client.get("/main.js")).text

    async with trio.open_nursery() as nursery:
        stream = await trio.open_tcp_stream("127.0.0.1", router.port)
        ws = await wrap_client_stream(
            nursery, stream, HOST, f"/?token={token.group(1)}", subprotocols=["vite-hmr"]
        )
        assert ws.subprotocol == "vite-hmr"
        with trio.fail_after(30):
            assert json.loads(await ws.get_message())["type"] == "connected"
            main = app / "main.js"
            main.write_text(main.read_text().replace("version 1", "version 2"))
            while True:
                message = json.loads(await ws.get_message())
                if message["type"] in ("update", "full-reload"):
                    break
        assert message["type"] == "update", message
        assert any(u["path"] == "/main.js" for u in message["updates"]), message
        await ws.aclose()
        await stream.aclose()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{router.port}", headers={"Host": HOST}, timeout=30
    ) as client:
        assert "version 2" in (await client.get("/main.js")).text
