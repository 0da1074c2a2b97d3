"""Streaming one model answer to the session as throttled ``agent_partial`` messages.

``agent_partial`` carries the turn's cumulative text. The throttle sends on the *leading
edge*: a delta that arrives ``partial_interval_s`` or more after the last partial is sent at
once (no timer ever holds a partial back); deltas inside the interval only update the text,
which the next partial, the end of the text block or the end of the answer sends.

While a failed model call waits to be retried the editor's status line (``update_file``)
says so (``Model API busy (overloaded), retrying 2/4 in 4 s``); it is cleared when the
answer streams again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol.messages import MessageType, TextData

from .accounting import record_call
from .compaction import fit_context
from .model_api import RECORD_TIMEOUT_S, UsageMeter
from .state import send_status

if TYPE_CHECKING:
    from .api import SessionHost
    from .llm import LlmClient
    from .model_api import AssistantMessage, RetryNotice
    from .models import ModelSpec
    from .settings import LoopSettings
    from .state import TurnState


class PartialThrottle:
    """Sends a turn's ``agent_partial`` messages at most every ``interval_s`` (leading edge).

    Args:
        host: the session to send to.
        state: the turn (its committed text and the message being streamed).
        interval_s: the minimum spacing of partials.
    """

    def __init__(self, host: SessionHost, state: TurnState, interval_s: float) -> None:
        self._host = host
        self._state = state
        self._interval_s = interval_s
        self._last_sent = -1e9
        self._retrying = False
        self.sent_text = state.visible()

    async def on_retry(self, notice: RetryNotice) -> None:
        """A failed model call waits to be retried: say so on the status line."""
        self._retrying = True
        await send_status(self._host, self._state, notice.text)

    async def resumed(self) -> None:
        """The model answers again: clear the retry status (if one is shown)."""
        if self._retrying:
            self._retrying = False
            await send_status(self._host, self._state, "")

    async def _send(self, text: str) -> None:
        self.sent_text = text
        await self._host.send(
            MessageType.AGENT_PARTIAL, TextData(text), msg_id=self._state.assistant_msg_id
        )

    async def on_text(self, text: str) -> None:
        """The streamed message's text so far: sent now unless a partial went out within
        the interval."""
        self._state.streaming = text
        await self.resumed()
        now = trio.current_time()
        if now - self._last_sent >= self._interval_s:
            self._last_sent = now
            await self._send(self._state.visible(text))

    async def flush(self) -> None:
        """Send the text so far if the last partial did not carry it (end of a text block)."""
        text = self._state.visible(self._state.streaming)
        if text != self.sent_text:
            await self._send(text)


async def stream_answer(
    llm: LlmClient,
    settings: LoopSettings,
    host: SessionHost,
    messages: list[dict[str, Any]],
    state: TurnState,
    system: str,
    tools: list[dict[str, Any]],
    *,
    context_chars: int | None = None,
    meter: UsageMeter | None = None,
) -> AssistantMessage:
    """Stream one model answer for ``messages`` offering ``tools``, sending partials, and
    return it (the caller records its usage and appends it to the conversation). Old tool
    output is cut to fit ``context_chars`` (default: the settings' budget)."""
    throttle = PartialThrottle(host, state, settings.partial_interval_s)
    request = fit_context(messages, context_chars or settings.context_budget_chars)
    answer = await llm.stream_message(
        system=system, messages=request, tools=tools,
        on_text=throttle.on_text, on_text_done=throttle.flush, on_retry=throttle.on_retry,
        meter=meter,
    )  # fmt: skip
    await throttle.resumed()
    state.streaming = ""
    final = state.visible(answer.text.strip())
    if final != throttle.sent_text and answer.text.strip():
        await host.send(MessageType.AGENT_PARTIAL, TextData(final), msg_id=state.assistant_msg_id)
    return answer


async def metered_answer(
    llm: LlmClient,
    spec: ModelSpec,
    settings: LoopSettings,
    host: SessionHost,
    messages: list[dict[str, Any]],
    state: TurnState,
    system: str,
    tools: list[dict[str, Any]],
) -> AssistantMessage:
    """:func:`stream_answer` with ``spec``'s model, recording what the call cost however it
    ends: failed, retried and cancelled attempts cost too."""
    meter = UsageMeter()
    try:
        return await stream_answer(
            llm, settings, host, messages, state, system, tools,
            context_chars=context_chars(spec, settings), meter=meter,
        )  # fmt: skip
    finally:
        if meter.attempts:
            with trio.CancelScope(shield=True), trio.move_on_after(RECORD_TIMEOUT_S):
                await record_call(host, state, spec, meter.usage)


def context_chars(spec: ModelSpec, settings: LoopSettings) -> int:
    """The request size (characters) that fits ``spec``'s context window with room for the
    answer (about 3 characters a token; code and JSON tokenise densely)."""
    if not spec.context_window:
        return settings.context_budget_chars
    room = max(1000, spec.context_window - settings.max_output_tokens) * 3
    return min(settings.context_budget_chars, room)
