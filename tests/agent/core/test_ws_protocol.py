"""Protocol conformance over a real WebSocket against a real agent server (fake sandboxes)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import trio
from amicable_protocol.messages import MAX_FRAME_BYTES
from amicable_testing import StubEngine, ws_expect_close, ws_recv, ws_recv_until, ws_send
from trio_websocket import open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage


def editor_init(session_id: str) -> dict[str, object]:
    """An init frame exactly as the existing editor sends it."""
    return {
        "type": "init",
        "data": {"session_id": session_id, "permission_mode": "default", "thinking_level": "none"},
        "id": str(uuid.uuid4()),
        "timestamp": 1760000000000,
    }


async def test_init_reports_stages_then_public_init_reply(agent) -> None:
    sid = str(uuid.uuid4())
    async with open_websocket_url(agent.ws) as ws:
        await ws_send(ws, editor_init(sid))
        msgs = await ws_recv_until(ws, "init")
    stages = [m.data.stage for m in msgs if str(m.type) == "sandbox_status"]
    assert stages == ["queued", "creating", "starting_runtime", "starting_preview", "ready"]
    init = msgs[-1]
    assert init.session_id == sid
    raw = json.loads(
        json.dumps(__import__("amicable_protocol.messages").messages.server_message_to_json(init))
    )["data"]
    assert set(raw) == {
        "url",
        "sandbox_id",
        "exists",
        "app_id",
        "template_id",
        "project",
        "conversation_history",
        "permission_mode",
        "thinking_level",
    }
    assert raw["app_id"] == sid
    assert raw["exists"] is False
    assert raw["project"]["name"] == "Untitled"
    assert raw["url"] == f"http://{raw['project']['slug']}.preview.localhost:8123/"
    assert raw["sandbox_id"].startswith("amicable-")


async def test_second_init_resumes_with_exists(agent) -> None:
    sid = str(uuid.uuid4())
    async with open_websocket_url(agent.ws) as ws:
        await ws_send(ws, editor_init(sid))
        first = (await ws_recv_until(ws, "init"))[-1]
    async with open_websocket_url(agent.ws + "ws") as ws:
        await ws_send(ws, editor_init(sid))
        second = (await ws_recv_until(ws, "init"))[-1]
    assert first.data.exists is False
    assert second.data.exists is True, "a reload must not resend the creation prompt"
    assert second.data.sandbox_id == first.data.sandbox_id
    assert second.data.project.slug == first.data.project.slug


async def test_ping_gets_pong_never_ping(agent) -> None:
    async with open_websocket_url(agent.ws) as ws:
        await ws_send(ws, {"type": "ping", "data": {}})
        msg = await ws_recv(ws)
        assert str(msg.type) == "pong"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1,2]", "invalid_json"),
        ('{"type": "nope", "data": {}}', "unknown_message_type"),
        ('{"type": "user", "data": {"session_id": 5}}', "invalid_field"),
        (
            '{"type": "init", "data": {"session_id": "x", "permission_mode": "yolo"}}',
            "invalid_field",
        ),
        ('{"type": 3}', "invalid_field"),
        (json.dumps({"type": "user", "data": {"session_id": "x", "text": "a" * 100_001}}),
         "text_too_long"),
        ('{"type": "user", "data": {"session_id": "s", "text": "\\ud800"}}', "invalid_json"),
        ('{"type": "ping", "data": {"x": ' + "[" * 100 + "]" * 100 + "}}", "invalid_json"),
    ],
)  # fmt: skip
async def test_bad_frames_get_error_and_socket_stays_open(agent, frame: str, code: str) -> None:
    async with open_websocket_url(agent.ws) as ws:
        await ws_send(ws, frame)
        msg = await ws_recv(ws)
        assert str(msg.type) == "error"
        assert msg.data.error == code
        assert msg.data.detail
        await ws_send(ws, {"type": "ping", "data": {}})
        assert str((await ws_recv(ws)).type) == "pong"


async def test_user_before_init_is_an_error_not_a_close(agent) -> None:
    async with open_websocket_url(agent.ws) as ws:
        await ws_send(ws, {"type": "user", "data": {"session_id": "abc", "text": "hi"}})
        msg = await ws_recv(ws)
        assert msg.data.error == "not_initialized"


@pytest.mark.parametrize("data", [{}, {"session_id": ""}, {"session_id": "   "}])
async def test_init_without_session_id_closes_1008(agent, data: dict[str, str]) -> None:
    async with open_websocket_url(agent.ws) as ws:
        await ws_send(ws, {"type": "init", "data": data})
        msg = await ws_recv(ws)
        assert msg.data.error == "missing_session_id"
        assert await ws_expect_close(ws) == 1008


async def test_user_without_model_explains_api_key(agent) -> None:
    sid = str(uuid.uuid4())
    async with open_websocket_url(agent.ws) as ws:
        await ws_send(ws, editor_init(sid))
        await ws_recv_until(ws, "init")
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "make a todo app"}})
        msg = await ws_recv(ws)
        assert msg.data.error == "model_not_configured"
        assert "ANTHROPIC_API_KEY" in msg.data.detail


async def test_frame_over_16_mib_closes_1009(agent) -> None:
    async with open_websocket_url(agent.ws, max_message_size=MAX_FRAME_BYTES * 2) as ws:
        await ws_send(ws, "x" * (MAX_FRAME_BYTES + 10))
        assert await ws_expect_close(ws) == 1009


async def test_foreign_origin_closes_1008_and_api_403(agent) -> None:
    own = f"http://127.0.0.1:{agent.ports.public}"
    for foreign in ("https://evil.example", "http://localhost:5173"):  # no port wildcards
        async with open_websocket_url(agent.ws, extra_headers=[("Origin", foreign)]) as ws:
            assert await ws_expect_close(ws) == 1008
    async with httpx.AsyncClient() as client:
        for foreign in ("https://evil.example", "http://localhost:5173"):
            bad = await client.get(agent.http + "/api/projects", headers={"Origin": foreign})
            assert bad.status_code == 403
            assert bad.json()["error"] == "forbidden_origin"
            assert "access-control-allow-origin" not in bad.headers
        good = await client.get(agent.http + "/api/projects", headers={"Origin": own})
        assert good.status_code == 200


async def test_own_origin_allowed_on_websocket(agent) -> None:
    own = f"http://localhost:{agent.ports.public}"
    async with open_websocket_url(agent.ws, extra_headers=[("Origin", own)]) as ws:
        await ws_send(ws, {"type": "ping", "data": {}})
        assert str((await ws_recv(ws)).type) == "pong"


async def test_failed_provisioning_reports_failed_stage(agent) -> None:
    # A plain wsproto client: trio-websocket's client sometimes leaks its socket when the
    # server closes right after its last message (a ResourceWarning in the client, not here).
    agent.backend.fail_reason = "template missing"
    stream = await trio.open_tcp_stream("127.0.0.1", agent.ports.public)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host="127.0.0.1", target="/")))
        msgs: list[dict[str, Any]] = []
        closed: CloseConnection | None = None
        with trio.fail_after(30):
            while closed is None:
                data = await stream.receive_some(65536)
                assert data, "the agent hung up without a Close frame"
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        init = json.dumps(editor_init(str(uuid.uuid4())))
                        await stream.send_all(ws.send(TextMessage(init)))
                    elif isinstance(event, TextMessage):
                        msgs.append(json.loads(event.data))
                    elif isinstance(event, CloseConnection):
                        closed = event
                        await stream.send_all(ws.send(event.response()))
    stages = [m["data"] for m in msgs if m["type"] == "sandbox_status"]
    assert [s["message"] for s in stages if s["stage"] == "failed"] == ["template missing"]
    assert msgs[-1]["type"] == "error"
    assert msgs[-1]["data"]["error"] == "sandbox_failed"
    assert closed.code == 1011


class EchoEngine(StubEngine):
    """Answers every user turn with update_in_progress / agent_final / update_completed."""

    async def run_user_turn(self, host: object, data: object, *, by: str | None = None) -> None:
        from amicable_protocol.messages import Empty, MessageType, TextData

        await host.send(MessageType.UPDATE_IN_PROGRESS, Empty())  # type: ignore[attr-defined]
        await host.send(MessageType.AGENT_FINAL, TextData(text=f"echo {data.text}"))  # type: ignore[attr-defined]
        await host.send(MessageType.UPDATE_COMPLETED, Empty())  # type: ignore[attr-defined]

    async def resume_hitl(self, host: object, data: object, *, by: str | None = None) -> None: ...

    async def run_runtime_error(
        self, host: object, data: object, *, by: str | None = None
    ) -> None: ...

    async def hitl_pending(self, host: object) -> None:
        return None

    async def history(self, host: object) -> list[object]:
        return []


async def test_two_sockets_on_one_session_both_see_the_turn(agent_factory) -> None:
    sid = str(uuid.uuid4())
    async with (
        agent_factory(engine=EchoEngine()) as agent,
        open_websocket_url(agent.ws) as first,
        open_websocket_url(agent.ws) as second,
    ):
        await ws_send(first, editor_init(sid))
        await ws_recv_until(first, "init")
        await ws_send(second, editor_init(sid))
        await ws_recv_until(second, "init")
        await ws_send(first, {"type": "user", "data": {"session_id": sid, "text": "hello"}})
        for ws in (first, second):
            turn = await ws_recv_until(ws, "update_completed")
            finals = [m.data.text for m in turn if str(m.type) == "agent_final"]
            assert finals == ["echo hello"]


@pytest.mark.parametrize(
    ("origin", "allowed", "ok"),
    [
        (None, (), False),  # only browsers send Origin; they are checked elsewhere
        ("null", (), False),
        ("http://localhost:8000", (), True),  # the agent's own origins (bound to loopback)
        ("http://127.0.0.1:8000", (), True),
        ("http://[::1]:8000", (), True),
        ("HTTP://LOCALHOST:8000", (), True),
        ("http://localhost:5173", (), False),  # another port of the same machine
        ("http://shop.preview.localhost:8080", (), False),  # generated app code
        ("http://localhost.evil.com", (), False),
        ("http://localhost:80x", (), False),
        ("https://editor.example.com", ("https://editor.example.com",), True),
        ("https://editor.example.com:443", ("https://editor.example.com",), True),
        ("http://editor.example.com", ("https://editor.example.com",), False),
        ("http://localhost:5173", ("https://editor.example.com",), False),
    ],
)
def test_origin_rules(origin: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    from amicable_agent.auth.config import AuthConfig
    from amicable_agent.auth.origins import OriginPolicy

    policy = OriginPolicy(AuthConfig(allowed_origins=allowed))
    policy.listening("127.0.0.1", 8000)
    assert policy.origin_allowed(origin) is ok


async def test_user_text_over_the_limit_is_refused_and_not_queued(agent_factory) -> None:
    sid = str(uuid.uuid4())
    async with (
        agent_factory(engine=EchoEngine(), config={"max_prompt_chars": 1_000}) as agent,
        open_websocket_url(agent.ws) as ws,
    ):
        await ws_send(ws, editor_init(sid))
        await ws_recv_until(ws, "init")
        for data, limit in (
            ({"text": "x" * 1_001}, 1_000),  # the agent's AMICABLE_MAX_PROMPT_CHARS
            ({"text": "x" * 600, "content_blocks": [{"type": "text", "text": "y" * 401}]}, 1_000),
            ({"text": "x" * 100_001}, 100_000),  # the protocol's, when decoding
        ):
            await ws_send(ws, {"type": "user", "data": {"session_id": sid, **data}})
            error = await ws_recv(ws)
            assert (str(error.type), error.data.error) == ("error", "text_too_long")
            assert f"at most {limit} are accepted" in error.data.detail
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "é" * 1_000}})
        turn = await ws_recv_until(ws, "update_completed")
        # Only the message that fits ran: the refused ones were never queued.
        assert [str(m.type) for m in turn] == [
            "turn_started",
            "update_in_progress",
            "agent_final",
            "update_completed",
        ]
        assert [m.data.text for m in turn if str(m.type) == "agent_final"] == [
            "echo " + "é" * 1_000
        ]
