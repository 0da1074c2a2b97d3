"""The OpenAI-compatible Chat Completions adapter of the provider interface (:mod:`.model_api`).

Speaks ``POST {base_url}/chat/completions`` with ``stream: true`` and
``stream_options.include_usage`` to OpenAI, Azure OpenAI (v1 API), OpenRouter, LiteLLM, vLLM,
Ollama, LM Studio … The request goes through ``httpx2`` over the agent's lean HTTP/1.1
transport (:mod:`amicable_agent.lean_http`) and the SSE body is read straight from it, as on
the Anthropic path; no SDK: the ``openai`` package would build a pydantic object per chunk
(measured in ``benchmarks/agent/README.md``). The JSON translation lives in
:mod:`.openai_wire`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx2

from amicable_agent.errors import AgentError
from amicable_agent.lean_http import BODY, LeanResponseStream, LeanTransport

from .model_api import Attempt, LlmError, ModelRequest, Retryable
from .openai_wire import ChunkError, ChunkReader, chat_body
from .sse import DONE, SseParser, StreamEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Awaitable, Callable

    from .models import ModelSpec

#: Where ``openai:<model>`` goes without ``OPENAI_BASE_URL``.
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


class _StatusError(AgentError):
    """The server answered an HTTP error status (never leaves this module's provider)."""

    def __init__(self, status: int, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class _EndedEarly(AgentError):
    """The stream ended without a ``finish_reason``."""


def _retry_after(headers: httpx2.Headers) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return float(raw) * scale
            except ValueError:
                return None
    return None


def _error_message(raw: bytes) -> str:
    """The ``error.message`` of an error body (clipped), else its start."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw[:200].decode(errors="replace")
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "")[:200]
    return str(error or body)[:200]


class OpenAIProvider:
    """Streams Chat Completions answers for one model.

    Args:
        spec: the model (id, key, base URL, image support, the max-tokens field).
        request_timeout_s: deadline of one request (connect, and each read).
    """

    name = "openai"

    def __init__(self, spec: ModelSpec, *, request_timeout_s: float) -> None:
        self.spec = spec
        base = (spec.base_url or DEFAULT_OPENAI_BASE_URL).rstrip("/")
        self._url = f"{base}/chat/completions"
        self._headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if spec.api_key:
            header = spec.api_key_header.lower()
            value = f"Bearer {spec.api_key}" if header == "authorization" else spec.api_key
            self._headers[header] = value
        self._client = httpx2.AsyncClient(
            transport=LeanTransport(), timeout=httpx2.Timeout(request_timeout_s)
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()

    def classify(self, exc: Exception) -> Retryable | LlmError:
        """429, 408, 5xx, timeouts, drops and mid-stream errors are retried; 4xx are not."""
        if isinstance(exc, _StatusError):
            status = exc.status
            if status == 429:
                return Retryable(
                    "rate_limited", "the model API is rate limiting us (429)", exc.retry_after
                )
            if status in (503, 529):
                return Retryable(
                    "overloaded", f"the model API is overloaded ({status})", exc.retry_after
                )
            if status >= 500:
                return Retryable("api_error", f"the model API failed ({status})")
            if status == 408:
                return Retryable("timeout", "the model API did not answer in time")
            if status in (401, 403):
                return LlmError("llm_auth_failed", "the model API rejected the API key")
            if status == 404:
                return LlmError(
                    "llm_request_rejected",
                    f"the model API does not know the model {self.spec.model!r} or the URL "
                    "(404); check the model name and OPENAI_BASE_URL",
                )
            return LlmError(
                "llm_request_rejected",
                f"the model API rejected the request ({status}): {exc.message}",
            )
        if isinstance(exc, ChunkError):
            if exc.status == 429:
                return Retryable("rate_limited", "the model API is rate limiting us (429)")
            return Retryable("api_error", f"the model API failed mid-stream: {exc.message}")
        if isinstance(exc, httpx2.TimeoutException):
            return Retryable("timeout", "the model API did not answer in time")
        if isinstance(exc, httpx2.TransportError | _EndedEarly | json.JSONDecodeError):
            return Retryable("connection", "the connection to the model API dropped")
        return LlmError("llm_error", f"unexpected model API error: {type(exc).__name__}")

    def facts(self, exc: Exception, attempt: Attempt) -> tuple[int | None, str | None, str]:
        """HTTP status, request id and a short detail of a failed call (nothing secret)."""
        if isinstance(exc, _StatusError):
            return exc.status, attempt.request_id, exc.message or "error status"
        if isinstance(exc, ChunkError):
            return (
                attempt.status,
                attempt.request_id,
                (f"error chunk after {attempt.events} events: {exc.message}"),
            )
        if attempt.status is not None:
            name = type(exc).__name__
            return attempt.status, attempt.request_id, f"{name} after {attempt.events} events"
        return None, None, type(exc).__name__

    def refused_continuation(self, exc: Exception) -> bool:
        """A 400 to a request that carried the partial answer: ask from scratch."""
        return isinstance(exc, _StatusError) and exc.status == 400

    async def stream_once(
        self,
        request: ModelRequest,
        attempt: Attempt,
        on_text: Callable[[str], Awaitable[None]],
        on_text_done: Callable[[], Awaitable[None]] | None,
    ) -> None:
        """Stream one Chat Completions answer into ``attempt`` (see
        :class:`~.model_api.Provider`)."""
        spec = self.spec
        body = chat_body(
            request, spec.model, images=spec.images, max_tokens_field=spec.max_tokens_field
        )
        content = json.dumps(body, separators=(",", ":")).encode()
        async with self._client.stream(
            "POST", self._url, content=content, headers=self._headers
        ) as response:
            attempt.status = response.status_code
            headers = response.headers
            attempt.request_id = headers.get("x-request-id") or headers.get("request-id")
            if response.status_code >= 400:
                raw = await response.aread()
                raise _StatusError(response.status_code, _error_message(raw), _retry_after(headers))
            # The lean transport's body, read directly; a proxied request went through
            # httpx2's own transport instead.
            stream = response.extensions.get(BODY)
            chunks: AsyncIterable[bytes] = (
                stream if isinstance(stream, LeanResponseStream) else response.aiter_bytes()
            )
            reader = ChunkReader(attempt)
            parser = SseParser()
            async for chunk in chunks:
                for event in parser.feed(chunk):
                    attempt.events += 1
                    if event.type != DONE:
                        await self._on_event(event, reader, on_text, on_text_done)
        if not reader.finished:
            raise _EndedEarly("stream ended without a finish_reason")
        reader.finish()
        if on_text_done is not None and 0 in attempt.blocks:
            await on_text_done()

    async def _on_event(
        self,
        event: StreamEvent,
        reader: ChunkReader,
        on_text: Callable[[str], Awaitable[None]],
        on_text_done: Callable[[], Awaitable[None]] | None,
    ) -> None:
        calls_before = len(reader.attempt.json_parts)
        if reader.feed(event.data):
            await on_text(reader.attempt.blocks[0]["text"])
        elif (
            on_text_done is not None
            and calls_before == 0
            and reader.attempt.json_parts
            and 0 in reader.attempt.blocks
        ):
            await on_text_done()  # the text ended where the first tool call began
