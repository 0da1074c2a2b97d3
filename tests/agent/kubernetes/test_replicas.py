"""Agent replicas sharing projects through the turn lease: two and three real agent
processes on one real PostgreSQL (see :mod:`.replicas`).

Sockets of one project on different replicas see the holder's turn, in order; prompts sent
to two replicas at once run one after the other; ``kill -9`` of the holder mid-turn (in a
tool call, while streaming) hands the project to another replica, which checkpoints what the
dead turn wrote and tells every editor the turn was interrupted; a holder paused past its
lease (SIGSTOP) and resumed cannot write any more.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.kubernetes.backend import derive_runtime_token
from amicable_testing import ws_recv_until, ws_send
from amicable_testing.fake_anthropic import FakeAnthropic, Reply, Text, ToolUse
from amicable_testing.fake_kube import FakeKube
from amicable_testing.postgres import PostgresServer, postgres_available
from trio_websocket import open_websocket_url

from .replicas import LEASE_TTL_S, Cluster, open_project, wait_dead
from .test_server_integration import SECRET, real_runtime
from .test_snapshot_reaping import git, lay_template, write

pytestmark = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not installed")

#: The message types of a turn every socket must see identically (partials may coalesce).
TURN_TYPES = ("agent_final", "update_file", "update_completed", "error", "trace_event")


@pytest.fixture(autouse=True)
def _outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def sid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def model() -> FakeAnthropic:
    return FakeAnthropic()


@pytest.fixture
async def cluster(
    fake: FakeKube,
    tmp_path: Path,
    nursery: trio.Nursery,
    postgres: PostgresServer,
    model: FakeAnthropic,
    sid: str,
) -> AsyncIterator[Cluster]:
    llm_url = await nursery.start(model.serve)
    lay_template(tmp_path / "workspace")
    token = derive_runtime_token(SECRET, sandbox_id_for(sid))
    async with real_runtime(tmp_path, token) as runtime_port:
        yield Cluster(tmp_path, fake.url, runtime_port, llm_url, postgres.create_database())


def turn_view(messages: list[Any]) -> list[tuple[str, str]]:
    """What a socket saw of turns: (type, the text/line/error of it)."""
    out = []
    for m in messages:
        kind = str(m.type)
        if kind not in TURN_TYPES:
            continue
        data = m.data
        text = getattr(data, "text", None) or getattr(data, "error", None)
        out.append((kind, str(text or getattr(data, "tool_name", "") or "")))
    return out


async def collect_until(ws: Any, kind: str, count: int, timeout_s: float = 90) -> list[Any]:
    seen: list[Any] = []
    with trio.fail_after(timeout_s):
        while sum(1 for m in seen if str(m.type) == kind) < count:
            seen.extend(await ws_recv_until(ws, kind, timeout_s=timeout_s))
    return seen


async def wait_for(ws: Any, pred: Any, timeout_s: float = 60) -> list[Any]:
    seen: list[Any] = []
    from amicable_testing import ws_recv

    with trio.fail_after(timeout_s):
        while True:
            msg = await ws_recv(ws, timeout_s=timeout_s)
            seen.append(msg)
            if pred(msg):
                return seen


def is_error(code: str) -> Any:
    return lambda m: str(m.type) == "error" and getattr(m.data, "error", None) == code


async def test_two_replicas_see_one_turn_in_order_and_prompts_never_interleave(
    cluster: Cluster, model: FakeAnthropic, sid: str
) -> None:
    async with cluster.replica("agent-a") as a, cluster.replica("agent-b") as b:
        async with open_websocket_url(a.ws) as ws_a, open_websocket_url(b.ws) as ws_b:
            await open_project(a, ws_a, sid)
            await cluster.wait_holder(sid, "agent-a")
            await open_project(b, ws_b, sid)
            model.add(
                Reply([Text("One, slowly."), write("/src/one.txt", "1\n")], delay_s=0.02),
                Reply([Text("Done one.")], delay_s=0.02),
                Reply([Text("Two."), write("/src/two.txt", "2\n")]),
                Reply([Text("Done two.")]),
            )
            # Both prompts at once, on different replicas: the one reaching B is queued for
            # the holder (A) and runs after A's own.
            await ws_send(ws_a, {"type": "user", "data": {"session_id": sid, "text": "first"}})
            await ws_send(ws_b, {"type": "user", "data": {"session_id": sid, "text": "second"}})
            seen_a = await collect_until(ws_a, "update_completed", 2)
            seen_b = await collect_until(ws_b, "update_completed", 2)
        view_a, view_b = turn_view(seen_a), turn_view(seen_b)
        finals = [text for kind, text in view_a if kind == "agent_final"]
        assert len(finals) == 2, view_a
        assert finals[0].endswith("Done one."), finals
        assert "Two." not in finals[0], finals
        assert finals[1].endswith("Done two."), finals
        assert "One" not in finals[1], finals
        assert view_b == view_a  # the other replica's socket saw the same turn, in order
        for seen in (seen_a, seen_b):
            partials = [m.data.text for m in seen if str(m.type) == "agent_partial"]
            assert partials, "no streamed text reached the socket"
        # Never interleaved: turn two's first model call saw all of turn one.
        assert len(model.requests) == 4
        second_call = json.dumps(model.requests[2].body["messages"])
        assert "Done one." in second_call
        assert "second" in second_call
        assert "second" not in json.dumps(model.requests[1].body["messages"])
        assert (await a.health())["leases"] == 1
        assert (await b.health())["leases"] == 0


async def test_killing_the_holder_in_a_tool_call_hands_the_turn_to_another_replica(
    cluster: Cluster, model: FakeAnthropic, sid: str, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    async with (
        cluster.replica("agent-a") as a,
        cluster.replica("agent-b") as b,
        cluster.replica("agent-c") as c,
    ):
        async with (
            open_websocket_url(a.ws) as ws_a,
            open_websocket_url(b.ws) as ws_b,
            open_websocket_url(c.ws) as ws_c,
        ):
            await open_project(a, ws_a, sid)
            first = await cluster.wait_holder(sid, "agent-a")
            await open_project(b, ws_b, sid)
            await open_project(c, ws_c, sid)
            blue = "export default () => <h1>Blue</h1>;\n"
            model.add(
                Reply([Text("Making it blue."), write("/src/App.tsx", blue)]),
                Reply([Text("Checking."), ToolUse("execute", {"command": "sleep 120"})]),
            )
            # The prompt reaches B; A (the holder) runs it; C's socket follows through the store.
            await ws_send(ws_b, {"type": "user", "data": {"session_id": sid, "text": "Blue"}})
            await wait_for(ws_c, lambda m: "sleep 120" in str(getattr(m.data, "text", "")))
            a.kill()
            await wait_dead(a)
            notices = []
            for ws in (ws_b, ws_c):
                seen = await wait_for(ws, is_error("turn_interrupted"), LEASE_TTL_S * 3 + 60)
                notices.append(seen[-1].data.detail)
            lease = await cluster.holder(sid)
            assert lease is not None
            assert lease[0] in ("agent-b", "agent-c")
            assert lease[1] > first
            new = b if lease[0] == "agent-b" else c
            # What the dead turn wrote is in a checkpoint of its own.
            assert "interrupted: Blue" in notices[0]
            with trio.fail_after(60):
                while "interrupted: Blue" not in git(workspace, "log", "--format=%s"):
                    await trio.sleep(0.1)
            assert git(workspace, "show", "HEAD:src/App.tsx") == blue
            (conversation,) = cluster.query(
                "SELECT messages_json FROM conversations WHERE project_id=%s", sid
            )[0]
            assert "Making it blue." in conversation
            assert "/src/App.tsx" in conversation
            # The user continues from there, on any replica.
            model.add(Reply([Text("Carrying on.")]))
            await ws_send(ws_c, {"type": "user", "data": {"session_id": sid, "text": "go on"}})
            for ws in (ws_b, ws_c):
                done = await collect_until(ws, "update_completed", 1)
                assert ("agent_final", "Carrying on.") in turn_view(done), turn_view(done)
        async with open_websocket_url(new.ws) as ws:
            await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
            init = (await ws_recv_until(ws, "init", timeout_s=60))[-1]
        history = [(e.role, e.text) for e in init.data.conversation_history]
        assert any("interrupted" in text and role == "assistant" for role, text in history)
        assert history[-1] == ("assistant", "Carrying on.")


async def test_killing_the_holder_while_streaming_keeps_what_was_streamed(
    cluster: Cluster, model: FakeAnthropic, sid: str
) -> None:
    async with cluster.replica("agent-a") as a, cluster.replica("agent-b") as b:
        async with open_websocket_url(a.ws) as ws_a, open_websocket_url(b.ws) as ws_b:
            await open_project(a, ws_a, sid)
            await cluster.wait_holder(sid, "agent-a")
            await open_project(b, ws_b, sid)
            words = " ".join(f"word{i}" for i in range(400))
            model.add(Reply([Text(words)], delay_s=0.02))
            await ws_send(ws_a, {"type": "user", "data": {"session_id": sid, "text": "talk"}})
            seen = await wait_for(
                ws_b,
                lambda m: str(m.type) == "agent_partial" and "word30 " in m.data.text,
            )
            a.kill()
            await wait_dead(a)
            streamed = [m.data.text for m in seen if str(m.type) == "agent_partial"][-1]
            seen = await wait_for(ws_b, is_error("turn_interrupted"), LEASE_TTL_S * 3 + 60)
            partials = [m.data.text for m in seen if str(m.type) == "agent_partial"]
            streamed = partials[-1] if partials else streamed
        async with open_websocket_url(b.ws) as ws:
            await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
            init = (await ws_recv_until(ws, "init", timeout_s=60))[-1]
        role, text = [(e.role, e.text) for e in init.data.conversation_history][-1]
        assert role == "assistant"
        assert text.startswith(streamed)  # nothing the model streamed is lost
        assert "interrupted" in text
        assert await cluster.holder(sid) == ("agent-b", 2)


async def test_a_paused_holder_cannot_write_after_another_replica_took_over(
    cluster: Cluster, model: FakeAnthropic, sid: str
) -> None:
    async with (
        cluster.replica("agent-a") as a,
        cluster.replica("agent-b") as b,
        open_websocket_url(a.ws) as ws_a,
        open_websocket_url(b.ws) as ws_b,
    ):
        await open_project(a, ws_a, sid)
        await cluster.wait_holder(sid, "agent-a")
        await open_project(b, ws_b, sid)
        model.add(
            Reply(
                [
                    Text("Waiting."),
                    ToolUse("execute", {"command": "sleep 1; echo LATE_$((6*7))"}),
                ]
            ),
            Reply([Text("Stale holder text.")]),
        )
        await ws_send(ws_a, {"type": "user", "data": {"session_id": sid, "text": "wait"}})
        await wait_for(ws_b, lambda m: "sleep 1" in str(getattr(m.data, "text", "")))
        a.signal(signal.SIGSTOP)
        await wait_for(ws_b, is_error("turn_interrupted"), LEASE_TTL_S * 3 + 60)
        assert await cluster.holder(sid) == ("agent-b", 2)
        before = cluster.query("SELECT messages_json FROM conversations WHERE project_id=%s", sid)
        a.signal(signal.SIGCONT)
        # A wakes up mid-turn, finishes its tool call and tries to store it: refused.
        with trio.fail_after(60):
            while (await a.health())["refused_writes"] < 1:
                await trio.sleep(0.1)
        with trio.fail_after(60):
            while (await a.health())["leases"] != 0:
                await trio.sleep(0.1)
        after = cluster.query("SELECT messages_json FROM conversations WHERE project_id=%s", sid)
        assert after == before
        assert await cluster.holder(sid) == ("agent-b", 2)
        assert "LATE_42" not in json.dumps(after)


async def test_sigterm_drains_the_holder_and_hands_the_project_over(
    cluster: Cluster, model: FakeAnthropic, sid: str
) -> None:
    async with (
        cluster.replica("agent-a", AMICABLE_SHUTDOWN_GRACE_S="60") as a,
        cluster.replica("agent-b") as b,
        open_websocket_url(a.ws) as ws_a,
        open_websocket_url(b.ws) as ws_b,
    ):
        await open_project(a, ws_a, sid)
        await cluster.wait_holder(sid, "agent-a")
        await open_project(b, ws_b, sid)
        model.add(
            Reply([Text("Working."), ToolUse("execute", {"command": "sleep 2"})]),
            Reply([Text("Finished on A.")]),
            Reply([Text("Ran on B.")]),
        )
        await ws_send(ws_a, {"type": "user", "data": {"session_id": sid, "text": "work"}})
        await wait_for(ws_b, lambda m: "sleep 2" in str(getattr(m.data, "text", "")))
        a.signal(signal.SIGTERM)
        async with httpx.AsyncClient(timeout=5) as client:
            with trio.fail_after(30):  # readiness fails while A drains
                while (await client.get(f"{a.http}/readyz")).status_code != 503:
                    await trio.sleep(0.05)
            body = (await client.get(f"{a.http}/readyz")).json()
        assert body["error"] == "draining"
        # A prompt arriving meanwhile waits for the next holder instead of starting on A.
        await ws_send(ws_b, {"type": "user", "data": {"session_id": sid, "text": "next"}})
        first = await collect_until(ws_b, "update_completed", 1)
        assert any(k == "agent_final" and t.endswith("Finished on A.") for k, t in turn_view(first))
        assert not any(is_error("turn_interrupted")(m) for m in first)
        with trio.fail_after(60):
            await a.process.wait()
        assert a.process.returncode == 0
        second = await collect_until(ws_b, "update_completed", 1)
        assert any(k == "agent_final" and t.endswith("Ran on B.") for k, t in turn_view(second))
        assert not any(is_error("turn_interrupted")(m) for m in second)
        assert await cluster.holder(sid) == ("agent-b", 2)


async def test_a_pending_approval_survives_its_replica(
    cluster: Cluster, model: FakeAnthropic, sid: str, tmp_path: Path
) -> None:
    review = {"DEEPAGENTS_HITL_INTERRUPT_ON_JSON": '["write_file"]'}
    green = "export default () => <h1>Green</h1>;\n"
    async with (
        cluster.replica("agent-a", **review) as a,
        cluster.replica("agent-b", **review) as b,
        open_websocket_url(a.ws) as ws_a,
        open_websocket_url(b.ws) as ws_b,
    ):
        await open_project(a, ws_a, sid)
        await cluster.wait_holder(sid, "agent-a")
        await open_project(b, ws_b, sid)
        model.add(Reply([Text("May I?"), write("/src/App.tsx", green)]))
        await ws_send(ws_b, {"type": "user", "data": {"session_id": sid, "text": "green"}})
        asked = (await wait_for(ws_b, lambda m: str(m.type) == "hitl_request"))[-1]
        interrupt_id = asked.data.interrupt_id
        # The turn ends waiting for the review (its running-turn record is cleared).
        with trio.fail_after(60):
            while cluster.query(
                "SELECT 1 FROM project_state WHERE project_id=%s AND key='turn_running'", sid
            ):
                await trio.sleep(0.05)
        a.kill()
        await wait_dead(a)
        await cluster.wait_holder(sid, "agent-b", LEASE_TTL_S * 3 + 60)
        async with open_websocket_url(b.ws) as ws:
            await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
            init = (await ws_recv_until(ws, "init", timeout_s=60))[-1]
            assert init.data.hitl_pending is not None
            assert init.data.hitl_pending.interrupt_id == interrupt_id
            model.add(Reply([Text("Applied.")]))
            decision = {"decisions": [{"type": "approve"}]}
            await ws_send(ws, {"type": "hitl_response", "data": {
                "session_id": sid, "interrupt_id": interrupt_id, "response": decision}})  # fmt: skip
            done = await collect_until(ws, "update_completed", 1)
        assert any(k == "agent_final" and t.endswith("Applied.") for k, t in turn_view(done))
        assert (tmp_path / "workspace" / "src" / "App.tsx").read_text() == green


async def test_auto_retry_runs_the_cut_turn_again_on_the_new_holder(
    cluster: Cluster, model: FakeAnthropic, sid: str
) -> None:
    retry = {"AMICABLE_TURN_AUTO_RETRY": "1"}
    async with (
        cluster.replica("agent-a", **retry) as a,
        cluster.replica("agent-b", **retry) as b,
        open_websocket_url(a.ws) as ws_a,
        open_websocket_url(b.ws) as ws_b,
    ):
        await open_project(a, ws_a, sid)
        await cluster.wait_holder(sid, "agent-a")
        await open_project(b, ws_b, sid)
        model.add(Reply([Text("Starting."), ToolUse("execute", {"command": "sleep 120"})]))
        await ws_send(ws_a, {"type": "user", "data": {"session_id": sid, "text": "retry me"}})
        await wait_for(ws_b, lambda m: "sleep 120" in str(getattr(m.data, "text", "")))
        model.add(Reply([Text("Retried.")]))
        a.kill()
        await wait_dead(a)
        seen = await wait_for(ws_b, is_error("turn_interrupted"), LEASE_TTL_S * 3 + 60)
        assert "being run again" in seen[-1].data.detail
        done = await collect_until(ws_b, "update_completed", 1)
        assert any(k == "agent_final" and t.endswith("Retried.") for k, t in turn_view(done))
        assert len(model.requests) == 2
        last_user = model.requests[1].body["messages"][-1]
        assert "retry me" in json.dumps(last_user)
        assert await cluster.holder(sid) == ("agent-b", 2)
