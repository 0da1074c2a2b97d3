"""The Anthropic Messages adapter of the provider interface (:mod:`.model_api`).

``anthropic.AsyncAnthropic`` makes the request (auth, base URL, timeouts, HTTP errors as
``APIStatusError``) over the lean HTTP/1.1 transport (:mod:`amicable_agent.lean_http`); the
SSE body is read straight from that transport's stream and parsed by :class:`~.sse.SseParser`
into plain dicts, one ``json.loads`` per event and no pydantic. The conversation is already
in this API's format; a retry after a drop continues the streamed text by assistant prefill.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

import anthropic
import attrs

from amicable_agent.lean_http import BODY, LeanResponseStream, LeanTransport

from .model_api import Attempt, LlmError, ModelRequest, Retryable, parse_arguments
from .sse import SseParser, StreamEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Awaitable, Callable

    from anthropic.types import MessageParam, ToolParam

    from .models import ModelSpec


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    raw = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def is_transport_error(exc: Exception) -> bool:
    """An error of the HTTP stack itself (a stream dropped mid-way is not wrapped by the
    SDK); matched by module so we don't depend on that stack directly."""
    module = type(exc).__module__.split(".")[0]
    return module.startswith(("httpx", "httpcore")) and "Error" in type(exc).__name__


class _DroppedStream(anthropic.APIConnectionError):
    def __init__(self) -> None:
        Exception.__init__(self, "stream ended before message_stop")
        self.message = "stream ended before message_stop"


class AnthropicProvider:
    """Streams Messages API answers for one model.

    Args:
        spec: the model (id, key, base URL).
        request_timeout_s: deadline of one request (connect to last event).
    """

    name = "anthropic"

    def __init__(self, spec: ModelSpec, *, request_timeout_s: float) -> None:
        self.spec = spec
        self._client = anthropic.AsyncAnthropic(
            api_key=spec.api_key or "not-configured",
            base_url=spec.base_url,
            max_retries=0,
            timeout=request_timeout_s,
            http_client=anthropic.DefaultAsyncHttpxClient(transport=LeanTransport()),
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    def classify(self, exc: Exception) -> Retryable | LlmError:
        """429/529/5xx, timeouts and drops are retried; 401/403 and other 4xx are not."""
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            body = exc.body if isinstance(exc.body, dict) else {}
            err = body.get("error") if isinstance(body.get("error"), dict) else body
            etype = str((err or {}).get("type", ""))
            if status == 429 or etype == "rate_limit_error":
                return Retryable(
                    "rate_limited", "the model API is rate limiting us (429)", _retry_after(exc)
                )
            if status == 529 or etype == "overloaded_error":
                return Retryable(
                    "overloaded", "the model API is overloaded (529)", _retry_after(exc)
                )
            if status >= 500 or etype == "api_error":
                return Retryable("api_error", f"the model API failed ({status})")
            if status in (401, 403):
                return LlmError("llm_auth_failed", "the model API rejected the API key")
            return LlmError(
                "llm_request_rejected", f"the model API rejected the request ({status})"
            )
        if isinstance(exc, anthropic.APITimeoutError):
            return Retryable("timeout", "the model API did not answer in time")
        if isinstance(exc, anthropic.APIConnectionError | json.JSONDecodeError) or (
            is_transport_error(exc)
        ):
            return Retryable("connection", "the connection to the model API dropped")
        return LlmError("llm_error", f"unexpected model API error: {type(exc).__name__}")

    def facts(self, exc: Exception, attempt: Attempt) -> tuple[int | None, str | None, str]:
        """HTTP status, request id and a short detail of a failed call (nothing secret)."""
        if isinstance(exc, anthropic.APIStatusError):
            detail = f"error type {exc.type}" if exc.type else type(exc).__name__
            if attempt.status is not None:  # an error event in a stream that had started
                detail += f", after {attempt.events} events"
            return exc.status_code, exc.request_id or attempt.request_id, detail
        if attempt.status is not None:
            name = type(exc).__name__
            return attempt.status, attempt.request_id, f"{name} after {attempt.events} events"
        return None, None, type(exc).__name__

    def refused_continuation(self, exc: Exception) -> bool:
        """Some models refuse assistant prefill with a 400."""
        return isinstance(exc, anthropic.BadRequestError)

    async def stream_once(
        self,
        request: ModelRequest,
        attempt: Attempt,
        on_text: Callable[[str], Awaitable[None]],
        on_text_done: Callable[[], Awaitable[None]] | None,
    ) -> None:
        """Stream one Messages answer into ``attempt`` (see :class:`~.model_api.Provider`)."""
        messages = request.messages
        if request.continue_from:
            prefill = {"role": "assistant",
                       "content": [{"type": "text", "text": request.continue_from}]}  # fmt: skip
            messages = [*messages, prefill]
        # The SDK still makes the request (auth, base URL, timeouts, HTTP errors raised as
        # ``APIStatusError``), but we read the SSE body ourselves: its decoder and one
        # pydantic model per event cost more CPU than everything else per delta.
        async with self._client.messages.with_streaming_response.create(
            model=self.spec.model,
            max_tokens=request.max_output_tokens,
            system=[{"type": "text", "text": request.system,
                     "cache_control": {"type": "ephemeral"}}],
            messages=cast("list[MessageParam]", messages),
            tools=cast("list[ToolParam]", request.tools),
            stream=True,
        ) as response:  # fmt: skip
            http_response = response.http_response
            attempt.status = http_response.status_code
            attempt.request_id = http_response.headers.get("request-id")
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
                    attempt.events += 1
                    if error is not None:
                        continue
                    if event.type == "error":
                        # The API ends the stream after an error event: read to the end
                        # (the connection stays reusable), then raise as the SDK does.
                        error = event.data
                        continue
                    await self._on_event(event, attempt, on_text)
                    if (
                        on_text_done is not None
                        and event.type == "content_block_stop"
                        and attempt.blocks.get(event.data.get("index", -1), {}).get("type")
                        == "text"
                    ):
                        await on_text_done()
            if error is not None:
                raise anthropic.APIStatusError(str(error), response=http_response, body=error)
        if attempt.stop_reason is None:
            raise _DroppedStream()

    async def _on_event(
        self, event: StreamEvent, acc: Attempt, on_text: Callable[[str], Awaitable[None]]
    ) -> None:
        kind = event.type
        data = event.data
        index: int = data.get("index", -1)
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta" and index in acc.blocks:
                acc.blocks[index]["text"] += delta.get("text") or ""
                await on_text(acc.text())
            elif dtype == "input_json_delta" and index in acc.json_parts:
                acc.json_parts[index].append(delta.get("partial_json") or "")
        elif kind == "message_start":
            u = (data.get("message") or {}).get("usage") or {}
            acc.usage = type(acc.usage)(
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
                acc.blocks[index]["input"] = parse_arguments("".join(parts))
        elif kind == "message_delta":
            acc.stop_reason = (data.get("delta") or {}).get("stop_reason")
            out = (data.get("usage") or {}).get("output_tokens")
            if out is not None:
                acc.usage = attrs.evolve(acc.usage, output_tokens=out)
