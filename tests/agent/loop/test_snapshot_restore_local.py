"""Durability on the local backend, end to end: turns leave checkpoints, each is copied out
as a snapshot; the workspace is deleted; the next ``init`` re-creates the sandbox from the
template and restores files and history byte for byte before the preview is shown.

Real agent (hypercorn on port 0), real LLM loop against the fake model, real
``amicable-sandbox-runtime`` process, real Vite, real git.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.local.backend import (
    LocalBackend,
    LocalBackendConfig,
    open_local_backend,
)
from amicable_agent.server import serve
from amicable_testing import ws_recv_until, ws_send
from amicable_testing.fake_anthropic import Reply, Text, ToolUse
from trio_websocket import open_websocket_url

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
RUNTIME = str(Path(sys.executable).parent / "amicable-sandbox-runtime")


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


def project_files(root: Path) -> dict[str, bytes]:
    """What a checkpoint holds: every file but .git, dependencies and platform state."""
    skip = (".git/", "node_modules/", ".amicable/", "dist/")
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith(skip)
    }


def stored_head(db: Path, project_id: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT head_sha FROM snapshots WHERE project_id=? ORDER BY seq DESC LIMIT 1",
            (project_id,),
        ).fetchone()
    return None if row is None else str(row[0])


async def wait_snapshotted(db: Path, project_id: str, workspace: Path) -> str:
    """Wait until the stored chain's head is the workspace's HEAD (taken in the background)."""
    head = git(workspace, "rev-parse", "HEAD").strip()
    with trio.fail_after(30):
        while await trio.to_thread.run_sync(stored_head, db, project_id) != head:
            await trio.sleep(0.05)
    return head


@attrs.frozen
class Running:
    port: int
    backend: LocalBackend
    data: Path


@pytest.fixture
async def agent(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: Any, make_engine: Any
) -> AsyncIterator[Running]:
    _fake, llm_url = fake_llm
    data = tmp_path / "data"
    config = AgentConfig(
        host="127.0.0.1", port=0, internal_port=0, data_dir=data,
        preview_base_domain="preview.localhost", preview_public_port=8123,
    )  # fmt: skip
    local = LocalBackendConfig(
        data_dir=data, runtime_command=(RUNTIME,), warm_pool_size=0, spare_workspaces=0,
        cache_dir=REPO / ".cache" / "node_modules",
    )  # fmt: skip
    async with open_local_backend(local) as backend:
        engine = make_engine(llm_url, qa_enabled=False)

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await serve(config, backend=backend, engine=engine, task_status=task_status)

        ports = await nursery.start(run)
        yield Running(int(ports.public), backend, data)


async def init(ws: Any, sid: str) -> list[Any]:
    await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
    return await ws_recv_until(ws, "init", timeout_s=300)


async def turn(ws: Any, sid: str, text: str) -> None:
    """One turn, and the checkpoint taken after it (announced by a ``trace_event``)."""
    await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": text}})
    await ws_recv_until(ws, "update_completed", timeout_s=60)
    while (await ws_recv_until(ws, "trace_event", timeout_s=60))[-1].data.tool_name != "checkpoint":
        pass


def write(path: str, content: str) -> ToolUse:
    return ToolUse("write_file", {"file_path": path, "content": content})


async def test_a_deleted_workspace_is_restored_before_the_preview(
    agent: Running, fake_llm: Any
) -> None:
    fake, _ = fake_llm
    sid = str(uuid.uuid4())
    workspace = agent.data / "sandboxes" / sandbox_id_for(sid) / "workspace"
    db = agent.data / "amicable.db"
    async with open_websocket_url(f"ws://127.0.0.1:{agent.port}/") as ws:
        await init(ws, sid)
        fake.add(
            Reply([Text("Blue."), write("/src/App.tsx", "export default () => <h1>Blue</h1>;\n")]),
            Reply([Text("Done.")]),
        )
        await turn(ws, sid, "Make it blue")
        first = await wait_snapshotted(db, sid, workspace)
        fake.add(
            Reply([
                Text("Notes."),
                write("/src/notes.md", "# Notes\n\nü, binary-ish \x01 bytes\n"),
                ToolUse("execute", {"command": "rm -f src/App.css && chmod +x index.html"}),
            ]),
            Reply([Text("Done.")]),
        )  # fmt: skip
        await ws_send(
            ws, {"type": "init", "data": {"session_id": sid, "permission_mode": "bypass"}}
        )
        await ws_recv_until(ws, "init")
        await turn(ws, sid, "Add notes, drop the css")
        second = await wait_snapshotted(db, sid, workspace)
        assert second != first
    want_files = project_files(workspace)
    want_log = git(workspace, "log", "--format=%H %at %ct %s%n%b", "HEAD")
    assert "Make it blue" in want_log
    assert "src/App.css" not in want_files
    assert want_files["src/notes.md"].startswith(b"# Notes")

    # The workspace is deleted (disk cleaned up, the data directory moved, ...).
    await agent.backend.delete(sandbox_id_for(sid))
    assert not workspace.exists()

    async with open_websocket_url(f"ws://127.0.0.1:{agent.port}/") as ws:
        seen = await init(ws, sid)
    stages = [m.data.stage for m in seen if str(m.type) == "sandbox_status"]
    assert stages[-2:] == ["restoring", "ready"], stages
    assert project_files(workspace) == want_files
    assert git(workspace, "log", "--format=%H %at %ct %s%n%b", "HEAD") == want_log
    assert git(workspace, "status", "--porcelain") == ""
    # the preview serves the restored app (no reinstall: the lockfile is the template's)
    preview = seen[-1].data
    assert preview.exists is False
    upstream = (await agent.backend.lookup(sandbox_id_for(sid))).preview_upstream  # type: ignore[union-attr]
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        with trio.fail_after(60):
            while True:
                page = await client.get(f"{upstream}/src/App.tsx")
                if page.status_code == 200:
                    break
                await trio.sleep(0.1)
    assert "Blue" in page.text
