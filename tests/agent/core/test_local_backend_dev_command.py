"""The dev-server command the local backend gives the runtime for complete workspaces:
``npm run dev -- --host H --port P`` without npm, run with a real ``sh``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio
from amicable_agent.sandboxes.local.sandbox import dev_command


async def run_in(workspace: Path, command: str) -> trio.CompletedProcess[bytes]:
    return await trio.run_process(
        ["sh", "-c", command], cwd=workspace, capture_stdout=True, capture_stderr=True, check=False
    )


def project(tmp_path: Path, scripts: dict[str, str]) -> Path:
    (tmp_path / "package.json").write_text(json.dumps({"name": "x", "scripts": scripts}))
    bin_dir = tmp_path / "node_modules" / ".bin"
    bin_dir.mkdir(parents=True)
    tool = bin_dir / "devtool"
    tool.write_text('#!/bin/sh\necho "devtool $*"\n')
    tool.chmod(0o755)
    return tmp_path


async def test_runs_the_dev_script_with_node_modules_bin_first_and_the_npm_arguments(
    tmp_path: Path,
) -> None:
    workspace = project(tmp_path, {"dev": "devtool --mode 'two words'"})
    done = await run_in(workspace, dev_command(sys.executable, "127.0.0.1", 4321))
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "devtool --mode two words --host 127.0.0.1 --port 4321"


async def test_reads_the_script_on_every_start(tmp_path: Path) -> None:
    workspace = project(tmp_path, {"dev": "devtool first"})
    command = dev_command(sys.executable, "127.0.0.1", 1)
    assert b"first" in (await run_in(workspace, command)).stdout
    (workspace / "package.json").write_text(json.dumps({"scripts": {"dev": "devtool second"}}))
    assert b"second" in (await run_in(workspace, command)).stdout


async def test_a_project_without_a_dev_script_fails_with_a_reason(tmp_path: Path) -> None:
    workspace = project(tmp_path, {"build": "devtool build"})
    done = await run_in(workspace, dev_command(sys.executable, "127.0.0.1", 1))
    assert done.returncode != 0
    assert b"no dev script" in done.stderr
    assert b"devtool" not in done.stdout


async def test_waits_for_a_workspace_being_created(tmp_path: Path) -> None:
    command = dev_command(sys.executable, "127.0.0.1", 7, wait_for_workspace_s=30)
    async with trio.open_nursery() as nursery:
        result: list[trio.CompletedProcess[bytes]] = []

        async def run() -> None:
            result.append(await run_in(tmp_path, command))

        nursery.start_soon(run)
        await trio.sleep(0.3)  # the command is polling for the workspace meanwhile
        assert not result, "started before package.json and node_modules existed"
        staging = tmp_path / "staging"
        staging.mkdir()
        project(staging, {"dev": "devtool waited"})
        (staging / "package.json").rename(tmp_path / "package.json")
        (staging / "node_modules").rename(tmp_path / "node_modules")
    assert result[0].stdout.decode().strip() == "devtool waited --host 127.0.0.1 --port 7"


async def test_the_wait_is_bounded(tmp_path: Path) -> None:
    command = dev_command(sys.executable, "127.0.0.1", 7, wait_for_workspace_s=0.2)
    done = await run_in(tmp_path, command)
    assert done.returncode != 0, "no package.json: fails after the wait"
