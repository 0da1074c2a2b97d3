"""The public port's own WebSocket path (ws_server): frames, coalesced writes, fallbacks."""

from __future__ import annotations

import json
import uuid

import pytest
import trio
from amicable_agent.auth.identity import LOCAL_USER, Caller
from amicable_agent.http.ws import Connection
from amicable_agent.sessions import Attachment, Outgoing, frame_bytes
from amicable_protocol.messages import Empty, MessageType, ServerMessage, TextData
from amicable_testing import ws_recv_until, ws_send
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


LOCAL = Caller(LOCAL_USER, "local")


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
    connection = Connection(None, socket, queue_size=16, caller=LOCAL, access=None)  # type: ignore[arg-type]
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
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        with trio.fail_after(10):
            while b'"status"' not in data:
                data += await stream.receive_some(65536)
        assert data.startswith(b"HTTP/1.1 200")
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host="127.0.0.1", target="/")))
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


async def test_a_failing_editor_connection_does_not_stop_the_public_port(
    agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The public port used to run every connection in one nursery without a guard: an
    # exception in one connection's lane stopped the port. amicable_frontdoor confines it.
    from amicable_agent.http import ws_server

    def failing(head: bytes, paths: tuple[str, ...]) -> bool:
        raise RuntimeError("a bug in the lane")

    monkeypatch.setattr(ws_server, "_websocket_target", failing)
    stream = await trio.open_tcp_stream("127.0.0.1", agent.ports.public)
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(10):
            assert await stream.receive_some(65536) == b""  # closed, unanswered
    monkeypatch.undo()
    async with open_websocket_url(agent.ws) as ws:
        sid = str(uuid.uuid4())
        await ws_send(ws, editor_init(sid))
        assert (await ws_recv_until(ws, "init"))[-1].session_id == sid


async def test_library_client_runs_init_on_the_fast_path(agent) -> None:
    async with open_websocket_url(agent.ws) as ws:
        sid = str(uuid.uuid4())
        await ws_send(ws, editor_init(sid))
        reply = (await ws_recv_until(ws, "init"))[-1]
        assert reply.session_id == sid


def _partial(text: str) -> ServerMessage:
    return ServerMessage(
        type=MessageType.AGENT_PARTIAL, data=TextData(text), session_id="s", id="m"
    )


def test_direct_write_when_nothing_is_queued() -> None:
    attachment = Attachment(8)
    written: list[bytes] = []

    def direct(out: Outgoing) -> int:
        written.append(out.wire)
        return len(out.wire)

    attachment.direct = direct
    assert attachment.send_nowait(_partial("a"))
    assert len(attachment) == 0  # delivered, not queued
    assert attachment.direct_sends == 1
    assert json.loads(_frame_payload(written[0]))["data"]["text"] == "a"


def test_refused_direct_write_queues_and_keeps_order() -> None:
    attachment = Attachment(8)
    attachment.direct = lambda out: 0  # busy / buffer full
    attachment.send_nowait(_partial("a"))
    attachment.send_nowait(_partial("ab"))  # supersedes the queued one as before
    assert len(attachment) == 1
    assert attachment.take_nowait().message.data == TextData("ab")
    assert attachment.taken_offset == 0


def test_a_partly_written_message_is_finished_first_and_never_superseded() -> None:
    attachment = Attachment(8)
    calls: list[int] = []

    def direct(out: Outgoing) -> int:
        calls.append(1)
        return 3 if len(calls) == 1 else 0  # 3 bytes went out, then the buffer is full

    attachment.direct = direct
    first = Outgoing(_partial("a" * 40))
    attachment.send_nowait(first)
    attachment.send_nowait(_partial("a" * 41))  # queued behind; must not replace `first`
    assert len(attachment) == 2
    assert len(calls) == 1  # with something queued, no direct attempt
    taken = attachment.take_nowait()
    assert taken is first
    assert attachment.taken_offset == 3  # the writer sends first.wire[3:]
    assert attachment.take_nowait().message.data == TextData("a" * 41)
    assert attachment.taken_offset == 0


async def test_writer_sends_the_rest_of_a_partly_written_frame() -> None:
    socket = _RecordingSocket()
    connection = Connection(None, socket, queue_size=16, caller=LOCAL, access=None)  # type: ignore[arg-type]
    attachment = connection._attachment
    attachment.direct = lambda out: 5
    first = Outgoing(_partial("hello world"))
    attachment.send_nowait(first)
    attachment.send_nowait(_partial("hello world!"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection._writer, nursery.cancel_scope)
        await trio.testing.wait_all_tasks_blocked()
        attachment.drop()
    sent = b"".join(socket.calls[0])
    assert sent.startswith(first.wire[5:])
    assert json.loads(_frame_payload(sent[len(first.wire) - 5 :]))["data"]["text"] == (
        "hello world!"
    )


async def test_write_now_never_blocks_nor_interleaves() -> None:
    # During another write write_now reports 0 (queue it); to a client that never reads,
    # it writes until the buffers are full, then reports a short or refused write.
    from amicable_agent.http.ws_server import RawWebSocket

    seen: list[RawWebSocket] = []
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:

        async def handle(stream: trio.SocketStream) -> None:
            conn = WSConnection(ConnectionType.SERVER)
            conn.receive_data(await stream.receive_some(65536))
            request = next(e for e in conn.events() if isinstance(e, Request))
            ws = RawWebSocket(stream, conn, request, max_message_size=1 << 20)
            await ws.accept()
            seen.append(ws)
            await trio.sleep_forever()

        await nursery.start(trio.serve_listeners, handle, listeners)
        port = listeners[0].socket.getsockname()[1]
        stream, _ = await _raw_open(port)
        with trio.fail_after(10):
            while not seen:
                await trio.sleep(0.01)
        ws = seen[0]
        frame = frame_bytes("x" * 65536)
        ws._lock.acquire_nowait()  # as a send_frames in progress holds it
        assert ws.write_now(frame) == 0
        ws._lock.release()
        total = 0
        while (n := ws.write_now(frame)) == len(frame):
            total += n
        assert n < len(frame)  # the buffers filled up: a short or refused write
        assert total > 0
        await stream.aclose()
        nursery.cancel_scope.cancel()


def _frame_payload(frame: bytes) -> bytes:
    decoder = FrameDecoder(client=True)
    decoder.receive_bytes(frame)
    decoded = decoder.process_buffer()
    assert decoded is not None
    return bytes(decoded.payload)
