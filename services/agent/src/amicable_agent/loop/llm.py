"""Streaming calls to the Anthropic Messages API with retries, on Trio.

:class:`LlmClient` wraps ``anthropic.AsyncAnthropic`` (whose HTTP stack is anyio-based and
runs on Trio). The SDK's own retries are off: we retry 429, 529, 5xx, connection errors and
streams that drop mid-way with exponential backoff, and after a drop we ask the model to
continue the text already streamed (assistant prefill), so nothing the user saw is lost.
Each failed attempt is logged with the provider's HTTP status and request id (never a header
or a body: no secrets) and announced to the caller (``on_retry``, the editor's status line),
and so is the final failure.
The SDK makes the request (auth, base URL, timeouts, HTTP errors) over a lean HTTP/1.1
transport (:mod:`amicable_agent.lean_http`); the SSE body is read straight from that
transport's stream and parsed here (:class:`SseParser`) into plain dicts, one
``json.loads`` per event and no pydantic.
"""

from __future__ import annotations

import json
import logging
import random
from typing import TYPE_CHECKING, Any, cast

import anthropic
import attrs
import trio

from amicable_agent.errors import AgentError
from amicable_agent.lean_http import BODY, LeanResponseStream, LeanTransport

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Awaitable, Callable

    from anthropic.types import MessageParam, ToolParam

    from .settings import LoopSettings

log = logging.getLogger(__name__)

# USD per million tokens: (input, output, cache write, cache read), by model family.
_PRICES: dict[str, tuple[float, float, float, float]] = {
    "opus-4-5": (5.0, 25.0, 6.25, 0.50),
    "opus-4-6": (5.0, 25.0, 6.25, 0.50),
    "opus": (15.0, 75.0, 18.75, 1.50),
    "sonnet": (3.0, 15.0, 3.75, 0.30),
    "haiku-4": (1.0, 5.0, 1.25, 0.10),
    "haiku": (0.80, 4.0, 1.0, 0.08),
}


