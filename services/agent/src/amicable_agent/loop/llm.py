"""Streaming model calls with retries, on Trio, for any provider (:mod:`.model_api`).

:class:`LlmClient` drives one :class:`~.model_api.Provider` (Anthropic Messages or an
OpenAI-compatible Chat Completions server). The providers' own retries are off: we retry 429,
529, 5xx, timeouts, connection errors and streams that drop mid-way with exponential backoff,
and after a drop we ask the model to continue the text already streamed, so nothing the user
saw is lost. Each failed attempt is logged with the provider's HTTP status and request id
(never a header or a body: no secrets) and announced to the caller (``on_retry``, the
editor's status line), and so is the final failure.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

import trio

from .model_api import (
    AssistantMessage,
    Attempt,
    LlmError,
    ModelRequest,
    RetryNotice,
    TokenUsage,
    UsageMeter,
    merge_prefix,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .model_api import Provider
    from .models import ModelSpec
    from .settings import LoopSettings

log = logging.getLogger(__name__)

__all__ = [
    "AssistantMessage", "LlmClient", "LlmError", "RetryNotice", "TokenUsage", "UsageMeter",
]  # fmt: skip


def open_provider(spec: ModelSpec, settings: LoopSettings) -> Provider:
    """The adapter for ``spec``'s provider."""
    if spec.provider == "openai":
        from .openai_api import OpenAIProvider

        return OpenAIProvider(spec, request_timeout_s=settings.request_timeout_s)
    from .anthropic_api import AnthropicProvider

    return AnthropicProvider(spec, request_timeout_s=settings.request_timeout_s)


async def _ignore_text(text: str) -> None:
    await trio.lowlevel.checkpoint()


class LlmClient:
    """One model's client for the whole agent process.

    Args:
        settings: retry policy and output limit (and the default model).
        spec: the model; the settings' default model when None.
        provider: the adapter (tests and benchmarks pass an instrumented one); opened
            from ``spec`` when None.
    """

    def __init__(
        self,
        settings: LoopSettings,
        spec: ModelSpec | None = None,
        *,
        provider: Provider | None = None,
    ) -> None:
        self.settings = settings
        self.spec = spec or settings.catalog().default
        self.provider = provider or open_provider(self.spec, settings)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.provider.aclose()

    async def complete(
        self,
        system: str,
        prompt: str,
        *,
        max_output_tokens: int = 1024,
        meter: UsageMeter | None = None,
    ) -> AssistantMessage:
        """A short answer without tools (small tasks: summaries, titles), with the same
        retries; ``meter`` as in :meth:`stream_message`.

        Raises:
            LlmError: a non-retryable error, or retries exhausted.
        """
        return await self.stream_message(
            system=system,
            messages=[{"role": "user", "content": prompt}],
            tools=[],
            on_text=_ignore_text,
            max_output_tokens=max_output_tokens,
            meter=meter,
        )

    async def stream_message(
        self,
        *,
        system: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        on_text: Callable[[str], Awaitable[None]],
        on_text_done: Callable[[], Awaitable[None]] | None = None,
        on_retry: Callable[[RetryNotice], Awaitable[None]] | None = None,
        max_output_tokens: int | None = None,
        meter: UsageMeter | None = None,
    ) -> AssistantMessage:
        """Stream one assistant message, calling ``on_text(text_so_far)`` as text arrives.

        ``text_so_far`` is this message's cumulative text; it never shrinks across retries.
        ``on_text_done()`` is called when a text block ends (callers that throttle
        ``on_text`` flush then, instead of waiting for the end of the message).
        ``on_retry(notice)`` is called before waiting to retry a failed attempt.
        ``meter`` counts every attempt's usage as it ends, however it ends (the caller
        records what failed attempts cost even when this raises or is cancelled).

        Raises:
            LlmError: a non-retryable error, or retries exhausted.

        Cancellation: closes the HTTP stream (the API stops generating) and re-raises.
        """
        provider = self.provider
        meter = meter if meter is not None else UsageMeter()
        prefix = ""  # text streamed by failed attempts, kept on screen
        resume = True  # continue ``prefix`` (some models refuse it: then from scratch)
        usage = TokenUsage()
        failures = 0
        limit = max_output_tokens or self.settings.max_output_tokens
        while True:
            base = prefix.rstrip() if resume else ""
            request = ModelRequest(system, messages, tools, base, limit)
            attempt = Attempt()
            floor = prefix

            async def show(text: str, base: str = base, floor: str = floor) -> None:
                # Without a continuation a retry restarts the text: keep the longer on screen.
                text = base + text if base else text
                await on_text(text if len(text) >= len(floor) else floor)

            try:
                await provider.stream_once(request, attempt, show, on_text_done)
            except BaseException as exc:
                meter.add(attempt.usage)
                if not isinstance(exc, Exception):
                    raise  # cancelled: what the attempt cost is in the meter
                usage = usage + attempt.usage
                if base and provider.refused_continuation(exc):
                    log.info("the model refused to continue after a retry; asking from scratch")
                    resume = False
                    continue
                failures += 1
                streamed = base + attempt.text()
                if len(streamed) >= len(prefix):
                    prefix = streamed
                delay = await self._after_failure(exc, attempt, failures, on_retry)
                await trio.sleep(delay)
                continue
            meter.add(attempt.usage)
            usage = usage + attempt.usage
            content = attempt.content()
            if base:
                content = merge_prefix(base, content)
            return AssistantMessage(content, attempt.stop_reason, usage)

    async def _after_failure(
        self,
        exc: Exception,
        attempt: Attempt,
        failures: int,
        on_retry: Callable[[RetryNotice], Awaitable[None]] | None,
    ) -> float:
        """Log a failed attempt and announce the retry; the delay before it.

        Raises:
            LlmError: not retryable, or the retries are used up.
        """
        provider = self.provider
        verdict = provider.classify(exc)
        status, request_id, detail = provider.facts(exc, attempt)
        if isinstance(verdict, LlmError):
            log.error(
                "model API call failed [%s]: %s (HTTP %s, request-id %s, %s)",
                provider.name, verdict.message, status, request_id, detail,
            )  # fmt: skip
            raise verdict from exc
        settings = self.settings
        retries = settings.llm_max_retries
        if failures > retries:
            log.error(
                "model API call failed for good after %d attempts [%s]: %s "
                "(HTTP %s, request-id %s, %s)",
                failures, provider.name, verdict.message, status, request_id, detail,
            )  # fmt: skip
            raise LlmError(
                f"llm_{verdict.code}", f"{verdict.message}; gave up after {failures} attempts"
            ) from exc
        delay = min(
            settings.llm_retry_max_s, settings.llm_retry_base_s * 2 ** (failures - 1)
        ) * random.uniform(0.8, 1.2)
        if verdict.retry_after is not None:
            delay = min(settings.llm_retry_max_s, max(delay, verdict.retry_after))
        log.warning(
            "model API call failed [%s]: %s (HTTP %s, request-id %s, %s); "
            "retrying %d/%d in %.1f s",
            provider.name, verdict.message, status, request_id, detail, failures, retries, delay,
        )  # fmt: skip
        if on_retry is not None:
            await on_retry(RetryNotice(failures, retries, delay, verdict.code, status, request_id))
        return float(delay)
