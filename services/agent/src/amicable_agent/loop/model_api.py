"""The provider interface of the LLM loop: what every model API adapter implements and returns.

The loop speaks one conversation format: Anthropic Messages JSON (``text``, ``image``,
``tool_use`` and ``tool_result`` blocks). It is what the store keeps, what compaction,
repair, HITL, QA and the trace read, so none of them knows which provider runs. An adapter
(:mod:`.anthropic_api`, :mod:`.openai_api`) translates a :class:`ModelRequest` to its wire
format, streams one attempt into an :class:`Attempt` (the answer in the same block format),
and tells the retry loop (:mod:`.llm`) which failures are worth another try.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from amicable_agent.errors import AgentError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


class LlmError(AgentError):
    """The model API failed for good (after retries); ``message`` is fit for the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.frozen
class TokenUsage:
    """Token counts of one or more model calls.

    ``input_tokens`` never includes cached tokens: they are counted in
    ``cache_read_input_tokens`` (and ``cache_creation_input_tokens`` for cache writes), on
    every provider.
    """

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
        """Tokens counted against budgets (everything sent and received)."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )


@attrs.define
class UsageMeter:
    """The usage of every attempt of one model call, failed ones included: a dropped stream,
    an error mid-way or a cancel still cost what the provider reported before it ended (the
    input tokens of an Anthropic ``message_start``; Chat Completions servers report usage only
    at the end, so their failed attempts count nothing)."""

    usage: TokenUsage = TokenUsage()
    attempts: int = 0

    def add(self, usage: TokenUsage) -> None:
        """Count one attempt's usage."""
        self.usage = self.usage + usage
        self.attempts += 1


#: Deadline of recording a metered call's usage after the call failed or was cancelled.
RECORD_TIMEOUT_S = 10.0


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
        request_id: the provider's request id of the failed call, if any.
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


class Retryable(AgentError):
    """A failed attempt worth another try (never leaves the loop: the retry loop turns it
    into a :class:`RetryNotice` or, when retries are used up, an :class:`LlmError`)."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


@attrs.frozen
class ModelRequest:
    """One model call, provider-neutral.

    Attributes:
        system: the system prompt.
        messages: the conversation (Anthropic JSON, alternating roles, ending with a user
            message).
        tools: tool definitions (``name``, ``description``, ``input_schema``).
        continue_from: text the previous attempt streamed before it failed; the adapter asks
            the model to continue it (Anthropic: assistant prefill; Chat Completions: the
            partial answer plus a request to continue). Empty for a fresh call.
        max_output_tokens: the answer's token limit.
    """

    system: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    continue_from: str = ""
    max_output_tokens: int = 8192


@attrs.define
class Attempt:
    """What one streamed attempt produced so far (kept when it fails mid-way)."""

    blocks: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    json_parts: dict[int, list[str]] = attrs.field(factory=dict)
    stop_reason: str | None = None
    usage: TokenUsage = TokenUsage()
    status: int | None = None  # of the HTTP response, once it arrived
    request_id: str | None = None
    events: int = 0

    def text(self) -> str:
        """The text blocks so far, joined."""
        blocks = self.blocks
        return "".join(blocks[i]["text"] for i in sorted(blocks) if blocks[i]["type"] == "text")

    def content(self) -> list[dict[str, Any]]:
        """The blocks in order."""
        return [self.blocks[i] for i in sorted(self.blocks)]


class Provider(Protocol):
    """One model API (Anthropic Messages, OpenAI Chat Completions …) for one model."""

    #: ``anthropic`` or ``openai`` (logs and traces).
    name: str

    async def stream_once(
        self,
        request: ModelRequest,
        attempt: Attempt,
        on_text: Callable[[str], Awaitable[None]],
        on_text_done: Callable[[], Awaitable[None]] | None,
    ) -> None:
        """Stream one attempt into ``attempt``, calling ``on_text(text_of_this_attempt)``
        as text arrives and ``on_text_done()`` when a text block ends.

        Raises:
            Exception: anything; :meth:`classify` says whether it is worth a retry.

        Cancellation: closes the HTTP stream (the API stops generating) and re-raises.
        """
        ...

    def classify(self, exc: Exception) -> Retryable | LlmError:
        """What a failed attempt means: retry it, or give up with a message for the user."""
        ...

    def facts(self, exc: Exception, attempt: Attempt) -> tuple[int | None, str | None, str]:
        """HTTP status, request id and a short detail of a failed attempt (nothing secret)."""
        ...

    def refused_continuation(self, exc: Exception) -> bool:
        """The API rejected ``continue_from`` (ask again from scratch)."""
        ...

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        ...


def parse_arguments(raw: str) -> dict[str, Any]:
    """A tool call's JSON arguments as an object.

    Arguments that are not a JSON object (cut by ``max_tokens``, or a model that writes bad
    JSON) become ``{"_unparsed_input": <the start of the text>}``: the tool answers with an
    error the model can act on instead of the turn failing.
    """
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {UNPARSED_KEY: raw[:200]}
    return value if isinstance(value, dict) else {UNPARSED_KEY: raw[:200]}


#: Key of a tool input whose JSON could not be parsed (see :func:`parse_arguments`).
UNPARSED_KEY = "_unparsed_input"


def merge_prefix(prefix: str, content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``content`` of a continued answer with the text of the failed attempts in front."""
    if content and content[0]["type"] == "text":
        return [{"type": "text", "text": prefix + content[0]["text"]}, *content[1:]]
    return [{"type": "text", "text": prefix}, *content]
