"""End to end over the real WebSocket: agent server + engine + real runtime + fake model."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.server import serve
from amicable_testing import FakeSandboxBackend, ws_recv_until, ws_send
from amicable_testing.fake_anthropic import Reply, Text, ToolUse
from trio_websocket import open_websocket_url

TOKEN = "loop-test-token-0123456789"  # the real_runtime_url fixture's token


@pytest.fixture
async def agent_ws(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: Any, make_engine: Any, real_runtime_url: str
) -> AsyncIterator[str]:
    _fake, llm_url = fake_llm
    engine = make_engine(llm_url, qa_enabled=False)
    backend = FakeSandboxBackend(runtime_url=real_runtime_url, runtime_token=TOKEN)
    config = AgentConfig(
        host="127.0.0.1", port=0, internal_port=0, data_dir=tmp_path / "data",
        preview_base_domain="preview.localhost", preview_public_port=8123,
    )  # fmt: skip

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(config, backend=backend, engine=engine, task_status=task_status)

    ports = await nursery.start(run)
    return f"ws://127.0.0.1:{ports.public}/"


def init_frame(sid: str) -> dict[str, Any]:
    return {"type": "init", "data": {"session_id": sid, "permission_mode": "default"}}


def types(msgs: list[Any]) -> list[str]:
    return [str(m.type) for m in msgs]


async def test_prompt_edits_the_workspace_over_the_websocket(
    agent_ws: str, fake_llm: Any, workspace: Path
) -> None:
    fake, _ = fake_llm
    fake.add(
        Reply([Text("Adding it."), ToolUse("write_file", {"file_path": "/src/Hello.tsx", "content": "x\n"})]),
        Reply([Text("Done.")]),
    )  # fmt: skip
    sid = str(uuid.uuid4())
    async with open_websocket_url(agent_ws) as ws:
        await ws_send(ws, init_frame(sid))
        await ws_recv_until(ws, "init")
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "add hello"}})
        msgs = await ws_recv_until(ws, "update_completed")
    assert (workspace / "src" / "Hello.tsx").read_text() == "x\n"
    seen = types(msgs)
    assert seen[:2] == ["turn_started", "update_in_progress"]
    assert seen[-4:] == ["agent_final", "trace_event", "usage", "update_completed"]
    assert "update_file" in seen
    assert "agent_partial" in seen
    assert msgs[-4].data.text == "Adding it.\n\nDone."
    # A reload gets the history.
    async with open_websocket_url(agent_ws) as ws:
        await ws_send(ws, init_frame(sid))
        init = (await ws_recv_until(ws, "init"))[-1]
    assert [(h.role, h.text) for h in init.data.conversation_history] == [
        ("user", "add hello"), ("assistant", "Adding it.\n\nDone.")]  # fmt: skip


async def test_hitl_survives_a_reload_and_cancel_stops_a_turn(
    agent_ws: str, fake_llm: Any, workspace: Path
) -> None:
    fake, _ = fake_llm
    (workspace / "victim.txt").write_text("x")
    fake.add(Reply([ToolUse("execute", {"command": "rm victim.txt"})]), Reply([Text("Removed.")]))
    sid = str(uuid.uuid4())
    async with open_websocket_url(agent_ws) as ws:
        await ws_send(ws, init_frame(sid))
        await ws_recv_until(ws, "init")
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "delete it"}})
        request = (await ws_recv_until(ws, "hitl_request"))[-1]
    async with open_websocket_url(agent_ws) as ws:  # page reload
        await ws_send(ws, init_frame(sid))
        init = (await ws_recv_until(ws, "init"))[-1]
        assert init.data.hitl_pending.interrupt_id == request.data.interrupt_id
        await ws_send(ws, {"type": "hitl_response", "data": {
            "session_id": sid, "interrupt_id": request.data.interrupt_id,
            "response": {"decisions": [{"type": "approve"}]}}})  # fmt: skip
        msgs = await ws_recv_until(ws, "update_completed")
        assert msgs[-4].data.text == "Removed."
        assert not (workspace / "victim.txt").exists()

        fake.add(Reply([ToolUse("execute", {"command": "sleep 1000"})]))
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "wait"}})
        started = await ws_recv_until(ws, "trace_event")
        while started[-1].data.phase != "tool_start":  # the last turn's checkpoint may come first
            assert started[-1].data.phase == "post_tool_use"
            started = await ws_recv_until(ws, "trace_event")
        await ws_send(ws, {"type": "cancel", "data": {"session_id": sid}})
        msgs = await ws_recv_until(ws, "update_completed", timeout_s=10)
        assert "turn_ended" not in [str(m.type) for m in msgs]  # it comes after update_completed
        ended = await ws_recv_until(ws, "turn_ended")
        assert ended[-1].data.outcome == "cancelled"