class LlmError(AgentError):
    """The model API failed for good (after retries); ``message`` is fit for the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.frozen
class TokenUsage:
    """Token counts of one or more model calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
        )

    @property
    def total(self) -> int:
        """Tokens counted against the turn budget (everything sent and received)."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )


def estimate_cost_usd(model: str, usage: TokenUsage) -> float:
    """Estimated list-price cost of ``usage`` on ``model`` (0 for unknown models)."""
    prices = next((p for family, p in _PRICES.items() if family in model), None)
    if prices is None:
        return 0.0
    p_in, p_out, p_write, p_read = prices
    cost = (
        usage.input_tokens * p_in
        + usage.output_tokens * p_out
        + usage.cache_creation_input_tokens * p_write
        + usage.cache_read_input_tokens * p_read
    ) / 1_000_000
    return round(cost, 6)


@attrs.frozen
class AssistantMessage:
    """A complete model answer: ``content`` is Anthropic JSON (text and tool_use blocks)."""

    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: TokenUsage

    @property
    def text(self) -> str:
        return "".join(b["text"] for b in self.content if b["type"] == "text")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b["type"] == "tool_use"]


_RETRY_WORDS = {
    "rate_limited": "Model API busy (rate limited)",
    "overloaded": "Model API busy (overloaded)",
    "api_error": "Model API error",
    "timeout": "Model API did not answer in time",
    "connection": "Connection to the model API dropped",
}


@attrs.frozen
class RetryNotice:
    """A failed model call about to be retried.

    Attributes:
        attempt: which retry this is (1 = the first).
        max_retries: retries allowed before giving up.
        delay_s: the wait before the retry.
        code: ``rate_limited``, ``overloaded``, ``api_error``, ``timeout`` or ``connection``.
        status: the HTTP status of the failed call (200 for a stream that dropped or
            reported an error mid-way), None when no response came.
        request_id: the provider's ``request-id`` of the failed call, if any.
    """

    attempt: int
    max_retries: int
    delay_s: float
    code: str
    status: int | None = None
    request_id: str | None = None

    @property
    def text(self) -> str:
        """The status line for the editor: ``Model API busy (overloaded), retrying 2/4 in 4 s``."""
        delay = f"{self.delay_s:.0f}" if self.delay_s >= 1 else f"{self.delay_s:.1f}"
        what = _RETRY_WORDS.get(self.code, "Model API failed")
        if self.code == "api_error" and self.status:
            what += f" ({self.status})"
        return f"{what}, retrying {self.attempt}/{self.max_retries} in {delay} s"


class _Retryable(Exception):
    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    raw = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _is_transport(exc: Exception) -> bool:
    # A stream that drops mid-way raises the SDK's HTTP stack's own transport error (not
    # wrapped by the SDK); match it by module so we don't depend on that stack directly.
    module = type(exc).__module__.split(".")[0]
    return module.startswith(("httpx", "httpcore")) and "Error" in type(exc).__name__


def _classify(exc: Exception) -> _Retryable | LlmError:
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        err = body.get("error") if isinstance(body.get("error"), dict) else body
        etype = str((err or {}).get("type", ""))
        if status == 429 or etype == "rate_limit_error":
            return _Retryable(
                "rate_limited", "the model API is rate limiting us (429)", _retry_after(exc)
            )
        if status == 529 or etype == "overloaded_error":
            return _Retryable("overloaded", "the model API is overloaded (529)", _retry_after(exc))
        if status >= 500 or etype == "api_error":
            return _Retryable("api_error", f"the model API failed ({status})")
        if status in (401, 403):
            return LlmError("llm_auth_failed", "the model API rejected the API key")
        return LlmError("llm_request_rejected", f"the model API rejected the request ({status})")
    if isinstance(exc, anthropic.APITimeoutError):
        return _Retryable("timeout", "the model API did not answer in time")
    if isinstance(exc, anthropic.APIConnectionError | json.JSONDecodeError) or _is_transport(exc):
        return _Retryable("connection", "the connection to the model API dropped")
    return LlmError("llm_error", f"unexpected model API error: {type(exc).__name__}")


@attrs.define
class _Accumulator:
    blocks: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    json_parts: dict[int, list[str]] = attrs.field(factory=dict)
    stop_reason: str | None = None
    usage: TokenUsage = TokenUsage()
    status: int | None = None  # of the HTTP response, once it arrived
    request_id: str | None = None
    events: int = 0


def _facts(exc: Exception, acc: _Accumulator) -> tuple[int | None, str | None, str]:
    """HTTP status, request id and a short detail of a failed call (nothing secret)."""
    if isinstance(exc, anthropic.APIStatusError):
        detail = f"error type {exc.type}" if exc.type else type(exc).__name__
        if acc.status is not None:  # an error event in a stream that had started
            detail += f", after {acc.events} events"
        return exc.status_code, exc.request_id or acc.request_id, detail
    if acc.status is not None:
        return acc.status, acc.request_id, f"{type(exc).__name__} after {acc.events} events"
    return None, None, type(exc).__name__


class LlmClient:
    """One Anthropic client for the whole agent process.

    Args:
        settings: model, key, base URL, retry policy.
    """

    def __init__(self, settings: LoopSettings) -> None:
        self.settings = settings
        self._client = anthropic.AsyncAnthropic(
            api_key=settings.api_key or "not-configured",
            base_url=settings.base_url,
            max_retries=0,
            timeout=settings.request_timeout_s,
            http_client=anthropic.DefaultAsyncHttpxClient(transport=LeanTransport()),
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    async def stream_message(
        self,
        *,
        system: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        on_text: Callable[[str], Awaitable[None]],
        on_text_done: Callable[[], Awaitable[None]] | None = None,
        on_retry: Callable[[RetryNotice], Awaitable[None]] | None = None,
    ) -> AssistantMessage:
        """Stream one assistant message, calling ``on_text(text_so_far)`` as text arrives.

        ``text_so_far`` is this message's cumulative text; it never shrinks across retries.
        ``on_text_done()`` is called when a text block ends (callers that throttle
        ``on_text`` flush then, instead of waiting for the end of the message).
        ``on_retry(notice)`` is called before waiting to retry a failed attempt.

        Raises:
            LlmError: a non-retryable error, or retries exhausted.

        Cancellation: closes the HTTP stream (the API stops generating) and re-raises.
        """
        prefix = ""  # text streamed by failed attempts, kept on screen
        prefill = True  # continue ``prefix`` by assistant prefill (some models refuse it)
        usage = TokenUsage()
        attempt = 0
        while True:
            base = prefix.rstrip() if prefill else ""
            request_messages = messages
            if base:
                request_messages = [
                    *messages,
                    {"role": "assistant", "content": [{"type": "text", "text": base}]},
                ]
            acc = _Accumulator()
            floor = prefix

            async def show(text: str, floor: str = floor) -> None:
                # Without prefill a retry restarts the text: keep the longer one on screen.
                await on_text(text if len(text) >= len(floor) else floor)

            try:
                await self._stream_once(
                    system, request_messages, tools, acc, base, show, on_text_done
                )
            except Exception as exc:
                usage = usage + acc.usage
                if base and isinstance(exc, anthropic.BadRequestError):
                    log.info("the model refused the prefill after a retry; asking from scratch")
                    prefill = False  # "prefill not supported": retry from scratch at once
                    continue
                verdict = _classify(exc)
                status, request_id, detail = _facts(exc, acc)
                if isinstance(verdict, LlmError):
                    log.error(
                        "model API call failed: %s (HTTP %s, request-id %s, %s)",
                        verdict.message, status, request_id, detail,
                    )  # fmt: skip
                    raise verdict from exc
                attempt += 1
                streamed = base + _text_of(acc)
                if len(streamed) >= len(prefix):
                    prefix = streamed
                retries = self.settings.llm_max_retries
                if attempt > retries:
                    log.error(
                        "model API call failed for good after %d attempts: %s "
                        "(HTTP %s, request-id %s, %s)",
                        attempt, verdict.message, status, request_id, detail,
                    )  # fmt: skip
                    raise LlmError(
                        f"llm_{verdict.code}",
                        f"{verdict.message}; gave up after {attempt} attempts",
                    ) from exc
                delay = min(
                    self.settings.llm_retry_max_s,
                    self.settings.llm_retry_base_s * 2 ** (attempt - 1),
                ) * random.uniform(0.8, 1.2)
                if verdict.retry_after is not None:
                    delay = min(self.settings.llm_retry_max_s, max(delay, verdict.retry_after))
                log.warning(
                    "model API call failed: %s (HTTP %s, request-id %s, %s); "
                    "retrying %d/%d in %.1f s",
                    verdict.message, status, request_id, detail, attempt, retries, delay,
                )  # fmt: skip
                if on_retry is not None:
                    notice = RetryNotice(attempt, retries, delay, verdict.code, status, request_id)
                    await on_retry(notice)
                await trio.sleep(delay)
                continue
            usage = usage + acc.usage
            content = [acc.blocks[i] for i in sorted(acc.blocks)]
            if base:
                content = _merge_prefix(base, content)
            return AssistantMessage(content, acc.stop_reason, usage)

    async def _stream_once(
        self,
        system: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        acc: _Accumulator,
        base: str,
        on_text: Callable[[str], Awaitable[None]],
        on_text_done: Callable[[], Awaitable[None]] | None,
    ) -> None:
        # The SDK still makes the request (auth, base URL, timeouts, HTTP errors raised as
        # ``APIStatusError``), but we read the SSE body ourselves: its decoder and one
        # pydantic model per event cost more CPU than everything else per delta.
        async with self._client.messages.with_streaming_response.create(
            model=self.settings.model,
            max_tokens=self.settings.max_output_tokens,
            system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            messages=cast("list[MessageParam]", messages),
            tools=cast("list[ToolParam]", tools),
            stream=True,
        ) as response:
            http_response = response.http_response
            acc.status = http_response.status_code
            acc.request_id = http_response.headers.get("request-id")
            parser = SseParser()
            error: dict[str, Any] | None = None
            # The lean transport's body, read directly (httpx adds two generator layers
            # per chunk); a proxied request went through httpx's own transport instead.
            body = http_response.extensions.get(BODY)
            chunks: AsyncIterable[bytes] = (
                body if isinstance(body, LeanResponseStream) else http_response.aiter_bytes()
            )
            async for chunk in chunks:
                for event in parser.feed(chunk):
                    acc.events += 1
                    if error is not None:
                        continue
                    if event.type == "error":
                        # The API ends the stream after an error event: read to the end
                        # (the connection stays reusable), then raise as the SDK does.
                        error = event.data
                        continue
                    await self._on_event(event, acc, base, on_text)
                    if (
                        on_text_done is not None
                        and event.type == "content_block_stop"
                        and acc.blocks.get(event.data.get("index", -1), {}).get("type") == "text"
                    ):
                        await on_text_done()
            if error is not None:
                raise anthropic.APIStatusError(str(error), response=http_response, body=error)
        if acc.stop_reason is None:
            raise _DroppedStream()

    async def _on_event(
        self,
        event: StreamEvent,
        acc: _Accumulator,
        base: str,
        on_text: Callable[[str], Awaitable[None]],
    ) -> None:
        kind = event.type
        data = event.data
        index: int = data.get("index", -1)
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta" and index in acc.blocks:
                acc.blocks[index]["text"] += delta.get("text") or ""
                await on_text(base + _text_of(acc))
            elif dtype == "input_json_delta" and index in acc.json_parts:
                acc.json_parts[index].append(delta.get("partial_json") or "")
        elif kind == "message_start":
            u = (data.get("message") or {}).get("usage") or {}
            acc.usage = TokenUsage(
                u.get("input_tokens") or 0,
                u.get("output_tokens") or 0,
                u.get("cache_read_input_tokens") or 0,
                u.get("cache_creation_input_tokens") or 0,
            )
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "text":
                acc.blocks[index] = {"type": "text", "text": block.get("text") or ""}
            elif block.get("type") == "tool_use":
                acc.blocks[index] = {
                    "type": "tool_use", "id": block.get("id"), "name": block.get("name"),
                    "input": {},
                }  # fmt: skip
                acc.json_parts[index] = []
        elif kind == "content_block_stop":
            parts = acc.json_parts.pop(index, None)
            if parts is not None:
                acc.blocks[index]["input"] = _parse_input("".join(parts))
        elif kind == "message_delta":
            acc.stop_reason = (data.get("delta") or {}).get("stop_reason")
            out = (data.get("usage") or {}).get("output_tokens")
            if out is not None:
                acc.usage = attrs.evolve(acc.usage, output_tokens=out)


class StreamEvent:
    """One parsed SSE event of a Messages stream: ``type`` and its JSON ``data`` (a dict).

    Other attributes read the JSON fields (``event.index``, ``event.delta.text``; nested
    objects are wrapped the same way, missing fields are ``None``), like the SDK's models.
    """

    __slots__ = ("data", "type")

    def __init__(self, type: str, data: dict[str, Any]) -> None:
        self.type = type
        self.data = data

    def __getattr__(self, name: str) -> Any:
        value = self.data.get(name)
        return StreamEvent(value.get("type", ""), value) if isinstance(value, dict) else value


class SseParser:
    """Incremental ``text/event-stream`` parser: :meth:`feed` bytes, get whole events.

    Lines end in LF or CRLF (the API's framing); an event's ``data:`` lines are joined with
    LF and decoded as JSON once. ``ping`` events, comments and events without data are
    dropped. A malformed JSON payload raises ``json.JSONDecodeError`` (a retryable drop).
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """The events completed by ``chunk`` (often none or one)."""
        data = self._buffer + chunk if self._buffer else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")  # a CR split from its LF stays buffered
        if b"\n\n" not in data:
            self._buffer = data
            return []
        *blocks, self._buffer = data.split(b"\n\n")
        events: list[StreamEvent] = []
        for block in blocks:
            name, sep, body = block.partition(b"\n")
            # The API's shape: one event line, one data line.
            if (
                sep
                and name.startswith(b"event: ")
                and body.startswith(b"data: ")
                and b"\n" not in body
            ):
                if name != b"event: ping":
                    events.append(_event(name[7:].decode(), body[6:]))
            else:
                self._general(block, events)
        return events

    @staticmethod
    def _general(block: bytes, events: list[StreamEvent]) -> None:
        name = ""
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                name = line[6:].strip().decode()
        if data and name != "ping":
            events.append(_event(name, b"\n".join(data)))


def _event(name: str, raw: bytes) -> StreamEvent:
    payload = json.loads(raw.decode())
    if not isinstance(payload, dict):
        raise json.JSONDecodeError("event data is not a JSON object", raw.decode(), 0)
    return StreamEvent(name or str(payload.get("type", "")), payload)


class _DroppedStream(anthropic.APIConnectionError):
    def __init__(self) -> None:
        Exception.__init__(self, "stream ended before message_stop")
        self.message = "stream ended before message_stop"


def _parse_input(raw: str) -> dict[str, Any]:
    # A reply cut by max_tokens can end inside a tool call's JSON: hand the tool an input
    # it will reject (the model hears why) instead of failing the whole stream.
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_unparsed_input": raw[:200]}
    return value if isinstance(value, dict) else {"_unparsed_input": raw[:200]}


def _text_of(acc: _Accumulator) -> str:
    return "".join(
        acc.blocks[i]["text"] for i in sorted(acc.blocks) if acc.blocks[i]["type"] == "text"
    )


def _merge_prefix(prefix: str, content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if content and content[0]["type"] == "text":
        return [{"type": "text", "text": prefix + content[0]["text"]}, *content[1:]]
    return [{"type": "text", "text": prefix}, *content]
