"""The chat as it was shown: each turn's rendered events are stored and come back in INIT
(paged, newest first), a reloaded tab gets the running turn and the queue, and the queue is
broadcast to every tab (and can be emptied)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import trio
import trio.testing
from amicable_agent.sessions import Attachment
from amicable_agent.sessions.transcript import (
    MAX_PAYLOAD_CHARS,
    MAX_VALUE_CHARS,
    RECORD_KIND,
    cap_value,
    load_turn_page,
)
from amicable_protocol.messages import (
    DequeueData,
    Empty,
    InitData,
    MessageType,
    ServerMessage,
    TextData,
    TraceEvent,
    Usage,
    UserData,
)
from amicable_testing import MemoryStore

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: share test_sessions' helpers

from test_sessions import FakeEngine, drain, manager, types


class ToolEngine(FakeEngine):
    """A turn that streams text, runs a tool with a huge output and reports usage."""

    async def run_user_turn(self, host: Any, data: UserData, *, by: str | None = None) -> None:
        self.started.append(data.text)
        await host.send(MessageType.UPDATE_IN_PROGRESS, Empty())
        for text in ("I'll", "I'll write", "I'll write it."):
            await host.send(MessageType.AGENT_PARTIAL, TextData(text=text), msg_id="a1")
        await host.send(MessageType.TRACE_EVENT, TraceEvent(
            phase="tool_start", tool_name="execute", run_id="r1", assistant_msg_id="a1",
            input={"command": "npm run build"},
        ))  # fmt: skip
        try:
            await self.release.wait()
        except trio.Cancelled:
            self.cancelled.append(data.text)
            raise
        await host.send(MessageType.TRACE_EVENT, TraceEvent(
            phase="tool_end", tool_name="execute", run_id="r1", assistant_msg_id="a1",
            output="x" * 50_000,
        ))  # fmt: skip
        await host.send(MessageType.AGENT_FINAL, TextData(text="I'll write it. Done."), msg_id="a1")
        await host.send(
            MessageType.USAGE, Usage(input_tokens=2400, output_tokens=160, cost_usd=0.01)
        )
        await host.send(MessageType.UPDATE_COMPLETED, Empty())
        self.finished.append(data.text)


def _types(events: tuple[dict[str, Any], ...]) -> list[str]:
    return [e["type"] for e in events]


async def test_a_finished_turn_comes_back_in_init_as_it_was_shown() -> None:
    engine = ToolEngine()
    async with manager(engine=engine) as mgr:
        a = Attachment()
        session = await mgr.attach("s1", a)
        await session.init_reply(InitData(session_id="s1"))
        session.submit(
            MessageType.USER, UserData(session_id="s1", text="build it"), a, msg_id="c-1"
        )
        await trio.testing.wait_all_tasks_blocked()
        engine.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert types(drain(a))[-2:] == ["update_completed", "turn_ended"]
        stored = await mgr.deps.store.turn_records("s1")  # type: ignore[attr-defined]
        assert len(stored) == 1

        reply = await session.init_reply(InitData(session_id="s1"))
    assert reply.running_turn is None
    assert reply.turns_before is None
    (turn,) = reply.turns or ()
    assert turn.turn_id == "c-1"
    assert turn.seq == stored[0][0]
    events = turn.events
    # the prompt first, partials coalesced to the one before the tool card, the end last
    assert _types(events) == [
        "turn_started", "update_in_progress", "agent_partial", "trace_event", "trace_event",
        "agent_final", "usage", "update_completed", "turn_ended",
    ]  # fmt: skip
    assert events[0]["data"]["text"] == "build it"
    assert events[0]["data"]["author"] == "user"
    assert events[2]["data"]["text"] == "I'll write it."
    assert events[3]["data"]["input"] == {"command": "npm run build"}
    output = events[4]["data"]["output"]
    assert len(output) == MAX_VALUE_CHARS
    assert output.endswith("…")
    assert events[6]["data"]["input_tokens"] == 2400
    assert events[-1]["data"] == {"turn_id": "c-1", "outcome": "finished"}


async def test_a_stopped_turn_is_stored_with_its_stop_marker() -> None:
    engine = ToolEngine()
    async with manager(engine=engine) as mgr:
        a = Attachment()
        session = await mgr.attach("s1", a)
        await session.init_reply(InitData(session_id="s1"))
        session.submit(MessageType.USER, UserData(session_id="s1", text="slow"), a)
        await trio.testing.wait_all_tasks_blocked()
        session.submit(MessageType.CANCEL, None, a)
        await trio.testing.wait_all_tasks_blocked()
        reply = await session.init_reply(InitData(session_id="s1"))
    (turn,) = reply.turns or ()
    assert turn.events[-1]["data"]["outcome"] == "cancelled"
    assert "tool_start" in [e["data"].get("phase") for e in turn.events]


async def test_a_reloaded_tab_gets_the_running_turn_and_the_queue() -> None:
    engine = ToolEngine()
    async with manager(engine=engine) as mgr:
        a, b = Attachment(), Attachment()
        session = await mgr.attach("s1", a)
        await session.init_reply(InitData(session_id="s1"))
        session.submit(MessageType.USER, UserData(session_id="s1", text="first"), a, msg_id="c-1")
        await trio.testing.wait_all_tasks_blocked()
        session.submit(MessageType.USER, UserData(session_id="s1", text="second"), a, msg_id="c-2")

        await mgr.attach("s1", b)  # the reloaded tab
        reply = await session.init_reply(InitData(session_id="s1"))
        running = reply.running_turn
        assert running is not None
        assert running.turn_id == "c-1"
        assert _types(running.events)[:4] == [
            "turn_started",
            "update_in_progress",
            "agent_partial",
            "trace_event",
        ]
        assert running.events[-1]["data"]["phase"] == "tool_start"
        assert [(q.id, q.text) for q in reply.queued or ()] == [("c-2", "second")]
        assert reply.turns is None

        engine.release.set()
        await trio.testing.wait_all_tasks_blocked()
        got = drain(b)
    assert engine.finished == ["first", "second"]
    started = [m.data.text for m in got if m.type is MessageType.TURN_STARTED]  # type: ignore[union-attr]
    assert started == ["second"], "the reloaded tab sees the queued prompt start"


def _queues(messages: list[ServerMessage]) -> list[list[str]]:
    return [[q.text for q in m.data.items] for m in messages if m.type is MessageType.QUEUE]  # type: ignore[union-attr]


async def test_the_queue_is_broadcast_to_every_tab_and_a_prompt_can_be_removed() -> None:
    engine = ToolEngine()
    async with manager(engine=engine) as mgr:
        a, b = Attachment(), Attachment()
        session = await mgr.attach("s1", a)
        await mgr.attach("s1", b)
        await session.init_reply(InitData(session_id="s1"))
        session.submit(MessageType.USER, UserData(session_id="s1", text="one"), a, msg_id="c-1")
        await trio.testing.wait_all_tasks_blocked()
        drain(a)
        drain(b)
        session.submit(MessageType.USER, UserData(session_id="s1", text="two"), a, msg_id="c-2")
        session.submit(MessageType.USER, UserData(session_id="s1", text="three"), a, msg_id="c-3")
        assert _queues(drain(b)) == [["two"], ["two", "three"]], "the other tab sees the queue"
        session.submit(MessageType.DEQUEUE, DequeueData(id="c-2"), b)
        session.submit(MessageType.DEQUEUE, DequeueData(id="nope"), b)  # ignored
        assert _queues(drain(a))[-1] == ["three"]
        assert session.turns_by("local") == 0  # submitted without a user
        engine.release.set()
        await trio.testing.wait_all_tasks_blocked()
        got = drain(a)
    assert engine.started == ["one", "three"], "a removed prompt never runs"
    assert _queues(got) == [[]], "the queue empties when the last one starts"
    assert not session.turn_running


async def test_turns_are_paged_newest_first_with_a_cursor() -> None:
    store = MemoryStore()
    for i in range(25):
        await store.append_turn_event("p", RECORD_KIND, {"turn_id": f"t{i}", "events": []})
        await store.append_turn_event("p", "turn_finished", {"trigger": "user"})
    first = await load_turn_page(store, "p")
    assert [t.turn_id for t in first.turns] == [f"t{i}" for i in range(5, 25)]
    assert first.before == first.turns[0].seq
    second = await load_turn_page(store, "p", before=first.before)
    assert [t.turn_id for t in second.turns] == [f"t{i}" for i in range(5)]
    assert second.before is None


async def test_a_page_stops_growing_at_its_size_and_skips_unreadable_records() -> None:
    store = MemoryStore()
    big = [{"type": "agent_final", "data": {"text": "y" * 400_000}}]
    await store.append_turn_event("p", RECORD_KIND, "not a record")
    for i in range(4):
        await store.append_turn_event("p", RECORD_KIND, {"turn_id": f"t{i}", "events": big})
    page = await load_turn_page(store, "p")
    assert [t.turn_id for t in page.turns] == ["t2", "t3"]
    assert page.before == page.turns[0].seq
    rest = await load_turn_page(store, "p", before=page.before)
    assert [t.turn_id for t in rest.turns] == ["t0", "t1"]


def test_cap_value_cuts_strings_and_oversized_payloads() -> None:
    assert cap_value({"a": "b", "n": 3}) == {"a": "b", "n": 3}
    capped = cap_value({"content": "z" * 10_000})
    assert len(capped["content"]) == MAX_VALUE_CHARS
    many = cap_value([f"{i:04d}" * 100 for i in range(100)])
    assert isinstance(many, str)
    assert len(many) == MAX_PAYLOAD_CHARS
    assert many.endswith("…")


def test_sandbox_paths_are_shown_as_project_paths() -> None:
    from amicable_agent.sessions.transcript import project_paths

    host = "/home/u/.local/share/amicable/sandboxes/sb-1/workspace/src/App.tsx:3:7"
    assert project_paths(f"Failed to parse {host}") == "Failed to parse /src/App.tsx:3:7"
    assert project_paths("at /app/src/main.tsx (file:///app/src/x.ts)") == (
        "at /src/main.tsx (/src/x.ts)"
    )
    assert project_paths("/application/x and /apple") == "/application/x and /apple"


class HealEngine(ToolEngine):
    """Auto-heal that declines (cooldown) unless requested, then runs a visible turn."""

    async def run_runtime_error(self, host: Any, data: Any, *, by: str | None = None) -> None:
        if not data.requested:
            await trio.lowlevel.checkpoint()
            return
        await host.send(MessageType.UPDATE_IN_PROGRESS, Empty())
        await host.send(MessageType.AGENT_FINAL, TextData(text="Fixed."), msg_id="h1")
        await host.send(MessageType.UPDATE_COMPLETED, Empty())


async def test_only_an_auto_heal_that_runs_shows_a_system_prompt() -> None:
    from amicable_protocol.messages import RuntimeErrorData, RuntimeErrorInfo

    engine = HealEngine()
    async with manager(engine=engine) as mgr:
        a = Attachment()
        session = await mgr.attach("s1", a)
        await session.init_reply(InitData(session_id="s1"))
        drain(a)
        error = RuntimeErrorInfo(kind="vite_error", message="Unexpected token in /app/src/App.tsx")
        session.submit(MessageType.RUNTIME_ERROR, RuntimeErrorData(session_id="s1", error=error), a)
        await trio.testing.wait_all_tasks_blocked()
        assert drain(a) == [], "a declined auto-heal leaves no trace in the chat"
        fix = RuntimeErrorData(session_id="s1", error=error, requested=True)
        session.submit(MessageType.RUNTIME_ERROR, fix, a)
        await trio.testing.wait_all_tasks_blocked()
        got = drain(a)
        reply = await session.init_reply(InitData(session_id="s1"))
    assert types(got)[0] == "turn_started"
    start = got[0].data
    assert start.author == "system"  # type: ignore[union-attr]
    assert start.trigger == "runtime_error"  # type: ignore[union-attr]
    assert start.text == "Fix this error in the preview: Unexpected token in /src/App.tsx"  # type: ignore[union-attr]
    (turn,) = reply.turns or ()
    assert _types(turn.events)[0] == "turn_started"
