"""LlmClient's own SSE parsing: the event stream, errors mid-stream and HTTP errors."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import trio
from amicable_agent.loop.llm import LlmClient, LlmError
from amicable_agent.loop.settings import LoopSettings
from amicable_agent.loop.sse import SseParser, StreamEvent
from amicable_testing.fake_anthropic import FakeAnthropic, Fault, Reply, Text, ToolUse


def _parse(raw: bytes, size: int) -> list[StreamEvent]:
    parser = SseParser()
    return [event for i in range(0, len(raw), size) for event in parser.feed(raw[i : i + size])]


_STREAM = (
    b"event: message_start\r\n"
    b'data: {"type":"message_start","message":{"usage":{"input_tokens":5}}}\r\n\r\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b": a comment line\n"
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,\n'
    b'data: "delta":{"type":"text_delta","text":"h\xc3\xa9 \\n"}}\n\n'
    b'event: message_stop\ndata:{"type":"message_stop"}\n\n'
    b"event: content_block_stop\n\n"
)


@pytest.mark.parametrize("size", [1, 3, 7, len(_STREAM)])
def test_sse_parser_handles_any_chunking(size: int) -> None:
    events = _parse(_STREAM, size)
    # ping, the comment and the data-less event are dropped; multi-line data is joined.
    assert [e.type for e in events] == ["message_start", "content_block_delta", "message_stop"]
    assert events[0].data["message"]["usage"]["input_tokens"] == 5
    delta = events[1]
    assert delta.index == 0
    assert delta.delta.type == "text_delta"
    assert delta.delta.text == "hé \n"
    assert delta.missing is None


def test_sse_parser_raises_on_bad_json() -> None:
    with pytest.raises(json.JSONDecodeError):
        _parse(b"event: content_block_delta\ndata: {nope\n\n", 4)


def _settings(base_url: str) -> LoopSettings:
    return LoopSettings(
        api_key="sk-test", base_url=base_url, llm_retry_base_s=0.001, llm_retry_max_s=0.01
    )


async def _stream(fake: FakeAnthropic) -> tuple[Any, list[str], int]:
    texts: list[str] = []
    done = 0

    async def on_text(text: str) -> None:
        texts.append(text)

    async def on_text_done() -> None:
        nonlocal done
        done += 1

    outcome: list[Any] = []
    async with trio.open_nursery() as nursery:
        base_url = await nursery.start(fake.serve)
        client = LlmClient(_settings(base_url))
        try:
            outcome.append(
                await client.stream_message(
                    system="sys",
                    messages=[{"role": "user", "content": "hi"}],
                    tools=[],
                    on_text=on_text,
                    on_text_done=on_text_done,
                )
            )
        except LlmError as exc:
            outcome.append(exc)
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()
    if isinstance(outcome[0], LlmError):
        raise outcome[0]
    return outcome[0], texts, done


async def test_text_and_tool_use_are_assembled() -> None:
    fake = FakeAnthropic(
        [
            Reply(
                [Text("Let me look.", chunk=3), ToolUse("ls", {"path": "/src", "deep": [1, 2]})],
                input_tokens=42,
                output_tokens=17,
                cache_read_input_tokens=3,
            )
        ]
    )
    message, texts, done = await _stream(fake)
    assert message.text == "Let me look."
    assert texts == ["Let", "Let me", "Let me lo", "Let me look."]
    assert done == 1
    assert message.tool_uses[0]["name"] == "ls"
    assert message.tool_uses[0]["input"] == {"path": "/src", "deep": [1, 2]}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (42, 17)
    assert message.usage.cache_read_input_tokens == 3
    request = fake.requests[0]
    headers = request.headers
    assert "sk-test" in headers.get("x-api-key", headers.get("authorization", ""))
    assert request.body["stream"] is True


async def test_overloaded_error_event_mid_stream_is_retried() -> None:
    fake = FakeAnthropic(
        [Fault(529, error_after_events=4, reply=Reply([Text("Streaming along", chunk=4)]))]
    )
    message, texts, _ = await _stream(fake)
    assert len(fake.requests) == 2
    assert message.text.startswith("Stre")
    assert texts[-1] == message.text
    assert all(len(a) <= len(b) for a, b in itertools.pairwise(texts))


@pytest.mark.parametrize("status", [429, 500, 529])
async def test_http_errors_are_retried(status: int) -> None:
    fake = FakeAnthropic([Fault(status), Reply([Text("ok")])])
    message, _, _ = await _stream(fake)
    assert message.text == "ok"
    assert len(fake.requests) == 2


async def test_dropped_stream_is_retried_with_prefill() -> None:
    fake = FakeAnthropic([Fault(drop_after_events=5, reply=Reply([Text("abcdefgh", chunk=2)]))])
    message, _, _ = await _stream(fake)
    assert len(fake.requests) == 2
    assert fake.requests[1].body["messages"][-1]["role"] == "assistant"
    assert message.stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("status", "code"), [(401, "llm_auth_failed"), (400, "llm_request_rejected")]
)
async def test_client_errors_are_not_retried(status: int, code: str) -> None:
    fake = FakeAnthropic([Fault(status)])
    with pytest.raises(LlmError) as info:
        await _stream(fake)
    assert info.value.code == code
    assert len(fake.requests) == 1


async def test_retries_exhausted() -> None:
    fake = FakeAnthropic([Fault(529)] * 10)
    with pytest.raises(LlmError) as info:
        await _stream(fake)
    assert info.value.code == "llm_overloaded"
    assert len(fake.requests) == 5


async def test_error_events_count_as_overloaded_not_as_drops() -> None:
    reply = Reply([Text("Streaming along", chunk=4)])
    fake = FakeAnthropic([Fault(529, error_after_events=4, reply=reply)] * 5)
    with pytest.raises(LlmError) as info:
        await _stream(fake)
    assert info.value.code == "llm_overloaded"
    assert len(fake.requests) == 5
