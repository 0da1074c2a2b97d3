"""Every golden client frame (canonical, and exactly as the existing editor sends them) over a
real WebSocket to a real agent: each is accepted and routed, none is answered with an error,
and the server's INIT envelope has the golden shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_protocol.messages import Empty, HistoryEntry, MessageType, server_message_to_json
from amicable_testing import StubEngine, ws_recv, ws_recv_until, ws_send
from trio_websocket import open_websocket_url

GOLDEN = Path(__file__).resolve().parents[2] / "protocol" / "golden"
FRAMES = sorted((GOLDEN / "client").glob("*.json")) + sorted((GOLDEN / "editor").glob("*.json"))
EDITOR_INIT = json.loads((GOLDEN / "editor" / "init.json").read_text())
GOLDEN_INIT = json.loads((GOLDEN / "server" / "init.fresh.json").read_text())


class RecordingEngine(StubEngine):
    """A TurnEngine that records what the session routed to it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.called = trio.Event()

    def _record(self, kind: str, data: Any) -> None:
        self.calls.append((kind, data))
        self.called.set()

    async def run_user_turn(self, host: Any, data: Any, *, by: str | None = None) -> None:
        self._record("user", data)
        await host.send(MessageType.UPDATE_COMPLETED, Empty())

    async def resume_hitl(self, host: Any, data: Any, *, by: str | None = None) -> None:
        self._record("hitl_response", data)
        await trio.lowlevel.checkpoint()

    async def run_runtime_error(self, host: Any, data: Any, *, by: str | None = None) -> None:
        self._record("runtime_error", data)
        await trio.lowlevel.checkpoint()

    async def hitl_pending(self, host: Any) -> None:
        await trio.lowlevel.checkpoint()

    async def history(self, host: Any) -> list[HistoryEntry]:
        await trio.lowlevel.checkpoint()
        return []


def golden_type(path: Path) -> str:
    return path.name.split(".")[0]


@pytest.mark.parametrize("frame_path", FRAMES, ids=lambda p: f"{p.parent.name}/{p.name}")
async def test_golden_client_frame_is_accepted(agent_factory: Any, frame_path: Path) -> None:
    engine = RecordingEngine()
    frame = json.loads(frame_path.read_text())
    kind = golden_type(frame_path)
    session_id = "0b7e6c2a-5d1f-4c8e-9a3b-2f6d8e1c4a70"
    async with agent_factory(engine=engine) as agent, open_websocket_url(agent.ws) as ws:
        await ws_send(ws, EDITOR_INIT)
        init = (await ws_recv_until(ws, "init"))[-1]
        golden_init = GOLDEN_INIT
        got = server_message_to_json(init)
        assert set(got) == set(golden_init)
        assert set(got["data"]) == set(golden_init["data"])
        assert set(got["data"]["project"]) <= set(golden_init["data"]["project"]) | {
            "project_prompt"
        }
        if kind == "init":
            return
        await ws_send(ws, json.dumps(frame))
        if kind == "ping":
            assert str((await ws_recv(ws)).type) == "pong"
            return
        if kind in ("cancel", "dequeue"):  # nothing running or queued: both are silent
            await ws_send(ws, {"type": "ping", "data": {}})
            assert str((await ws_recv(ws)).type) == "pong", f"{kind} is silent"
            return
        with trio.fail_after(10):
            await engine.called.wait()
        assert [k for k, _ in engine.calls] == [kind]
        routed = engine.calls[0][1]
        assert routed.session_id == session_id
        await ws_send(ws, {"type": "ping", "data": {}})
        with trio.fail_after(10):
            while True:
                msg = await ws_recv(ws)
                assert str(msg.type) != "error", msg
                if str(msg.type) == "pong":
                    break
