"""``npm run NAME -- ARGS`` dev-server commands run as npm would run them, without npm's start-up
(``spawn.npm_run``), through a real ``sh``; and real npm wherever that would not be exact."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest
import trio
from amicable_sandbox_runtime.config import RuntimeConfig
from amicable_sandbox_runtime.spawn import dev_server, npm_run

if TYPE_CHECKING:
    from pathlib import Path

COMMAND = 'npm run dev -- --host "$AMICABLE_PREVIEW_HOST" --port "$AMICABLE_PREVIEW_PORT"'


def project(tmp_path: Path, scripts: dict[str, str], **fields: str) -> Path:
    manifest = {"name": "demo", "version": "1.2.3", **fields, "scripts": scripts}
    (tmp_path / "package.json").write_text(json.dumps(manifest))
    bin_dir = tmp_path / "node_modules" / ".bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / "devtool"
    tool.write_text('#!/bin/sh\necho "devtool $* [$npm_lifecycle_event $npm_package_name]"\n')
    tool.chmod(0o755)
    return tmp_path


async def run_dev_server(workspace: Path, command: str = COMMAND) -> str:
    config = RuntimeConfig(workspace=workspace, insecure_no_auth=True, preview_cmd=command,
                           preview_host="127.0.0.1", preview_port=4321)  # fmt: skip
    shell_command, env = dev_server(config)
    done = await trio.run_process(
        ["sh", "-c", shell_command], cwd=workspace, env=env, capture_stdout=True, check=False
    )
    assert done.returncode == 0
    return done.stdout.decode().strip()


async def test_the_script_runs_with_node_modules_bin_first_and_the_arguments(
    tmp_path: Path,
) -> None:
    workspace = project(tmp_path, {"dev": "devtool --mode 'two words'"})
    assert npm_run(COMMAND, workspace, dict(os.environ)) is not None  # npm is skipped
    out = await run_dev_server(workspace)
    assert out == "devtool --mode two words --host 127.0.0.1 --port 4321 [dev demo]"


async def test_the_script_is_read_on_every_start(tmp_path: Path) -> None:
    workspace = project(tmp_path, {"dev": "devtool first"})
    assert (await run_dev_server(workspace)).startswith("devtool first")
    project(workspace, {"dev": "devtool second"})
    assert (await run_dev_server(workspace)).startswith("devtool second")


@pytest.mark.parametrize(
    ("scripts", "command"),
    [
        ({"build": "devtool build"}, COMMAND),  # no such script: npm says so itself
        ({"dev": "devtool", "predev": "devtool before"}, COMMAND),  # npm runs the hooks
        ({"dev": "devtool", "postdev": "devtool after"}, COMMAND),
        ({"dev": "devtool"}, "npm run dev --silent"),  # npm's own options
        ({"dev": "devtool"}, "npm run dev -- --port 1; rm -rf /"),  # more than one command
        ({"dev": "devtool"}, "npm run dev -- $(whoami)"),
        ({"dev": "devtool"}, "npx vite"),
        ({"dev": "   "}, COMMAND),
    ],
)
def test_anything_but_a_plain_script_is_left_to_npm(
    tmp_path: Path, scripts: dict[str, str], command: str
) -> None:
    workspace = project(tmp_path, scripts)
    assert npm_run(command, workspace, dict(os.environ)) is None
    config = RuntimeConfig(workspace=workspace, insecure_no_auth=True, preview_cmd=command)
    assert dev_server(config)[0] == command


@pytest.mark.parametrize("manifest", [None, "not json", "[]", '{"scripts": ["dev"]}'])
def test_a_missing_or_odd_package_json_is_left_to_npm(tmp_path: Path, manifest: str | None) -> None:
    if manifest is not None:
        (tmp_path / "package.json").write_text(manifest)
    assert npm_run(COMMAND, tmp_path, dict(os.environ)) is None


async def test_run_script_and_no_arguments_are_the_same_shape(tmp_path: Path) -> None:
    workspace = project(tmp_path, {"start:dev": "devtool go"})
    assert (
        await run_dev_server(workspace, "npm run-script start:dev") == "devtool go [start:dev demo]"
    )
