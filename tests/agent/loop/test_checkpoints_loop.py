"""Checkpoints end to end: the real server and LLM loop against the fake model, tools in a
workspace runtime with real git. Each turn that writes files leaves a checkpoint; a restore
brings the files back, is announced to the editor, refused while a turn runs or an approval
is pending, and the model reads about it on its next turn."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.sandboxes.base import SandboxHandle
from amicable_agent.server import serve
from amicable_agent.sessions.checkpoints import Checkpoints
from amicable_testing import FakeSandboxBackend, ws_recv_until, ws_send
from amicable_testing.fake_anthropic import Reply, Text, ToolUse
from amicable_testing.workspace_runtime import WorkspaceRuntime
from trio_websocket import open_websocket_url


@pytest.fixture
async def agent_http(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: Any, make_engine: Any, workspace: Path
) -> AsyncIterator[int]:
    _fake, llm_url = fake_llm
    engine = make_engine(llm_url, qa_enabled=False)

    @asynccontextmanager
    async def factory(handle: SandboxHandle) -> AsyncIterator[WorkspaceRuntime]:
        await trio.lowlevel.checkpoint()
        yield WorkspaceRuntime(workspace)

    config = AgentConfig(
        host="127.0.0.1", port=0, internal_port=0, data_dir=tmp_path / "data",
        preview_base_domain="preview.localhost", preview_public_port=8123,
    )  # fmt: skip

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(
            config, backend=FakeSandboxBackend(), engine=engine, runtime_factory=factory,
            task_status=task_status,
        )  # fmt: skip

    ports = await nursery.start(run)
    return int(ports.public)


def write(path: str, content: str) -> ToolUse:
    return ToolUse("write_file", {"file_path": path, "content": content})


async def until_trace(ws: Any, tool_name: str) -> list[Any]:
    """Messages up to the ``trace_event`` of ``tool_name``."""
    seen: list[Any] = []
    while True:
        seen += await ws_recv_until(ws, "trace_event")
        if seen[-1].data.tool_name == tool_name:
            return seen


async def turn(ws: Any, sid: str, text: str, *, checkpoint: bool = True) -> list[Any]:
    """One turn; with ``checkpoint`` also wait for the checkpoint taken after it (in the
    background, announced by a ``checkpoint`` trace event)."""
    await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": text}})
    seen = await ws_recv_until(ws, "update_completed")
    if checkpoint:
        seen += await until_trace(ws, "checkpoint")
    return seen


def texts(body: dict[str, Any]) -> list[str]:
    out = []
    for message in body["messages"]:
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        out += [b["text"] for b in blocks if b.get("type") == "text"]
    return out


async def test_turns_leave_checkpoints_and_a_restore_goes_back(
    agent_http: int, fake_llm: Any, workspace: Path
) -> None:
    fake, _ = fake_llm
    original = (workspace / "src" / "App.tsx").read_text()
    sid = str(uuid.uuid4())
    base = f"/api/sandbox/{sid}/checkpoints"
    async with (
        open_websocket_url(f"ws://127.0.0.1:{agent_http}/") as ws,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent_http}", trust_env=False) as c,
    ):
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        await ws_recv_until(ws, "init")
        # The baseline is made as the session opens (after INIT's reply, which does not
        # wait for git), before any prompt; the history API waits for it.
        opened = (await c.get(base)).json()["checkpoints"]
        assert [e["title"] for e in opened] == ["Project created"]

        fake.add(Reply([Text("One."), write("/src/App.tsx", "one\n")]), Reply([Text("Done.")]))
        await turn(ws, sid, "Make it one")
        (workspace / "node_modules" / "lib").mkdir(parents=True)
        (workspace / "node_modules" / "lib" / "index.js").write_text("lib\n")
        fake.add(
            Reply([Text("Two."), write("/src/App.tsx", "two\n"), write("/src/Extra.tsx", "x\n")]),
            Reply([Text("Done.")]),
        )
        await turn(ws, sid, "Make it two\nand add Extra")
        fake.add(Reply([Text("Nothing to change.")]))
        await turn(ws, sid, "just answer", checkpoint=False)  # no file changed: none

        listed = (await c.get(base)).json()["checkpoints"]
        assert [(e["title"], e["files_changed"]) for e in listed] == [
            ("Make it two and add Extra", 2),
            ("Make it one", 1),
            ("Project created", 3),
        ]
        one = listed[1]

        # While a turn runs, restoring is refused (and changes nothing).
        hold = trio.Event()
        fake.add(Reply([Text("Thinking" + " hard" * 20, chunk=4)], hold=hold))
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "slow"}})
        await ws_recv_until(ws, "agent_partial")
        busy = await c.post(f"{base}/{one['sha']}/restore")
        assert (busy.status_code, busy.json()["error"]) == (409, "turn_running")
        assert (workspace / "src" / "App.tsx").read_text() == "two\n"
        hold.set()
        await ws_recv_until(ws, "update_completed")

        # While an approval is pending, too.
        fake.add(Reply([ToolUse("execute", {"command": "rm -rf src/components"})]))
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "delete"}})
        request = (await ws_recv_until(ws, "hitl_request"))[-1]
        pending = await c.post(f"{base}/{one['sha']}/restore")
        assert (pending.status_code, pending.json()["error"]) == (409, "hitl_pending")
        fake.add(Reply([Text("Left it.")]))
        await ws_send(ws, {"type": "hitl_response", "data": {
            "session_id": sid, "interrupt_id": request.data.interrupt_id,
            "response": {"decisions": [{"type": "reject", "message": "no"}]}}})  # fmt: skip
        await ws_recv_until(ws, "update_completed")

        restored = await c.post(f"{base}/{one['sha'][:7]}/restore")
        assert restored.status_code == 200, restored.text
        body = restored.json()
        assert body["checkpoint"]["title"] == "Restored to: Make it one"
        assert (workspace / "src" / "App.tsx").read_text() == "one\n"
        assert not (workspace / "src" / "Extra.tsx").exists()
        assert (workspace / "node_modules" / "lib" / "index.js").read_text() == "lib\n"
        announced = (await until_trace(ws, "restore_checkpoint"))[-1].data
        assert announced.tool_name == "restore_checkpoint"
        assert announced.output["checkpoint"]["sha"] == body["checkpoint"]["sha"]
        assert sorted(announced.output["changed_paths"]) == ["/src/App.tsx", "/src/Extra.tsx"]
        assert [e["sha"] for e in (await c.get(base)).json()["checkpoints"][:2]] == [
            body["checkpoint"]["sha"],
            listed[0]["sha"],
        ]

        # The model reads about the restore before the next request.
        before = len(fake.requests)
        fake.add(Reply([Text("Noted.")]))
        await turn(ws, sid, "what now?", checkpoint=False)
        seen = "\n".join(texts(fake.view(before)))  # one text or several, by provider
        note = f"[The user restored the project files to checkpoint {one['sha'][:7]}: Make it one]"
        assert note in seen
        assert seen.index(note) < seen.rindex("what now?")

        # Restoring the baseline brings the original files back; the restore is undoable.
        baseline = listed[2]
        assert (await c.post(f"{base}/{baseline['sha']}/restore")).status_code == 200
        assert (workspace / "src" / "App.tsx").read_text() == original
        assert json.loads((workspace / "package.json").read_text())["name"] == "demo"
        assert (await c.post(f"{base}/{body['checkpoint']['sha']}/restore")).status_code == 200
        assert (workspace / "src" / "App.tsx").read_text() == "one\n"


async def test_checkpoints_over_the_real_runtime(real_runtime: Any, workspace: Path) -> None:
    (workspace / "node_modules" / "lib").mkdir(parents=True)
    (workspace / "node_modules" / "lib" / "index.js").write_text("lib\n")
    cps = Checkpoints(real_runtime)
    await cps.ensure()
    (workspace / "src" / "App.tsx").write_text("changed\n")
    (workspace / "src" / "New.tsx").write_text("new\n")
    made = await cps.create("Change it")
    assert made is not None
    assert made.files_changed == 2
    [_, baseline] = await cps.list()
    assert baseline.title == "Project created"
    result = await cps.restore(baseline.sha)
    assert sorted(result.changed_paths) == ["/src/App.tsx", "/src/New.tsx"]
    assert "Hi" in (workspace / "src" / "App.tsx").read_text()
    assert not (workspace / "src" / "New.tsx").exists()
    assert (workspace / "node_modules" / "lib" / "index.js").exists()
    assert [c.title for c in await cps.list()] == [
        "Restored to: Project created",
        "Change it",
        "Project created",
    ]
