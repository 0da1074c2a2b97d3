"""A fake Anthropic Messages API server for tests and benchmarks.

It is a real HTTP/1.1 server on loopback (raw Trio + h11) speaking the streaming SSE
sequence the real API sends, so the real ``anthropic`` client is pointed at it with
``base_url``::

    fake = FakeAnthropic([Reply([Text("Hi"), ToolUse("ls", {"path": "/"})]), Reply([Text("Done")])])
    async with trio.open_nursery() as nursery:
        base_url = await nursery.start(fake.serve)
        ...
        assert fake.requests[0].body["messages"][-1]["role"] == "user"

A script item is a :class:`Reply`, a :class:`Fault` (HTTP error with the API's error JSON,
or a stream dropped mid-way), or a callable taking the request body and returning one of
those. Every received request is recorded in :attr:`FakeAnthropic.requests`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import attrs
import h11
import trio

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ids = itertools.count(1)


@attrs.frozen
class Text:
    """A text content block, streamed in ``chunk``-character deltas."""

    text: str
    chunk: int = 8


@attrs.frozen
class ToolUse:
    """A ``tool_use`` block; ``input`` is streamed as ``input_json_delta`` fragments."""

    name: str
    input: dict[str, Any]
    id: str = attrs.field(factory=lambda: f"toolu_fake{next(_ids):06d}")
    chunk: int = 16


@attrs.frozen
class Reply:
    """One streamed message.

    Attributes:
        blocks: content blocks in order.
        stop_reason: defaults to ``tool_use`` when a block is a tool call, else ``end_turn``.
        input_tokens / output_tokens: reported usage (output defaults to ~chars/4).
        delay_s: pause before each delta event (slow tokens).
        hold: when set, the server waits for this event after the first delta (tests use it
            to act while a stream is open); it never finishes if the event is never set.
    """

    blocks: list[Text | ToolUse]
    stop_reason: str | None = None
    input_tokens: int = 100
    output_tokens: int | None = None
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    delay_s: float = 0.0
    hold: trio.Event | None = None


@attrs.frozen
class Fault:
    """A failure instead of a reply.

    ``status`` answers with that HTTP status and the API's error JSON (429 and 529 carry
    ``retry-after`` when given); ``drop_after_events`` instead starts streaming ``reply``
    and closes the connection after that many SSE events; ``error_after_events`` streams
    that many events and then an SSE ``error`` event of ``status``'s type (as the API does
    when it is overloaded mid-stream).
    """

    status: int = 500
    message: str = "fake failure"
    retry_after: float | None = None
    drop_after_events: int | None = None
    error_after_events: int | None = None
    reply: Reply | None = None


ScriptItem = Reply | Fault | Callable[[dict[str, Any]], "Reply | Fault"]


@attrs.frozen
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def stream_events(reply: Reply, model: str) -> list[tuple[str, dict[str, Any]]]:
    """The exact SSE events (name, data) the real API sends for ``reply``."""
    has_tool = any(isinstance(b, ToolUse) for b in reply.blocks)
    stop = reply.stop_reason or ("tool_use" if has_tool else "end_turn")
    chars = sum(
        len(b.text) if isinstance(b, Text) else len(json.dumps(b.input)) for b in reply.blocks
    )
    out_tokens = reply.output_tokens if reply.output_tokens is not None else max(1, chars // 4)
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_fake{next(_ids):06d}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": reply.input_tokens,
                        "output_tokens": 1,
                        "cache_creation_input_tokens": reply.cache_creation_input_tokens,
                        "cache_read_input_tokens": reply.cache_read_input_tokens,
                    },
                },
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(reply.blocks):
        if isinstance(block, Text):
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index,
                     "content_block": {"type": "text", "text": ""}},
                )
            )  # fmt: skip
            for i in range(0, len(block.text), max(1, block.chunk)):
                delta = {"type": "text_delta", "text": block.text[i : i + block.chunk]}
                events.append(
                    ("content_block_delta",
                     {"type": "content_block_delta", "index": index, "delta": delta})
                )  # fmt: skip
        else:
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index,
                     "content_block": {"type": "tool_use", "id": block.id, "name": block.name,
                                       "input": {}}},
                )
            )  # fmt: skip
            raw = json.dumps(block.input)
            pieces = [""] + [raw[i : i + block.chunk] for i in range(0, len(raw), block.chunk)]
            for piece in pieces:
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append(
                    ("content_block_delta",
                     {"type": "content_block_delta", "index": index, "delta": delta})
                )  # fmt: skip
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
             "usage": {"output_tokens": out_tokens}},
        )
    )  # fmt: skip
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _final_message(reply: Reply, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for block in reply.blocks:
        if isinstance(block, Text):
            content.append({"type": "text", "text": block.text})
        else:
            content.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
            )
    has_tool = any(isinstance(b, ToolUse) for b in reply.blocks)
    return {
        "id": f"msg_fake{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reply.stop_reason or ("tool_use" if has_tool else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens or 1},
    }


class FakeAnthropic:
    """The scripted fake. ``script`` items are used in order; ``responder`` (if given)
    answers requests once the script is used up. Without either, requests get a short
    "Done." reply.
    """

    def __init__(
        self,
        script: list[ScriptItem] | None = None,
        *,
        responder: Callable[[dict[str, Any]], Reply | Fault] | None = None,
    ) -> None:
        self.script: list[ScriptItem] = list(script or [])
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self.dropped_streams = 0
        self._changed = trio.Event()

    def add(self, *items: ScriptItem) -> None:
        """Append items to the script."""
        self.script.extend(items)

    async def wait_requests(self, count: int) -> None:
        """Wait until at least ``count`` requests arrived."""
        while len(self.requests) < count:
            await self._changed.wait()

    def _next(self, body: dict[str, Any]) -> Reply | Fault:
        if self.script:
            item = self.script.pop(0)
        elif self.responder is not None:
            item = self.responder
        else:
            item = Reply([Text("Done.")])
        if callable(item) and not isinstance(item, Reply | Fault):
            return item(body)
        return item

    async def serve(
        self, *, host: str = "127.0.0.1", port: int = 0, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; ``task_status.started(base_url)``."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        task_status.started(f"http://{host}:{bound}")
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, stream)
                if request is None:
                    return
                keep = await self._respond(conn, stream, request, body)
                if not keep or conn.our_state is not h11.DONE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            await stream.aclose()

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return request, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, event: Any) -> None:
        data = conn.send(event)
        if data:
            await stream.send_all(data)

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request, raw: bytes
    ) -> bool:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        self.requests.append(
            RecordedRequest(request.method.decode(), request.target.decode(), headers, body)
        )
        self._changed.set()
        self._changed = trio.Event()
        if request.target.decode().split("?")[0] != "/v1/messages":
            await self._error(conn, stream, 404, "not found")
            return True
        item = self._next(body)
        model = str(body.get("model", "claude-fake"))
        if (
            isinstance(item, Fault)
            and item.drop_after_events is None
            and item.error_after_events is None
        ):
            await self._error(conn, stream, item.status, item.message, item.retry_after)
            return True
        reply = item.reply if isinstance(item, Fault) else item
        reply = reply or Reply([Text("partial reply that will be cut off")])
        if not body.get("stream"):
            payload = json.dumps(_final_message(reply, model)).encode()
            await self._send(conn, stream, h11.Response(status_code=200, headers=[
                ("content-type", "application/json"), ("content-length", str(len(payload))),
                ("request-id", f"req_fake{next(_ids)}")]))  # fmt: skip
            await self._send(conn, stream, h11.Data(data=payload))
            await self._send(conn, stream, h11.EndOfMessage())
            return True
        await self._send(conn, stream, h11.Response(status_code=200, headers=[
            ("content-type", "text/event-stream"), ("cache-control", "no-cache"),
            ("transfer-encoding", "chunked"), ("request-id", f"req_fake{next(_ids)}")]))  # fmt: skip
        events = stream_events(reply, model)
        drop_at = item.drop_after_events if isinstance(item, Fault) else None
        error_at = item.error_after_events if isinstance(item, Fault) else None
        first_delta = True
        for count, (name, data) in enumerate(events):
            if drop_at is not None and count >= drop_at:
                self.dropped_streams += 1
                return False  # close without the terminating chunk: a dropped stream
            if error_at is not None and count >= error_at:
                assert isinstance(item, Fault)
                error = {"type": "error", "error": {
                    "type": _ERROR_TYPES.get(item.status, "api_error"), "message": item.message}}  # fmt: skip
                await self._send(conn, stream, h11.Data(data=_sse("error", error)))
                break
            if name == "content_block_delta":
                if reply.delay_s:
                    await trio.sleep(reply.delay_s)
                await self._send(conn, stream, h11.Data(data=_sse(name, data)))
                if first_delta and reply.hold is not None:
                    first_delta = False
                    await reply.hold.wait()
                continue
            await self._send(conn, stream, h11.Data(data=_sse(name, data)))
        await self._send(conn, stream, h11.EndOfMessage())
        return True

    async def _error(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        status: int,
        message: str,
        retry_after: float | None = None,
    ) -> None:
        payload = json.dumps(
            {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"),
                                        "message": message}}
        ).encode()  # fmt: skip
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(payload))),
            ("request-id", f"req_fake{next(_ids)}"),
        ]
        if retry_after is not None:
            headers.append(("retry-after", str(retry_after)))
        await self._send(conn, stream, h11.Response(status_code=status, headers=headers))
        await self._send(conn, stream, h11.Data(data=payload))
        await self._send(conn, stream, h11.EndOfMessage())
