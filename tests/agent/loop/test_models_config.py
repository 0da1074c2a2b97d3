"""Model configuration and the Chat Completions translation: pure, no event loop."""

from __future__ import annotations

import json

import pytest
from amicable_agent.loop.model_api import Attempt, ModelRequest, TokenUsage
from amicable_agent.loop.models import ModelSpec
from amicable_agent.loop.openai_wire import ChunkError, ChunkReader, chat_body, chat_messages
from amicable_agent.loop.settings import LoopConfigError, LoopSettings
from amicable_agent.loop.spend import Budgets, Limits, period_starts
from amicable_agent.loop.sse import DONE, SseParser


def test_deepagents_model_picks_the_provider_and_its_variables() -> None:
    s = LoopSettings.from_env({"DEEPAGENTS_MODEL": "openai:gpt-4.1-mini",
                               "OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a"})  # fmt: skip
    spec = s.catalog().default
    assert (spec.id, spec.provider, spec.model, spec.api_key) == (
        "openai:gpt-4.1-mini", "openai", "gpt-4.1-mini", "sk-o")  # fmt: skip
    assert spec.max_tokens_field == "max_completion_tokens"  # OpenAI's own API
    assert s.model_configured
    local = LoopSettings.from_env({"DEEPAGENTS_MODEL": "openai:qwen2.5-coder",
                                   "OPENAI_BASE_URL": "http://localhost:11434/v1"})  # fmt: skip
    assert local.model_configured  # a local server needs no key
    assert local.catalog().default.max_tokens_field == "max_tokens"
    assert not LoopSettings.from_env({"DEEPAGENTS_MODEL": "openai:gpt-4.1"}).model_configured
    legacy = LoopSettings.from_env({"DEEPAGENTS_MODEL": "anthropic:claude-opus-4-6",
                                    "ANTHROPIC_API_KEY": "sk-a"})  # fmt: skip
    assert (legacy.provider, legacy.model, legacy.catalog().default.id) == (
        "anthropic", "claude-opus-4-6", "anthropic:claude-opus-4-6")  # fmt: skip


MODELS = [
    {"id": "local", "provider": "openai", "model": "qwen2.5-coder:14b",
     "base_url": "http://localhost:11434/v1", "label": "Qwen (Ollama)",
     "price_input_per_mtok": 0, "price_output_per_mtok": 0, "context_window": 32768,
     "images": False},
    {"id": "gateway", "provider": "openai", "model": "claude-haiku-4-5",
     "base_url": "https://llm.example/v1", "api_key_env": "GATEWAY_KEY"},
]  # fmt: skip


def test_amicable_models_entries_become_the_picker() -> None:
    env = {"AMICABLE_MODELS": json.dumps(MODELS), "ANTHROPIC_API_KEY": "sk-a",
           "GATEWAY_KEY": "gw", "AMICABLE_SMALL_MODEL": "local"}  # fmt: skip
    s = LoopSettings.from_env(env)
    catalog = s.catalog()
    assert [m.id for m in catalog.models] == ["anthropic:claude-sonnet-5-5", "local", "gateway"]
    local, gateway = catalog.models[1:]
    assert (local.api_key, local.images, local.context_window) == (None, False, 32768)
    assert local.cost_usd(TokenUsage(10**6, 10**6)) == 0.0
    assert gateway.api_key == "gw"
    assert gateway.prices()[:2] == (1.0, 5.0)  # a known family's list price
    assert catalog.small.id == "local"
    assert set(catalog.secrets()) == {"sk-a", "gw"}
    choices = catalog.choices()
    assert choices[1].label == "Qwen (Ollama)"
    assert "localhost" not in repr(choices)  # no URL, no key reaches the editor
    # DEEPAGENTS_MODEL may name an entry: it becomes the default.
    chosen = LoopSettings.from_env({**env, "DEEPAGENTS_MODEL": "local"})
    assert chosen.catalog().default.id == "local"
    assert chosen.model_configured


@pytest.mark.parametrize(
    ("value", "words"),
    [('{"id": "x"}', "JSON list"),
     ('[{"id": "x", "provider": "mistral", "model": "m"}]', r"AMICABLE_MODELS\[0\]\.provider"),
     ('[{"id": "x", "provider": "openai", "model": "m", "colour": "red"}]', "colour"),
     ('[{"id": "x", "provider": "openai", "model": "m"}, {"id": "x", "provider": "openai", '
      '"model": "n"}]', "used twice")],
)  # fmt: skip
def test_bad_models_config_is_refused_with_the_reason(value: str, words: str) -> None:
    with pytest.raises(LoopConfigError, match=words):
        LoopSettings.from_env({"AMICABLE_MODELS": value})


