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

import json
from typing import Any

import h11
import trio

from .model_script import (
    Fault,
    RecordedRequest,
    Reply,
    ScriptedServer,
    ScriptItem,
    Text,
    ToolUse,
    next_id,
)

__all__ = [
    "FakeAnthropic",
    "Fault",
    "RecordedRequest",
    "Reply",
    "ScriptItem",
    "Text",
    "ToolUse",
    "stream_events",
]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def stream_events(reply: Reply, model: str) -> list[tuple[str, dict[str, Any]]]:
    """The exact SSE events (name, data) the real API sends for ``reply``."""
    has_tool = any(isinstance(b, ToolUse) for b in reply.blocks)
    stop = reply.stop_reason or ("tool_use" if has_tool else "end_turn")
    chars = sum(len(b.text) if isinstance(b, Text) else len(b.arguments()) for b in reply.blocks)
    out_tokens = reply.output_tokens if reply.output_tokens is not None else max(1, chars // 4)
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_fake{next_id():06d}",
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
            raw = block.arguments()
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
        "id": f"msg_fake{next_id():06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reply.stop_reason or ("tool_use" if has_tool else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens or 1},
    }


class FakeAnthropic(ScriptedServer):
    """The scripted fake Messages API (see :class:`~.model_script.ScriptedServer`)."""

    provider = "anthropic"

    def view(self, index: int) -> dict[str, Any]:
        """Request ``index``'s body (already in the Messages format)."""
        return self.requests[index].body

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request, raw: bytes
    ) -> bool:
        body = self._record(request, raw)
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
                ("request-id", f"req_fake{next_id()}")]))  # fmt: skip
            await self._send(conn, stream, h11.Data(data=payload))
            await self._send(conn, stream, h11.EndOfMessage())
            return True
        await self._send(conn, stream, h11.Response(status_code=200, headers=[
            ("content-type", "text/event-stream"), ("cache-control", "no-cache"),
            ("transfer-encoding", "chunked"), ("request-id", f"req_fake{next_id()}")]))  # fmt: skip
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
            ("request-id", f"req_fake{next_id()}"),
        ]
        if retry_after is not None:
            headers.append(("retry-after", str(retry_after)))
        await self._send(conn, stream, h11.Response(status_code=status, headers=headers))
        await self._send(conn, stream, h11.Data(data=payload))
        await self._send(conn, stream, h11.EndOfMessage())
