"""The ``amicable-preview-router`` command: --help, --ready-file and --workers (SO_REUSEPORT)."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from .conftest import H11Upstream

CMD = [sys.executable, "-m", "amicable_preview_router"]


async def test_help_describes_the_options() -> None:
    result = await trio.run_process([*CMD, "--help"], capture_stdout=True)
    out = result.stdout.decode()
    for option in ("--workers", "--ready-file", "--port", "--host"):
        assert option in out


async def test_invalid_environment_exits_with_a_message() -> None:
    env = {**os.environ, "PREVIEW_BASE_DOMAIN": "*.bad"}
    result = await trio.run_process(CMD, env=env, capture_stderr=True, check=False)
    assert result.returncode != 0
    assert b"PREVIEW_BASE_DOMAIN" in result.stderr


def _children(pid: int) -> list[int]:
    # trio starts subprocesses from a worker thread: look at every thread's children.
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def test_two_workers_share_the_port_and_stop_together(
    tmp_path: Path, upstream: H11Upstream
) -> None:
    ready = tmp_path / "ready.json"
    env = {
        **os.environ,
        "AMICABLE_PREVIEW_ROUTER_HOST": "127.0.0.1",
        "AMICABLE_PREVIEW_ROUTER_PORT": "0",
        "AMICABLE_PREVIEW_UPSTREAM_TEMPLATE": f"http://127.0.0.1:{upstream.port}",
    }
    async with trio.open_nursery() as nursery:
        run = functools.partial(
            trio.run_process,
            [*CMD, "--workers", "2", "--ready-file", str(ready)],
            env=env,
            stderr=subprocess.PIPE,
            check=False,
        )
        process: trio.Process = await nursery.start(run)
        assert process.stderr is not None
        log = b""
        with trio.fail_after(60):
            while b"ready on port" not in log:
                chunk = await process.stderr.receive_some(4096)
                assert chunk, log.decode()
                log += chunk
        port = json.loads(ready.read_text())["port"]
        children = _children(process.pid)
        assert len(children) == 1
        assert b"--worker-child" in _cmdline(children[0])
        for _ in range(10):  # fresh connections are spread over both listening sockets
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                response = await client.get("/", headers={"Host": "abc.preview.localhost"})
                assert response.text == "hello from upstream"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await process.wait() == 0
        assert not _exists(children[0])
