"""The public port's own WebSocket path (ws_server): frames, coalesced writes, fallbacks."""

from __future__ import annotations

import json
import uuid

import pytest
import trio
from amicable_agent.sessions import Attachment, Outgoing
from amicable_agent.testing import ws_recv_until, ws_send
from amicable_agent.ws import Connection
from amicable_agent.ws_server import frame_bytes
from amicable_protocol.messages import Empty, MessageType, ServerMessage, TextData
from trio_websocket import open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, Pong, Request, TextMessage
from wsproto.frame_protocol import FrameDecoder, Opcode


def editor_init(sid: str) -> dict[str, object]:
    return {"type": "init", "data": {"session_id": sid}}


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_frame_bytes_is_a_valid_server_text_frame(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    decoder = FrameDecoder(client=True)
    decoder.receive_bytes(frame_bytes(text))
    frame = decoder.process_buffer()
    assert frame is not None
    assert frame.message_finished
    assert frame.opcode == Opcode.TEXT
    assert frame.payload == text.encode()
    assert decoder.process_buffer() is None  # nothing left over


class _RecordingSocket:
    """A SocketLike with send_frames that records each call."""

    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []
        self.closed: int | None = None

    async def receive(self) -> str:
        await trio.sleep_forever()
        raise AssertionError

    async def send(self, data: str | bytes) -> None:
        raise AssertionError("send_frames must be used")

    async def send_frames(self, frames: list[bytes]) -> None:
        self.calls.append(frames)
        await trio.lowlevel.checkpoint()

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = code
        await trio.lowlevel.checkpoint()


async def test_queued_messages_go_out_in_one_write_each_frame_built_once() -> None:
    socket = _RecordingSocket()
    connection = Connection(None, socket, queue_size=16)  # type: ignore[arg-type]
    attachment: Attachment = connection._attachment
    shared = Outgoing(
        ServerMessage(type=MessageType.UPDATE_IN_PROGRESS, data=Empty(), session_id="s")
    )
    attachment.send_nowait(shared)
    for n in range(3):
        attachment.send_nowait(
            ServerMessage(
                type=MessageType.AGENT_PARTIAL, data=TextData("a" * n), session_id="s", id="m"
            )
        )
    attachment.send_nowait(
        ServerMessage(type=MessageType.UPDATE_COMPLETED, data=Empty(), session_id="s")
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection._writer, nursery.cancel_scope)
        await trio.testing.wait_all_tasks_blocked()
        attachment.drop()
    assert len(socket.calls) == 1  # everything queued went out in one write
    frames = socket.calls[0]
    texts = []
    for frame in frames:
        decoder = FrameDecoder(client=True)
        decoder.receive_bytes(frame)
        decoded = decoder.process_buffer()
        assert decoded is not None
        texts.append(json.loads(decoded.payload))
    # superseded partials are gone; the rest is in order
    assert [t["type"] for t in texts] == ["update_in_progress", "agent_partial", "update_completed"]
    assert texts[1]["data"]["text"] == "aa"
    assert frames[0] is shared.wire  # built once, shared by every socket
    assert socket.closed == 1013


async def _raw_open(port: int, path: str = "/") -> tuple[trio.SocketStream, WSConnection]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host=f"127.0.0.1:{port}", target=path)))
    while True:
        ws.receive_data(await stream.receive_some(65536))
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return stream, ws


async def _raw_next(stream: trio.SocketStream, ws: WSConnection) -> object:
    while True:
        for event in ws.events():
            return event
        with trio.fail_after(10):
            ws.receive_data(await stream.receive_some(65536))


async def test_fragmented_message_and_ping_on_the_raw_path(agent) -> None:
    stream, ws = await _raw_open(agent.ports.public, "/ws")
    async with stream:
        sid = str(uuid.uuid4())
        raw = json.dumps({"type": "ping", "data": {"session_id": sid}})
        await stream.send_all(ws.send(TextMessage(raw[:7], message_finished=False)))
        await stream.send_all(ws.send(TextMessage(raw[7:], message_finished=True)))
        event = await _raw_next(stream, ws)
        assert isinstance(event, TextMessage)
        assert json.loads(event.data)["type"] == "pong"
        await stream.send_all(ws.send(Ping(b"hi")))
        event = await _raw_next(stream, ws)
        assert isinstance(event, Pong)
        assert event.payload == b"hi"


async def test_http_and_a_websocket_after_it_share_the_port(agent) -> None:
    # A plain HTTP request is served by hypercorn; an upgrade on the same keep-alive
    # connection afterwards reaches the app's own WebSocket route (the fallback).
    stream = await trio.open_tcp_stream("127.0.0.1", agent.ports.public)
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        with trio.fail_after(10):
            while b'"status"' not in data:
                data += await stream.receive_some(65536)
        assert data.startswith(b"HTTP/1.1 200")
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host="x", target="/")))
        accepted = False
        with trio.fail_after(10):
            while not accepted:
                ws.receive_data(await stream.receive_some(65536))
                accepted = any(isinstance(e, AcceptConnection) for e in ws.events())
        sid = str(uuid.uuid4())
        await stream.send_all(
            ws.send(TextMessage(json.dumps({"type": "ping", "data": {"session_id": sid}})))
        )
        event = await _raw_next(stream, ws)
        assert isinstance(event, TextMessage)
        assert json.loads(event.data)["type"] == "pong"


async def test_library_client_runs_init_on_the_fast_path(agent) -> None:
    async with open_websocket_url(agent.ws) as ws:
        sid = str(uuid.uuid4())
        await ws_send(ws, editor_init(sid))
        reply = (await ws_recv_until(ws, "init"))[-1]
        assert reply.session_id == sid
