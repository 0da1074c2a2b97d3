"""The command line: --help everywhere, --ready-file with port 0, clean shutdown on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from amicable_testing.processes import free_port, wait_for_exit, wait_until

CLI = [sys.executable, "-m", "amicable_sandbox_runtime"]


async def start_cli(
    nursery: trio.Nursery, argv: list[str], env: dict[str, str], ready: Path, *, stderr: int
) -> tuple[trio.Process, dict[str, int]]:
    """Run the runtime's command line in a session of its own; the process and its ready
    file once it is written."""
    proc: trio.Process = await nursery.start(
        partial(
            trio.run_process,
            [*argv, "--ready-file", str(ready)],
            env=env,
            check=False,
            start_new_session=True,
            stderr=stderr,
        )
    )

    async def written() -> bool:
        return await trio.Path(ready).exists()

    await wait_until(written, 60)
    return proc, json.loads(ready.read_text())


@pytest.mark.parametrize("sub", [[], ["serve"], ["init-workspace"], ["templates"]])
async def test_help(sub: list[str]) -> None:
    result = await trio.run_process([*CLI, *sub, "--help"], capture_stdout=True)
    assert b"usage: amicable-sandbox-runtime" in result.stdout


async def test_ready_file_reports_the_port(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    ready = tmp_path / "state" / "ready.json"
    preview_port = free_port()
    env = {
        **os.environ,
        "AMICABLE_RUNTIME_TOKEN": "cli-token",
        "AMICABLE_RUNTIME_HOST": "127.0.0.1",
        "AMICABLE_WORKSPACE": str(workspace),
        "AMICABLE_PREVIEW_PORT": str(preview_port),
        "AMICABLE_PREVIEW_HOST": "127.0.0.1",
        "AMICABLE_PREVIEW_CMD": f"sleep 1000 & echo $! > helper.pid; exec {sys.executable} "
        f"-m http.server --bind 127.0.0.1 {preview_port}",
    }
    async with trio.open_nursery() as nursery:
        proc, info = await start_cli(
            nursery, [*CLI, "--port", "0"], env, ready, stderr=subprocess.DEVNULL
        )
        assert info["pid"] == proc.pid
        url = f"http://127.0.0.1:{info['port']}"
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/v1/preview")).status_code == 401
            auth = {"Authorization": "Bearer cli-token"}

            async def ready_now() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await wait_until(ready_now, 30)
            status = (await client.get("/v1/preview", headers=auth)).json()
            assert status["port"] == preview_port
        helper = int((workspace / "helper.pid").read_text())
        proc.send_signal(signal.SIGTERM)  # a graceful stop takes the dev server's group along
        with trio.fail_after(30):
            await proc.wait()
        await wait_for_exit(status["pid"], helper)


# Records, in the runtime's own process, whether trio was loaded when the dev server's
# ``sh -c`` was spawned, then serves as usual.
_RECORDING_MAIN = """
import subprocess, sys
class Recording(subprocess.Popen):
    def __init__(self, args, *rest, **kwargs):
        if list(args[:2]) == ["sh", "-c"]:
            print(f"spawned, trio loaded: {'trio' in sys.modules}", file=sys.stderr, flush=True)
        super().__init__(args, *rest, **kwargs)
subprocess.Popen = Recording
from amicable_sandbox_runtime.__main__ import main
main(sys.argv[1:])
"""


async def test_the_dev_server_starts_before_trio_is_imported_and_is_supervised(
    tmp_path: Path,
) -> None:
    # On a cold start the dev server's start is the critical path: it is spawned before the
    # runtime imports trio, and that first process is supervised like every later one
    # (output kept, restart on request, killed with the runtime).
    workspace = tmp_path / "ws"
    workspace.mkdir()
    ready = tmp_path / "ready.json"
    env = {
        **os.environ,
        "AMICABLE_RUNTIME_HOST": "127.0.0.1",
        "AMICABLE_WORKSPACE": str(workspace),
        "AMICABLE_PREVIEW_PORT": str(free_port()),
        "AMICABLE_PREVIEW_CMD": "echo run-$$ on $AMICABLE_PREVIEW_PORT; exec sleep 1000",
    }
    argv = [sys.executable, "-c", _RECORDING_MAIN, "--insecure-no-auth", "--port", "0"]
    async with trio.open_nursery() as nursery:
        proc, info = await start_cli(nursery, argv, env, ready, stderr=subprocess.PIPE)
        port = info["port"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            first = (await client.get("/v1/preview")).json()["pid"]

            async def said(text: str) -> bool:
                lines = (await client.get("/v1/preview/logs")).json()["lines"]
                return any(text in line for line in lines)

            await wait_until(partial(said, f"run-{first} on {env['AMICABLE_PREVIEW_PORT']}"))
            assert (await client.post("/v1/preview/restart")).status_code in (200, 202)

            async def second_pid() -> bool:
                pid = (await client.get("/v1/preview")).json()["pid"]
                return pid not in (None, first)

            await wait_until(second_pid)
            second = (await client.get("/v1/preview")).json()["pid"]
            await wait_until(partial(said, f"run-{second} on"))
            await wait_for_exit(first)  # the adopted one was killed and reaped
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            await proc.wait()
        await wait_for_exit(second)
    assert proc.stderr is not None
    stderr = b""
    while chunk := await proc.stderr.receive_some():
        stderr += chunk
    spawns = [line for line in stderr.decode().splitlines() if line.startswith("spawned")]
    assert spawns == ["spawned, trio loaded: False", "spawned, trio loaded: True"]


# Sends itself SIGTERM right after spawning the dev server, before trio (and its signal
# receiver) is imported, and says which pid the dev server got.
_SIGTERM_EARLY_MAIN = """
import os, signal, subprocess, sys
class Early(subprocess.Popen):
    def __init__(self, args, *rest, **kwargs):
        super().__init__(args, *rest, **kwargs)
        if list(args[:2]) == ["sh", "-c"]:
            print(f"dev server {self.pid}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
subprocess.Popen = Early
from amicable_sandbox_runtime.__main__ import main
main(sys.argv[1:])
"""


async def test_sigterm_before_trio_is_up_still_takes_the_dev_server_along(
    tmp_path: Path,
) -> None:
    # The dev server runs in a session of its own: a runtime killed by the signal's default
    # action would leave it running with nobody to supervise it.
    env = {
        **os.environ,
        "AMICABLE_WORKSPACE": str(tmp_path),
        "AMICABLE_PREVIEW_PORT": str(free_port()),
        "AMICABLE_PREVIEW_CMD": "exec sleep 1000",
    }
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-c", _SIGTERM_EARLY_MAIN, "--insecure-no-auth", "--port", "0"],
            env=env, check=False, start_new_session=True, capture_stderr=True,
        )  # fmt: skip
    assert done.returncode == 128 + signal.SIGTERM
    lines = done.stderr.decode().splitlines()
    dev_server = int(next(line for line in lines if line.startswith("dev server ")).split()[-1])
    await wait_for_exit(dev_server)
