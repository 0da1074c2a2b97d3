"""How a turn ends: the conversation closed consistently, then ``agent_final``, the
``reasoning_summary`` trace, ``usage`` and ``update_completed``; the user-visible chat log.

Also the per-turn limits (tool calls, tokens) whose note ends a turn early.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amicable_protocol.messages import Empty, HistoryEntry, MessageType, TextData, TraceEvent

from .accounting import usage_message
from .compaction import repair
from .state import PLATFORM_SUMMARY_TAGS, had_model_output, reasoning_summary, send_trace

if TYPE_CHECKING:
    from .api import SessionHost
    from .models import ModelSpec
    from .settings import LoopSettings
    from .state import TurnState

#: Project state key of the last user-visible chat entries (what INIT replays).
CHAT_KEY = "chat_history"
CHAT_TAIL = 20


async def close_round(
    host: SessionHost,
    messages: list[dict[str, Any]],
    state: TurnState,
    note: str,
    *,
    show_note: bool = True,
) -> None:
    """Make the conversation consistent after an interrupted turn and save it.

    ``show_note``: the note also ends the turn's visible text (not for a stop: the editor
    shows its own "Stopped" marker, once)."""
    if state.pending_results:
        messages.append({"role": "user", "content": state.pending_results})
        state.pending_results = []
    if state.streaming.strip():
        state.commit(state.streaming)
        messages.append(
            {"role": "assistant", "content": [{"type": "text", "text": state.streaming}]}
        )
        state.streaming = ""
    if not messages:  # the conversation was never loaded: nothing to save
        return
    messages[:] = repair(messages)  # answers every dangling tool call first
    if note:
        if show_note:
            state.commit(f"_{note}_")
        messages.append({"role": "assistant", "content": [{"type": "text", "text": note}]})
    await host.store.save_conversation(host.project.project_id, messages)


async def send_final(
    host: SessionHost, state: TurnState, spec: ModelSpec, *, stopped: bool = False
) -> None:
    """``agent_final`` (if the turn said anything), ``reasoning_summary`` (the platform's,
    tagged so, and only when the model answered at all), ``usage`` (the turn's and the
    project's spend on ``spec``), ``update_completed``."""
    if state.text:
        await host.send(
            MessageType.AGENT_FINAL, TextData(state.text), msg_id=state.assistant_msg_id
        )
        await append_chat(host, "assistant", state.text)
    if had_model_output(state):
        await send_trace(host, state, TraceEvent(
            phase="reasoning_summary", tool_name="reasoning_summary",
            text=reasoning_summary(state, stopped=stopped), tags=PLATFORM_SUMMARY_TAGS,
        ))  # fmt: skip
    await host.send(MessageType.USAGE, await usage_message(host, state, spec))
    await host.send(MessageType.UPDATE_COMPLETED, Empty())


async def append_chat(host: SessionHost, role: str, text: str) -> None:
    """Log a user-visible chat entry and keep the last :data:`CHAT_TAIL` for INIT."""
    pid = host.project.project_id
    await host.store.append_chat(pid, role, text)
    value = await host.store.load_state(pid, CHAT_KEY)
    tail = value if isinstance(value, list) else []
    tail = [*tail, {"role": role, "text": text}][-CHAT_TAIL:]
    await host.store.save_state(pid, CHAT_KEY, tail)


async def chat_history(host: SessionHost) -> list[HistoryEntry]:
    """The last :data:`CHAT_TAIL` user-visible ``{role, text}`` entries."""
    value = await host.store.load_state(host.project.project_id, CHAT_KEY)
    entries = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and item.get("role") in ("user", "assistant"):
            entries.append(HistoryEntry(role=item["role"], text=str(item.get("text", ""))))
    return entries[-CHAT_TAIL:]


def turn_limit_note(state: TurnState, settings: LoopSettings) -> str | None:
    """Why the turn must stop before its next model call (per-turn tool calls or tokens),
    or None."""
    if state.tool_calls >= settings.turn_max_tool_calls:
        return (
            f"I stopped because this turn reached its budget of {settings.turn_max_tool_calls} "
            "tool calls. What was done so far is kept; send another message to continue."
        )
    if state.usage.total >= settings.turn_max_tokens:
        return (
            f"I stopped because this turn reached its budget of {settings.turn_max_tokens} "
            "tokens. What was done so far is kept; send another message to continue."
        )
    return None
