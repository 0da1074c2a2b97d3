"""SessionManager/Session without sockets: attachments, idle close on autojump_clock, slow
sockets, turn serialisation and cancellation (fake TurnEngine)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from amicable_agent.sessions import (
    Attachment,
    SessionDeps,
    SessionManager,
    open_session_manager,
)
from amicable_protocol.limits import INIT_PROMPT_CHARS
from amicable_protocol.messages import (
    Empty,
    HistoryEntry,
    InitData,
    MessageType,
    ServerMessage,
    TextData,
    UserData,
    encode_server_message,
)
from amicable_testing import FakeSandboxBackend, MemoryStore, StubEngine, unused_runtime_factory


class FakeEngine(StubEngine):
    """A TurnEngine that records calls and blocks each turn until released."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.release = trio.Event()
        self.pending: Any = None

    async def run_user_turn(self, host: Any, data: UserData, *, by: str | None = None) -> None:
        self.started.append(data.text)
        await host.send(MessageType.UPDATE_IN_PROGRESS, Empty())
        try:
            await self.release.wait()
        except trio.Cancelled:
            self.cancelled.append(data.text)
            raise
        await host.send(MessageType.AGENT_FINAL, TextData(text=f"done {data.text}"))
        await host.send(MessageType.UPDATE_COMPLETED, Empty())
        self.finished.append(data.text)

    async def resume_hitl(self, host: Any, data: Any, *, by: str | None = None) -> None:
        await trio.lowlevel.checkpoint()

    async def run_runtime_error(self, host: Any, data: Any, *, by: str | None = None) -> None:
        await trio.lowlevel.checkpoint()

    async def hitl_pending(self, host: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return self.pending

    async def history(self, host: Any) -> list[HistoryEntry]:
        await trio.lowlevel.checkpoint()
        return [HistoryEntry(role="user", text="earlier")]


@asynccontextmanager
async def manager(
    engine: Any = None, idle_timeout_s: float = 600.0
) -> AsyncIterator[SessionManager]:
    deps = SessionDeps(
        store=MemoryStore(),
        backend=FakeSandboxBackend(),
        runtime_factory=unused_runtime_factory,
        engine=engine,
        preview_url=lambda label: f"http://{label}.preview.localhost/",
        idle_timeout_s=idle_timeout_s,
    )
    async with open_session_manager(deps) as mgr:
        yield mgr


def drain(attachment: Attachment) -> list[ServerMessage]:
    out = []
    while True:
        try:
            out.append(attachment.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


def types(messages: list[ServerMessage]) -> list[str]:
    return [str(m.type) for m in messages]


async def test_two_sockets_both_receive_session_events() -> None:
    async with manager() as mgr:
        a, b = Attachment(), Attachment()
        session = await mgr.attach("s1", a)
        assert await mgr.attach("s1", b) is session
        await session.init_reply(InitData(session_id="s1"))
        drain(a)
        drain(b)
        await session.send(MessageType.UPDATE_FILE, TextData(text="Writing /src/App.tsx"))
        assert types(drain(a)) == ["update_file"]
        assert types(drain(b)) == ["update_file"]


async def test_unattended_session_closes_after_idle_timeout(autojump_clock: Any) -> None:
    async with manager(idle_timeout_s=600) as mgr:
        a = Attachment()
        session = await mgr.attach("s1", a)
        await session.init_reply(InitData(session_id="s1"))
        await trio.sleep(5000)
        assert mgr.get("s1") is session, "an attached session never idles out"
        session.detach(a)
        await trio.sleep(599)
        assert mgr.get("s1") is session
        b = Attachment()
        await mgr.attach("s1", b)  # a reload re-attaches in time: the timer restarts
        session.detach(b)
        await trio.sleep(599)
        assert mgr.get("s1") is session
        await trio.sleep(2)
        assert mgr.get("s1") is None
        assert session.closed


async def test_slow_socket_is_dropped_without_blocking_others() -> None:
    async with manager() as mgr:
        slow, fast = Attachment(queue_size=3), Attachment(queue_size=100)
        session = await mgr.attach("s1", slow)
        await mgr.attach("s1", fast)
        await session.init_reply(InitData(session_id="s1"))
        drain(fast)
        for i in range(10):
            await session.send(MessageType.AGENT_PARTIAL, TextData(text=str(i)))
        assert slow.dropped
        assert session.attachment_count == 1
        assert [m.data.text for m in drain(fast)] == [str(i) for i in range(10)]  # type: ignore[union-attr]


async def test_user_without_engine_answers_model_not_configured() -> None:
    async with manager(engine=None) as mgr:
        a = Attachment()
        session = await mgr.attach("s1", a)
        await session.init_reply(InitData(session_id="s1"))
        drain(a)
        session.submit(MessageType.USER, UserData(session_id="s1", text="hi"), a)
        (msg,) = drain(a)
        assert msg.data.error == "model_not_configured"  # type: ignore[union-attr]


async def test_turns_are_serialised_and_cancel_stops_only_the_running_one() -> None:
    engine = FakeEngine()
    async with manager(engine=engine) as mgr:
        a = Attachment()
        session = await mgr.attach("s1", a)
        reply = await session.init_reply(InitData(session_id="s1", permission_mode="bypass"))
        assert reply.conversation_history == (HistoryEntry(role="user", text="earlier"),)
        assert reply.permission_mode == "bypass"
        session.submit(MessageType.USER, UserData(session_id="s1", text="one"), a)
        session.submit(MessageType.USER, UserData(session_id="s1", text="two"), a)
        await trio.testing.wait_all_tasks_blocked()
        assert engine.started == ["one"], "the second turn waits for the first"
        session.submit(MessageType.CANCEL, None, a)
        await trio.testing.wait_all_tasks_blocked()
        assert engine.cancelled == ["one"]
        assert engine.started == ["one", "two"]
        engine.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert engine.finished == ["two"]
        assert "update_completed" in types(drain(a))
        events = await mgr.deps.store.turn_events("s1")  # type: ignore[attr-defined]
        assert [kind for kind, _ in events if kind != "turn_record"] == [
            "turn_started",
            "turn_cancelled",
            "turn_started",
            "turn_finished",
        ]


async def test_turn_survives_socket_reload() -> None:
    engine = FakeEngine()
    async with manager(engine=engine) as mgr:
        a = Attachment()
        session = await mgr.attach("s1", a)
        await session.init_reply(InitData(session_id="s1"))
        session.submit(MessageType.USER, UserData(session_id="s1", text="build"), a)
        await trio.testing.wait_all_tasks_blocked()
        session.detach(a)  # the page reloads
        b = Attachment()
        assert await mgr.attach("s1", b) is session
        engine.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert engine.cancelled == []
        got = types(drain(b))
        assert got[-3:] == ["agent_final", "update_completed", "turn_ended"]


async def test_user_turn_refused_while_hitl_pending() -> None:
    engine = FakeEngine()
    engine.pending = object()
    async with manager(engine=engine) as mgr:
        a = Attachment()
        session = await mgr.attach("s1", a)
        await session.init_reply(InitData(session_id="s1"))
        drain(a)
        session.submit(MessageType.USER, UserData(session_id="s1", text="x"), a)
        await trio.testing.wait_all_tasks_blocked()
        assert engine.started == []
        (msg,) = drain(a)
        assert "HITL approval pending" in msg.data.error  # type: ignore[union-attr]


async def test_a_broken_session_does_not_take_down_the_others() -> None:
    class BrokenStore(MemoryStore):
        async def get_project(self, project_id: str) -> Any:
            if project_id == "bad":
                raise RuntimeError("database is on fire")
            return await super().get_project(project_id)

    deps = SessionDeps(
        store=BrokenStore(),
        backend=FakeSandboxBackend(),
        runtime_factory=unused_runtime_factory,
        engine=None,
        preview_url=lambda label: f"http://{label}.preview.localhost/",
    )
    async with open_session_manager(deps) as mgr:
        good = await mgr.attach("good", Attachment())
        await good.init_reply(InitData(session_id="good"))
        bad = await mgr.attach("bad", Attachment())
        await trio.testing.wait_all_tasks_blocked()
        assert bad.closed
        assert mgr.get("good") is good
        assert not good.closed


def test_idle_sandbox_selection() -> None:
    from amicable_agent.sandboxes.local.backend import idle_sandboxes

    seen = {"a": 100.0, "b": 500.0, "c": 899.0}
    assert idle_sandboxes(seen, now=1000.0, ttl_s=300) == ["a", "b"]
    assert idle_sandboxes(seen, now=1000.0, ttl_s=0) == []
    assert idle_sandboxes({}, now=1000.0, ttl_s=1) == []


async def test_a_client_that_stops_reading_is_disconnected(autojump_clock: Any) -> None:
    from amicable_agent.auth.identity import LOCAL_USER, Caller
    from amicable_agent.http.ws import SEND_TIMEOUT_S, serve_socket

    class StalledSocket:
        def __init__(self) -> None:
            self.frames = ['{"type": "ping", "data": {}}']
            self.closed_with: int | None = None

        async def receive(self) -> str:
            if self.frames:
                return self.frames.pop()
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(self, data: str | bytes) -> None:
            await trio.sleep_forever()  # the client never reads

        async def close(self, code: int, reason: str = "") -> None:
            self.closed_with = code

    async with manager() as mgr:
        start = trio.current_time()
        with trio.fail_after(SEND_TIMEOUT_S * 4):
            await serve_socket(
                mgr,
                StalledSocket(),
                queue_size=4,
                caller=Caller(LOCAL_USER, "local"),
                access=None,  # type: ignore[arg-type]
            )
        assert trio.current_time() - start >= SEND_TIMEOUT_S


async def test_attached_session_keeps_its_sandbox_alive(autojump_clock: Any) -> None:
    async with manager() as mgr:
        a = Attachment()
        session = await mgr.attach("s1", a)
        await session.init_reply(InitData(session_id="s1"))
        backend = mgr.deps.backend
        before = len(backend.touched)  # type: ignore[attr-defined]
        await trio.sleep(3600)
        assert len(backend.touched) - before >= 50  # type: ignore[attr-defined]
        session.detach(a)
        await trio.sleep(120)
        settled = len(backend.touched)  # type: ignore[attr-defined]
        await trio.sleep(300)
        assert len(backend.touched) == settled, "no keep-alive without a socket"  # type: ignore[attr-defined]


async def test_session_whose_sandbox_died_is_restarted_on_init() -> None:
    async with manager() as mgr:
        first = await mgr.attach("s1", Attachment())
        await first.init_reply(InitData(session_id="s1"))
        backend = mgr.deps.backend
        handle = first.handle
        assert handle is not None
        await backend.delete(handle.sandbox_id)  # the runtime crashed / was reaped
        b = Attachment()
        second = await mgr.attach("s1", b)
        assert second is not first
        assert first.closed
        reply = await second.init_reply(InitData(session_id="s1"))
        assert reply.sandbox_id == handle.sandbox_id
        assert backend.ensure_calls == ["s1", "s1"]  # type: ignore[attr-defined]


def partial(text: str, msg_id: str) -> ServerMessage:
    return ServerMessage(
        type=MessageType.AGENT_PARTIAL, data=TextData(text=text), session_id="s1", id=msg_id
    )


def other(kind: MessageType, text: str) -> ServerMessage:
    return ServerMessage(type=kind, data=TextData(text=text), session_id="s1")


def summary(messages: list[ServerMessage]) -> list[tuple[str, str]]:
    return [(str(m.type), m.data.text) for m in messages]  # type: ignore[union-attr]


def test_superseded_partials_are_coalesced_in_order() -> None:
    a = Attachment()
    a.send_nowait(partial("a", "x"))
    a.send_nowait(other(MessageType.UPDATE_FILE, "Writing /src/App.tsx"))
    a.send_nowait(partial("ab", "x"))
    a.send_nowait(partial("z", "y"))
    a.send_nowait(partial("abc", "x"))
    a.send_nowait(other(MessageType.AGENT_FINAL, "abcd"))
    assert len(a) == 4
    # The produced order minus superseded partials: a newer partial never jumps ahead of a
    # message produced before it, and no other message is skipped.
    assert summary(drain(a)) == [
        ("update_file", "Writing /src/App.tsx"),
        ("agent_partial", "z"),
        ("agent_partial", "abc"),
        ("agent_final", "abcd"),
    ]
    assert a.coalesced == 2


def test_a_partial_already_taken_is_not_superseded() -> None:
    a = Attachment()
    a.send_nowait(partial("a", "x"))
    assert a.receive_nowait().data.text == "a"  # type: ignore[union-attr]
    a.send_nowait(partial("ab", "x"))
    a.send_nowait(partial("abc", "x"))
    assert summary(drain(a)) == [("agent_partial", "abc")]
    a.send_nowait(partial("abcd", "x"))  # nothing queued for x any more: queued as is
    assert summary(drain(a)) == [("agent_partial", "abcd")]


def test_a_long_stream_to_a_slow_socket_stays_within_the_queue() -> None:
    a = Attachment(queue_size=3)
    a.send_nowait(other(MessageType.UPDATE_FILE, "f"))
    for i in range(1000):
        assert a.send_nowait(partial("t" * i, "x"))
    assert not a.dropped
    assert len(a) == 2
    # Distinct messages still count: the queue limit applies to them.
    a.send_nowait(other(MessageType.UPDATE_FILE, "g"))
    assert not a.send_nowait(other(MessageType.UPDATE_FILE, "h"))
    assert a.dropped
    assert summary(drain(a)) == [
        ("update_file", "f"),
        ("agent_partial", "t" * 999),
        ("update_file", "g"),
    ]
    with pytest.raises(trio.EndOfChannel):
        a.receive_nowait()


async def test_a_broadcast_is_encoded_once_for_all_sockets(monkeypatch: Any) -> None:
    from amicable_agent.sessions import attachment as sessions_module

    calls: list[ServerMessage] = []
    real = sessions_module.encode_server_message

    def counting(message: ServerMessage) -> str:
        calls.append(message)
        return real(message)

    monkeypatch.setattr(sessions_module, "encode_server_message", counting)
    async with manager() as mgr:
        a, b, c = Attachment(), Attachment(), Attachment()
        session = await mgr.attach("s1", a)
        await mgr.attach("s1", b)
        await mgr.attach("s1", c)
        await session.init_reply(InitData(session_id="s1"))
        for att in (a, b, c):
            drain(att)
        await session.send(MessageType.AGENT_PARTIAL, TextData(text="one"), msg_id="m")
        await session.send(MessageType.AGENT_PARTIAL, TextData(text="one two"), msg_id="m")
        await session.send(MessageType.AGENT_FINAL, TextData(text="one two."), msg_id="m")
        frames = [[(await att.receive()).frame for _ in range(2)] for att in (a, b, c)]
        assert frames[0] == frames[1] == frames[2]
        assert [json.loads(f)["data"]["text"] for f in frames[0]] == ["one two", "one two."]
        assert len(calls) == 2, "one encoding per message, none for the superseded partial"


async def test_writer_wakes_for_a_message_and_ends_after_drop() -> None:
    a = Attachment()
    got: list[str] = []

    async def writer() -> None:
        while True:
            try:
                out = await a.receive()
            except trio.EndOfChannel:
                got.append("end")
                return
            got.append(out.message.data.text)  # type: ignore[union-attr]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        a.send_nowait(partial("a", "x"))
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["a"]
        a.send_nowait(partial("ab", "x"))
        a.send_nowait(partial("abc", "x"))
        a.drop()
        assert not a.send_nowait(partial("abcd", "x"))
    assert got == ["a", "abc", "end"]


async def test_provisioning_stages_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """An operator can follow provisioning (and see why it failed) in the agent's log."""
    backend = FakeSandboxBackend()
    backend.fail_reason = "the template 'vite' is missing"
    deps = SessionDeps(
        store=MemoryStore(),
        backend=backend,
        runtime_factory=unused_runtime_factory,
        engine=None,
        preview_url=lambda label: f"http://{label}.preview.localhost/",
        idle_timeout_s=600.0,
    )
    caplog.set_level("INFO", logger="amicable_agent.sessions.sandbox")
    async with open_session_manager(deps) as mgr:
        session = await mgr.attach("s-log", Attachment())
        await session.wait_ready()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert any(lvl == "INFO" and ": queued after" in msg for lvl, msg in lines), lines
    assert any(
        lvl == "WARNING" and ": failed after" in msg and "the template 'vite' is missing" in msg
        for lvl, msg in lines
    ), lines


async def test_a_turn_cut_by_a_closing_session_is_checkpointed_when_the_project_opens(
    tmp_path: Path,
) -> None:
    from amicable_agent.sessions.checkpoint_queue import PENDING_KEY
    from amicable_agent.sessions.checkpoints import Checkpoints
    from amicable_testing.workspace_runtime import WorkspaceRuntime

    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "App.tsx").write_text("v1\n")

    @asynccontextmanager
    async def factory(handle: Any) -> AsyncIterator[WorkspaceRuntime]:
        await trio.lowlevel.checkpoint()
        yield WorkspaceRuntime(root)

    store = MemoryStore()

    def deps(engine: Any) -> SessionDeps:
        return SessionDeps(
            store=store,
            backend=FakeSandboxBackend(),
            runtime_factory=factory,
            engine=engine,
            preview_url=lambda label: f"http://{label}.preview.localhost/",
        )

    engine = FakeEngine()
    async with open_session_manager(deps(engine)) as mgr:
        a = Attachment()
        session = await mgr.attach("s1", a)
        await session.init_reply(InitData(session_id="s1"))
        await session.baseline_made()  # made by the worker, after INIT's reply
        session.submit(MessageType.USER, UserData(session_id="s1", text="Big change"), a)
        await trio.testing.wait_all_tasks_blocked()
        assert engine.started == ["Big change"]
        (root / "src" / "App.tsx").write_text("half done\n")  # what the turn wrote so far
    # The agent stopped mid-turn (the manager closed): no checkpoint, but a note in the store.
    checkpoints = Checkpoints(WorkspaceRuntime(root))
    assert [c.title for c in await checkpoints.list()] == ["Project created"]
    assert await store.load_state("s1", PENDING_KEY) == ["interrupted: Big change"]

    async with open_session_manager(deps(FakeEngine())) as mgr:
        session = await mgr.attach("s1", Attachment())
        await session.init_reply(InitData(session_id="s1"))
        await session.baseline_made()  # with the checkpoint of what was left
    assert [(c.title, c.files_changed) for c in await checkpoints.list()] == [
        ("interrupted: Big change", 1),
        ("Project created", 1),
    ]
    assert await store.load_state("s1", PENDING_KEY) is None


async def test_a_project_with_a_20_mb_prompt_still_opens_under_1_mib() -> None:
    store = MemoryStore()
    huge = "Build me a shop. " * 1_250_000  # 21 MB
    await store.create_project("Shop", template_id="vite", prompt=huge, project_id="s1")
    for i in range(20):  # and a chat from before the user text limit
        await store.append_chat("s1", "user" if i % 2 == 0 else "assistant", f"{i}:" + "y" * 10**6)
    deps = SessionDeps(
        store=store,
        backend=FakeSandboxBackend(),
        runtime_factory=unused_runtime_factory,
        engine=None,
        preview_url=lambda label: f"http://{label}.preview.localhost/",
    )
    async with open_session_manager(deps) as mgr:
        session = await mgr.attach("s1", Attachment())
        reply = await session.init_reply(InitData(session_id="s1"))
        frame = encode_server_message(session.message(MessageType.INIT, reply))
    assert len(frame.encode()) < 1024 * 1024
    prompt = reply.project.project_prompt
    assert prompt is not None
    assert prompt.startswith("Build me a shop.")
    assert prompt.endswith("…")
    assert len(prompt) <= INIT_PROMPT_CHARS
    assert reply.conversation_history[-1].text.startswith("19:")  # the newest is kept
