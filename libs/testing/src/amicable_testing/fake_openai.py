"""A fake OpenAI-compatible Chat Completions server for tests and benchmarks.

A real HTTP/1.1 server on loopback speaking the streaming chunk sequence OpenAI, vLLM,
Ollama and LiteLLM send: a role chunk, ``content`` deltas, ``tool_calls`` deltas (the id and
name first, the arguments split over several chunks), a chunk with the ``finish_reason``,
the usage chunk (with ``stream_options.include_usage``) and ``data: [DONE]``. It runs the
same script as :class:`~.fake_anthropic.FakeAnthropic` (:mod:`.model_script`)::

    fake = FakeOpenAI([Reply([Text("Hi"), ToolUse("ls", {"path": "/"})]), Reply([Text("Done")])])
    async with trio.open_nursery() as nursery:
        base_url = await nursery.start(fake.serve)  # ".../v1": OPENAI_BASE_URL
        ...

Faults: an HTTP status with OpenAI's error JSON (``retry-after`` on 429/503 when given),
``drop_after_events`` (the connection closes mid-stream), ``error_after_events`` (an error
chunk mid-stream, as vLLM and OpenRouter send); both count chunks and always come before the
finish chunk. ``ToolUse(raw_input=...)`` streams broken
arguments; ``Reply(omit_tool_ids=True)`` and ``Reply(finish_reason="stop")`` imitate servers
that leave out ids or misreport why they stopped.
"""

from __future__ import annotations

import json
import time
from typing import Any

import h11
import trio

from .model_script import Fault, Reply, ScriptedServer, Text, ToolUse, next_id

__all__ = ["FakeOpenAI", "Fault", "Reply", "Text", "ToolUse", "chunk_events", "view_of"]

_FINISH = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }  # fmt: skip


def chunk_events(reply: Reply, model: str, *, usage: bool = True) -> list[dict[str, Any]]:
    """The chunks (JSON objects, before ``[DONE]``) a Chat Completions server streams."""
    events = [_chunk(model, {"role": "assistant", "content": ""})]
    calls = 0
    chars = 0
    for block in reply.blocks:
        if isinstance(block, Text):
            chars += len(block.text)
            for i in range(0, len(block.text), max(1, block.chunk)):
                events.append(_chunk(model, {"content": block.text[i : i + block.chunk]}))
            continue
        raw = block.arguments()
        chars += len(raw)
        head: dict[str, Any] = {"index": calls, "type": "function",
                                "function": {"name": block.name, "arguments": ""}}  # fmt: skip
        if not reply.omit_tool_ids:
            head["id"] = f"call_{block.id}"
        events.append(_chunk(model, {"tool_calls": [head]}))
        for i in range(0, len(raw), max(1, block.chunk)):
            piece = {"index": calls, "function": {"arguments": raw[i : i + block.chunk]}}
            events.append(_chunk(model, {"tool_calls": [piece]}))
        calls += 1
    stop = reply.stop_reason or ("tool_use" if calls else "end_turn")
    finish = reply.finish_reason or _FINISH.get(stop, "stop")
    events.append(_chunk(model, {}, finish))
    if usage:
        out = reply.output_tokens if reply.output_tokens is not None else max(1, chars // 4)
        prompt = reply.input_tokens + reply.cache_read_input_tokens
        events.append({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
            "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": out,
                      "total_tokens": prompt + out,
                      "prompt_tokens_details": {"cached_tokens": reply.cache_read_input_tokens}},
        })  # fmt: skip
    return events