def test_budgets_from_env_and_periods() -> None:
    b = Budgets.from_env({"AMICABLE_BUDGET_USER_DAILY_USD": "5",
                          "AMICABLE_BUDGET_PROJECT_MONTHLY_TOKENS": "2e6"})  # fmt: skip
    assert b.user == Limits(daily_usd=5.0)
    assert b.project == Limits(monthly_tokens=2_000_000)
    assert not Budgets().user.any
    assert b.user.overridden({"daily_usd": 50, "monthly_usd": True, "x": 1}) == Limits(50.0)
    day, month = period_starts(1_700_000_000.0)  # 2023-11-14 22:13:20 UTC
    assert (day, month) == (1_699_920_000.0, 1_698_796_800.0)


def test_chat_messages_translate_the_conversation() -> None:
    conversation = [
        {"role": "user", "content": "make a page"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {"path": "/"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "src/", "is_error": False},
            {"type": "text", "text": "also this"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_2", "name": "read_file", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "denied"},
                         {"type": "image", "source": {"media_type": "image/png", "data": "AA"}}]}]},
    ]  # fmt: skip
    out = chat_messages("sys", conversation)
    assert out[0] == {"role": "system", "content": "sys"}
    assert out[1] == {"role": "user", "content": "make a page"}
    assert out[2] == {"role": "assistant", "content": "Looking.", "tool_calls": [
        {"id": "toolu_1", "type": "function",
         "function": {"name": "ls", "arguments": '{"path": "/"}'}}]}  # fmt: skip
    assert out[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "src/"}
    assert out[4] == {"role": "user", "content": "also this"}
    assert out[5]["content"] is None
    assert out[6] == {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: denied"}
    # An image a tool returned follows the tool messages in a user message.
    assert out[7]["content"][1] == {"type": "image_url",
                                    "image_url": {"url": "data:image/png;base64,AA"}}  # fmt: skip
    body = chat_body(ModelRequest("sys", conversation, [], "so far"), "m",
                     max_tokens_field="max_completion_tokens")  # fmt: skip
    assert "tools" not in body
    assert body["max_completion_tokens"] == 8192
    assert body["messages"][-2] == {"role": "assistant", "content": "so far"}


def test_chunk_reader_normalises_what_servers_send() -> None:
    attempt = Attempt()
    reader = ChunkReader(attempt)
    feed = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "functions.ls:0", "function": {"name": "ls"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": {"path": "/"}}}]}}]},
        {"choices": [{"index": 1, "delta": {"content": "other choice"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 3}},
    ]  # fmt: skip
    grew = [reader.feed(chunk) for chunk in feed]
    assert grew == [False, True, False, False, False, False, False]
    assert reader.finished
    reader.finish()
    assert attempt.text() == "Hi"
    call = attempt.blocks[1]
    assert call == {"type": "tool_use", "id": "functions_ls_0", "name": "ls",
                    "input": {"path": "/"}}  # fmt: skip
    assert attempt.stop_reason == "max_tokens"
    assert attempt.usage == TokenUsage(10, 3)
    with pytest.raises(ChunkError, match="boom") as info:
        ChunkReader(Attempt()).feed({"error": {"message": "boom", "code": 429}})
    assert info.value.status == 429


def test_sse_parser_reads_chat_completion_chunks() -> None:
    raw = b'data: {"choices":[]}\n\ndata: {"a":\ndata: 1}\n\ndata: [DONE]\n\n'
    parser = SseParser()
    events = [e for i in range(0, len(raw), 5) for e in parser.feed(raw[i : i + 5])]
    assert [e.type for e in events] == ["", "", DONE]
    assert events[1].data == {"a": 1}


def test_spec_cost_uses_configured_prices_then_family_prices() -> None:
    usage = TokenUsage(1_000_000, 1_000_000, 1_000_000, 0)
    assert ModelSpec("a", "anthropic", "claude-sonnet-5-5").cost_usd(usage) == 3 + 15 + 0.3
    mine = ModelSpec("b", "openai", "llama", price_input_per_mtok=1, price_output_per_mtok=2)
    assert mine.cost_usd(usage) == 1 + 2 + 1  # cached input costs input without a price
