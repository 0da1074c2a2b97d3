"""The real LLM loop (``turns.create_engine``) wired into the real server: a ``user`` turn over
a real WebSocket against the fake Anthropic API, tools running in a workspace runtime; the
history comes back on INIT; ``cancel`` stops a running turn and the session stays usable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
from amicable_agent.loop.engine import create_engine
from amicable_agent.loop.settings import LoopSettings
from amicable_agent.sandboxes.base import SandboxHandle
from amicable_testing import ws_recv, ws_recv_until, ws_send
from amicable_testing.fake_anthropic import FakeAnthropic, Reply, Text, ToolUse
from amicable_testing.workspace_runtime import WorkspaceRuntime
from trio_websocket import open_websocket_url


def settings(base_url: str) -> LoopSettings:
    return LoopSettings(
        api_key="sk-ant-test-key-123456",
        base_url=base_url,
        qa_enabled=False,
        partial_interval_s=0.0,
        llm_retry_base_s=0.01,
        llm_retry_max_s=0.05,
    )


async def test_user_turn_cancel_and_history(agent_factory: Any, tmp_path: Path) -> None:
    workspaces = tmp_path / "ws"

    @asynccontextmanager
    async def factory(handle: SandboxHandle) -> AsyncIterator[WorkspaceRuntime]:
        root = workspaces / handle.sandbox_id
        root.mkdir(parents=True, exist_ok=True)
        (root / "package.json").write_text('{"name": "demo", "scripts": {}}')
        await trio.lowlevel.checkpoint()
        yield WorkspaceRuntime(root)

    hold = trio.Event()
    fake = FakeAnthropic(
        [
            Reply(
                [
                    Text("Adding a file."),
                    ToolUse("write_file", {"file_path": "/src/hello.txt", "content": "hi"}),
                ]
            ),
            Reply([Text("Added hello.txt.")]),
            Reply([Text("This will take forever")], hold=hold),
            Reply([Text("Still here.")]),
        ]
    )
    sid = str(uuid.uuid4())
    async with trio.open_nursery() as nursery:
        base_url = await nursery.start(fake.serve)
        engine = create_engine(settings(base_url))
        async with agent_factory(engine=engine, runtime_factory=factory) as agent:
            async with open_websocket_url(agent.ws) as ws:
                await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
                init = (await ws_recv_until(ws, "init"))[-1]
                await ws_send(
                    ws, {"type": "user", "data": {"session_id": sid, "text": "add hello"}}
                )
                turn = await ws_recv_until(ws, "update_completed", timeout_s=60)
                kinds = [str(m.type) for m in turn]
                assert kinds[:2] == ["turn_started", "update_in_progress"]
                assert "agent_final" in kinds
                assert "error" not in kinds, [m.data for m in turn if str(m.type) == "error"]
                written = workspaces / init.data.sandbox_id / "src" / "hello.txt"
                assert written.read_text() == "hi"

                await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "slow one"}})
                await ws_recv_until(ws, "agent_partial", timeout_s=60)
                await ws_send(ws, {"type": "cancel", "data": {"session_id": sid}})
                await ws_recv_until(ws, "update_completed", timeout_s=60)
                await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "again"}})
                again = await ws_recv_until(ws, "update_completed", timeout_s=60)
                finals = [m.data.text for m in again if str(m.type) == "agent_final"]
                assert finals == ["Still here."]
            async with open_websocket_url(agent.ws) as ws:
                await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
                reloaded = (await ws_recv_until(ws, "init"))[-1]
                texts = [(h.role, h.text) for h in reloaded.data.conversation_history]
                assert ("user", "add hello") in texts
                # ...and the turns as they were shown, the stopped one with its marker.
                turns = reloaded.data.turns
                assert [t.events[0]["data"]["text"] for t in turns] == [
                    "add hello", "slow one", "again"
                ]  # fmt: skip
                # (a turn's checkpoint, when it has one, follows its ``turn_ended``)
                outcomes = [
                    next(e["data"]["outcome"] for e in t.events if e["type"] == "turn_ended")
                    for t in turns
                ]
                assert outcomes == ["finished", "cancelled", "finished"]
                assert reloaded.data.exists is True
                await ws_send(ws, {"type": "ping", "data": {}})
                assert str((await ws_recv(ws)).type) == "pong"
        hold.set()
        nursery.cancel_scope.cancel()


async def test_models_on_offer_the_choice_sticks_and_spend_adds_up(
    agent_factory: Any, tmp_path: Path
) -> None:
    """Anthropic is the default, an OpenAI-compatible server the other model: INIT offers
    both, a picker choice in ``init`` is stored with the project, turns run on it, and the
    project's running cost comes back in ``usage`` and on the next INIT."""
    from amicable_agent.loop.models import ModelSpec
    from amicable_testing.fake_openai import FakeOpenAI

    @asynccontextmanager
    async def factory(handle: SandboxHandle) -> AsyncIterator[WorkspaceRuntime]:
        root = tmp_path / "ws" / handle.sandbox_id
        root.mkdir(parents=True, exist_ok=True)
        await trio.lowlevel.checkpoint()
        yield WorkspaceRuntime(root)

    claude = FakeAnthropic([Reply([Text("From Claude.")])])
    local = FakeOpenAI([Reply([Text("From the local model.")], input_tokens=1_000_000)] * 2)
    sid = str(uuid.uuid4())
    async with trio.open_nursery() as nursery:
        claude_url = await nursery.start(claude.serve)
        local_url = await nursery.start(local.serve)
        other = ModelSpec(id="local", provider="openai", model="qwen", label="Qwen (local)",
                          base_url=local_url, price_input_per_mtok=0.5)  # fmt: skip
        engine = create_engine(attrs.evolve(settings(claude_url), models=(other,)))
        async with agent_factory(engine=engine, runtime_factory=factory) as agent:
            async with open_websocket_url(agent.ws) as ws:
                await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
                init = (await ws_recv_until(ws, "init"))[-1].data
                assert [m.id for m in init.models] == ["anthropic:claude-sonnet-5-5", "local"]
                assert init.model == "anthropic:claude-sonnet-5-5"
                assert init.spend.cost_usd == 0
                await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "one"}})
                first = await ws_recv_until(ws, "update_completed", timeout_s=60)
                assert len(claude.requests) == 1
                # The picker: a new init with the model, then an old-style user message.
                await ws_send(ws, {"type": "init", "data": {"session_id": sid, "model": "local"}})
                assert (await ws_recv_until(ws, "init"))[-1].data.model == "local"
                await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "two"}})
                second = await ws_recv_until(ws, "update_completed", timeout_s=60)
            assert local.requests[0].body["model"] == "qwen"
            assert len(claude.requests) == 1
            usage = [m.data for m in first + second if str(m.type) == "usage"]
            assert usage[1].model_id == "local"
            assert usage[1].cost_usd == 0.5
            assert usage[1].project.cost_usd == round(usage[0].cost_usd + 0.5, 6)
            async with open_websocket_url(agent.ws) as ws:
                await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
                again = (await ws_recv_until(ws, "init"))[-1].data
                assert again.model == "local"  # stored with the project
                assert again.spend == usage[1].project
        nursery.cancel_scope.cancel()
