"""The OpenAI-compatible client against the fake Chat Completions server: chunk assembly,
usage, retries and what servers get wrong."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio
from amicable_agent.loop.llm import LlmClient, LlmError
from amicable_agent.loop.models import ModelSpec
from amicable_agent.loop.settings import LoopSettings
from amicable_testing.fake_openai import FakeOpenAI
from amicable_testing.model_script import Fault, Reply, Text, ToolUse

TOOLS = [{"name": "ls", "description": "List", "input_schema": {
    "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}]  # fmt: skip


def _client(base_url: str, **spec: Any) -> LlmClient:
    settings = LoopSettings(
        provider="openai", model="gpt-4.1", api_key="sk-openai-test", base_url=base_url,
        llm_retry_base_s=0.001, llm_retry_max_s=0.01,
    )  # fmt: skip
    model = ModelSpec(id="openai:gpt-4.1", provider="openai", model="gpt-4.1",
                      base_url=base_url, api_key=spec.pop("api_key", "sk-openai-test"), **spec)  # fmt: skip
    return LlmClient(settings, model)


async def _stream(
    fake: FakeOpenAI, messages: list[dict[str, Any]] | None = None, **spec: Any
) -> tuple[Any, list[str], list[Any]]:
    texts: list[str] = []
    retries: list[Any] = []

    async def on_text(text: str) -> None:
        texts.append(text)

    async def on_retry(notice: Any) -> None:
        retries.append(notice)

    outcome: list[Any] = []
    async with trio.open_nursery() as nursery:
        base_url = await nursery.start(fake.serve)
        client = _client(base_url, **spec)
        try:
            outcome.append(await client.stream_message(
                system="sys", messages=messages or [{"role": "user", "content": "hi"}],
                tools=TOOLS, on_text=on_text, on_retry=on_retry,
            ))  # fmt: skip
        except LlmError as exc:
            outcome.append(exc)
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()
    if isinstance(outcome[0], LlmError):
        raise outcome[0]
    message = outcome[0]
    return message, texts, retries


async def test_text_and_tool_call_deltas_are_assembled() -> None:
    fake = FakeOpenAI([Reply(
        [Text("Let me look.", chunk=3), ToolUse("ls", {"path": "/src", "deep": [1, 2]}, chunk=4),
         ToolUse("ls", {"path": "/"}, chunk=2)],
        input_tokens=40, output_tokens=17, cache_read_input_tokens=2,
    )])  # fmt: skip
    message, texts, _ = await _stream(fake)
    assert message.text == "Let me look."
    assert texts == ["Let", "Let me", "Let me lo", "Let me look."]
    assert [(t["name"], t["input"]) for t in message.tool_uses] == [
        ("ls", {"path": "/src", "deep": [1, 2]}), ("ls", {"path": "/"})]  # fmt: skip
    assert all(t["id"].startswith("call_") for t in message.tool_uses)
    assert message.stop_reason == "tool_use"
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (40, 2, 17)
    request = fake.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-openai-test"
    body = request.body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 8192
    assert body["messages"][0] == {"role": "system", "content": "sys"}
    assert body["tools"][0]["function"]["name"] == "ls"
    assert body["tools"][0]["function"]["parameters"]["required"] == ["path"]


async def test_no_key_sends_no_authorization_and_azure_style_header() -> None:
    fake = FakeOpenAI([Reply([Text("a")]), Reply([Text("b")])])
    await _stream(fake, api_key=None)
    assert "authorization" not in fake.requests[0].headers
    await _stream(fake, api_key="azure-key", api_key_header="api-key")
    assert fake.requests[1].headers["api-key"] == "azure-key"
    assert "authorization" not in fake.requests[1].headers


async def test_servers_that_omit_ids_or_misreport_the_finish_reason() -> None:
    fake = FakeOpenAI(
        [Reply([ToolUse("ls", {"path": "/"}), ToolUse("ls", {"path": "/a"})],
               omit_tool_ids=True, finish_reason="stop")]
    )  # fmt: skip
    message, _, _ = await _stream(fake)
    ids = [t["id"] for t in message.tool_uses]
    assert len(set(ids)) == 2
    assert all(i.startswith("call_") for i in ids)
    assert message.stop_reason == "tool_use"


async def test_malformed_arguments_become_an_unparsed_marker() -> None:
    fake = FakeOpenAI([Reply([ToolUse("ls", {}, raw_input='{"path": "/src",')])])
    message, _, _ = await _stream(fake)
    assert message.tool_uses[0]["input"] == {"_unparsed_input": '{"path": "/src",'}


@pytest.mark.parametrize("status", [429, 500, 503, 529])
async def test_http_errors_are_retried(status: int) -> None:
    fake = FakeOpenAI([Fault(status, retry_after=0.001), Reply([Text("ok")])])
    message, _, retries = await _stream(fake)
    assert message.text == "ok"
    assert len(fake.requests) == 2
    assert retries[0].status == status
    assert retries[0].request_id.startswith("req_fake")


async def test_a_dropped_stream_continues_the_text_so_far() -> None:
    fake = FakeOpenAI([
        Fault(drop_after_events=4, reply=Reply([Text("abcdefghijkl", chunk=2)])),
        Reply([Text("mnop")]),
    ])  # fmt: skip
    message, texts, retries = await _stream(fake)
    assert retries[0].code == "connection"
    assert message.text == "abcdef" + "mnop"
    assert all(len(a) <= len(b) for a, b in itertools.pairwise(texts))
    again = fake.requests[1].body["messages"]
    assert again[-2] == {"role": "assistant", "content": "abcdef"}
    assert again[-1]["role"] == "user"
    assert "Continue exactly where it stopped" in again[-1]["content"]


async def test_an_error_chunk_mid_stream_is_retried() -> None:
    fake = FakeOpenAI([Fault(500, message="upstream gone", error_after_events=3,
                             reply=Reply([Text("Streaming along", chunk=4)]))])  # fmt: skip
    message, _, retries = await _stream(fake)
    assert retries[0].code == "api_error"
    assert message.text.startswith("Stream")
    assert len(fake.requests) == 2


async def test_a_refused_continuation_is_asked_from_scratch() -> None:
    fake = FakeOpenAI([
        Fault(drop_after_events=3, reply=Reply([Text("abcdefgh", chunk=2)])),
        Fault(400, message="assistant messages must not end the list"),
        Reply([Text("fresh answer")]),
    ])  # fmt: skip
    message, texts, _ = await _stream(fake)
    assert message.text == "fresh answer"
    assert fake.requests[2].body["messages"][-1] == {"role": "user", "content": "hi"}
    assert all(len(a) <= len(b) for a, b in itertools.pairwise(texts))


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [(401, "llm_auth_failed", "API key"), (404, "llm_request_rejected", "OPENAI_BASE_URL"),
     (400, "llm_request_rejected", "fake failure")],
)  # fmt: skip
async def test_client_errors_are_not_retried(status: int, code: str, words: str) -> None:
    fake = FakeOpenAI([Fault(status)])
    with pytest.raises(LlmError) as info:
        await _stream(fake)
    assert info.value.code == code
    assert words in info.value.message
    assert len(fake.requests) == 1


async def test_retries_exhausted() -> None:
    fake = FakeOpenAI([Fault(429)] * 10)
    with pytest.raises(LlmError) as info:
        await _stream(fake)
    assert info.value.code == "llm_rate_limited"
    assert len(fake.requests) == 5


async def test_images_are_sent_as_data_urls_or_left_out() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}}  # fmt: skip
    messages = [{"role": "user", "content": [{"type": "text", "text": "like this"}, image]}]
    fake = FakeOpenAI([Reply([Text("ok")]), Reply([Text("ok")])])
    await _stream(fake, messages)
    parts = fake.requests[0].body["messages"][1]["content"]
    assert parts[1] == {"type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}  # fmt: skip
    await _stream(fake, messages, images=False)
    text = fake.requests[1].body["messages"][1]["content"]
    assert text.startswith("like this")
    assert "does not accept images" in text


async def test_cancel_mid_stream_closes_the_connection() -> None:
    hold = trio.Event()
    fake = FakeOpenAI([Reply([Text("never ending", chunk=2)], hold=hold)])
    texts: list[str] = []

    async def on_text(text: str) -> None:
        texts.append(text)

    async with trio.open_nursery() as nursery:
        base_url = await nursery.start(fake.serve)
        client = _client(base_url)
        with trio.move_on_after(5) as scope:
            async with trio.open_nursery() as inner:

                async def run() -> None:
                    await client.stream_message(system="s", messages=[{"role": "user",
                                                "content": "hi"}], tools=[], on_text=on_text)  # fmt: skip

                inner.start_soon(run)
                while not texts:
                    await trio.sleep(0.001)
                inner.cancel_scope.cancel()
        assert not scope.cancelled_caught
        assert texts == ["ne"]
        await client.aclose()
        nursery.cancel_scope.cancel()