def _data(payload: dict[str, Any] | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def _blocks_of_user(content: Any) -> Any:
    if isinstance(content, str):
        return content
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            media, _, data = url.removeprefix("data:").partition(";base64,")
            blocks.append({"type": "image",
                           "source": {"type": "base64", "media_type": media, "data": data}})  # fmt: skip
    return blocks


def view_of(body: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions request body as a Messages API body (``system``, ``messages``,
    ``tools``): tool messages become ``tool_result`` blocks (``is_error`` when the text
    starts with ``Error``), tool calls ``tool_use`` blocks, image parts ``image`` blocks."""
    system = ""
    messages: list[dict[str, Any]] = []
    for message in body.get("messages", []):
        role = message.get("role")
        if role == "system":
            system = str(message.get("content", ""))
        elif role == "assistant":
            content: list[dict[str, Any]] = []
            if message.get("content"):
                content.append({"type": "text", "text": message["content"]})
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                content.append({"type": "tool_use", "id": call.get("id"),
                                "name": function.get("name"),
                                "input": json.loads(function.get("arguments") or "{}")})  # fmt: skip
            messages.append({"role": "assistant", "content": content})
        elif role == "tool":
            text = str(message.get("content", ""))
            result = {"type": "tool_result", "tool_use_id": message.get("tool_call_id"),
                      "content": text, "is_error": text.startswith("Error")}  # fmt: skip
            if (
                messages
                and messages[-1]["role"] == "user"
                and isinstance(messages[-1]["content"], list)
            ):
                messages[-1]["content"].append(result)
            else:
                messages.append({"role": "user", "content": [result]})
        elif role == "user":
            content_in = _blocks_of_user(message.get("content"))
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "user" and isinstance(last["content"], list):
                blocks = content_in if isinstance(content_in, list) else [
                    {"type": "text", "text": content_in}]  # fmt: skip
                last["content"].extend(blocks)
            else:
                messages.append({"role": "user", "content": content_in})
    tools = [{"name": (t.get("function") or {}).get("name"),
              "description": (t.get("function") or {}).get("description"),
              "input_schema": (t.get("function") or {}).get("parameters")}
             for t in body.get("tools") or []]  # fmt: skip
    return {"model": body.get("model"), "system": [{"type": "text", "text": system}],
            "messages": messages, "tools": tools}  # fmt: skip


class FakeOpenAI(ScriptedServer):
    """The scripted fake Chat Completions API (see :class:`~.model_script.ScriptedServer`).

    ``serve`` reports ``http://127.0.0.1:<port>/v1`` (use it as ``OPENAI_BASE_URL``).
    """

    provider = "openai"

    async def serve(
        self, *, host: str = "127.0.0.1", port: int = 0, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; ``task_status.started(base_url)`` (ending in ``/v1``)."""

        class _Status:
            def started(self, value: str) -> None:
                task_status.started(f"{value}/v1")

        await super().serve(host=host, port=port, task_status=_Status())

    def view(self, index: int) -> dict[str, Any]:
        """Request ``index`` as a Messages API body (:func:`view_of`)."""
        return view_of(self.requests[index].body)

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request, raw: bytes
    ) -> bool:
        body = self._record(request, raw)
        request_id = [("x-request-id", f"req_fake{next_id()}")]
        if request.target.decode().split("?")[0] not in ("/v1/chat/completions",):
            await self._json(conn, stream, 404, _error_body(404, "not found"), request_id)
            return True
        item = self._next(body)
        model = str(body.get("model", "gpt-fake"))
        if (
            isinstance(item, Fault)
            and item.drop_after_events is None
            and item.error_after_events is None
        ):
            headers = list(request_id)
            if item.retry_after is not None:
                headers.append(("retry-after", str(item.retry_after)))
            await self._json(conn, stream, item.status, _error_body(item.status, item.message),
                             headers)  # fmt: skip
            return True
        reply = item.reply if isinstance(item, Fault) else item
        reply = reply or Reply([Text("partial reply that will be cut off")])
        await self._send(conn, stream, h11.Response(status_code=200, headers=[
            ("content-type", "text/event-stream"), ("cache-control", "no-cache"),
            ("transfer-encoding", "chunked"), *request_id]))  # fmt: skip
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = chunk_events(reply, model, usage=include_usage)
        # A stream has fewer chunks here than events in the Messages stream: a fault meant to
        # cut the answer still comes before the finish chunk, so one script fits both fakes.
        last = len(events) - (2 if include_usage else 1)
        drop_at = item.drop_after_events if isinstance(item, Fault) else None
        error_at = item.error_after_events if isinstance(item, Fault) else None
        drop_at = min(drop_at, last) if drop_at is not None else None
        error_at = min(error_at, last) if error_at is not None else None
        first_delta = True
        for count, event in enumerate(events):
            if drop_at is not None and count >= drop_at:
                self.dropped_streams += 1
                return False  # close without the terminating chunk: a dropped stream
            if error_at is not None and count >= error_at:
                assert isinstance(item, Fault)
                await self._send(conn, stream, h11.Data(data=_data(_error_body(item.status,
                                                                                item.message))))  # fmt: skip
                await self._send(conn, stream, h11.EndOfMessage())
                return True
            is_delta = bool(event.get("choices")) and bool(event["choices"][0]["delta"])
            if is_delta and count > 0 and reply.delay_s:
                await trio.sleep(reply.delay_s)
            await self._send(conn, stream, h11.Data(data=_data(event)))
            if is_delta and count > 0 and first_delta and reply.hold is not None:
                first_delta = False
                await reply.hold.wait()
        await self._send(conn, stream, h11.Data(data=_data("[DONE]")))
        await self._send(conn, stream, h11.EndOfMessage())
        return True


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            429: "rate_limit_exceeded"}.get(status, "server_error")  # fmt: skip
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}
