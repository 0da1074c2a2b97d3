"""The state of one turn (counters, buffers) and the small senders every part of a turn uses."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import attrs
from amicable_protocol import structure, unstructure
from amicable_protocol.messages import MessageType, TextData, TraceEvent

from .model_api import TokenUsage
from .spend import SpendGuard

if TYPE_CHECKING:
    from .api import SessionHost


@attrs.define
class TurnState:
    """Counters and buffers of one turn (persisted while it waits for approval)."""

    assistant_msg_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    file_msg_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    text: str = ""
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    changed_files: list[str] = attrs.field(factory=list)
    changed_since_qa: bool = False
    commands: int = 0
    qa_rounds: int = 0
    qa_passed: bool | None = None
    qa_looks: int = 0
    #: The model the turn runs on (its id) and who asked for it (None: nobody logged in).
    model_id: str = ""
    user_sub: str | None = None
    cost_usd: float = 0.0
    streaming: str = attrs.field(default="", metadata={"transient": True})
    pending_results: list[dict[str, Any]] = attrs.field(factory=list)
    #: The budgets of this turn (reloaded when a paused turn resumes).
    guard: SpendGuard | None = attrs.field(default=None, metadata={"transient": True})

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(
            self.input_tokens,
            self.output_tokens,
            self.cache_read_input_tokens,
            self.cache_creation_input_tokens,
        )

    def add_usage(self, usage: TokenUsage) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cache_read_input_tokens += usage.cache_read_input_tokens
        self.cache_creation_input_tokens += usage.cache_creation_input_tokens

    def visible(self, current: str = "") -> str:
        """The turn's cumulative text with ``current`` (the message being streamed)."""
        if not current:
            return self.text
        return f"{self.text}\n\n{current}" if self.text else current

    def commit(self, text: str) -> None:
        if text.strip():
            self.text = self.visible(text.strip())

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = unstructure(attrs.evolve(self, guard=None))
        data.pop("streaming", None)
        data.pop("pending_results", None)
        data.pop("guard", None)
        return data

    @classmethod
    def from_json(cls, value: Any) -> TurnState:
        if not isinstance(value, dict):
            return cls()
        try:
            return structure(value, cls)
        except Exception:
            return cls()


async def send_trace(host: SessionHost, state: TurnState | None, event: TraceEvent) -> None:
    """Send a ``trace_event``, tagged with the turn's assistant message id."""
    if state is not None and event.assistant_msg_id is None:
        event = attrs.evolve(event, assistant_msg_id=state.assistant_msg_id)
    await host.send(MessageType.TRACE_EVENT, event)


async def send_status(host: SessionHost, state: TurnState, text: str) -> None:
    """Send an ``update_file`` status line of the turn."""
    await host.send(MessageType.UPDATE_FILE, TextData(text), msg_id=state.file_msg_id)


#: ``tags`` of a ``reasoning_summary`` the platform wrote from what the turn did (not the
#: model's own reasoning; the editor labels it so).
PLATFORM_SUMMARY_TAGS = ("platform",)


def had_model_output(state: TurnState) -> bool:
    """The model answered at least once in this turn (tokens out, text or a tool call)."""
    return bool(state.output_tokens or state.text.strip() or state.tool_calls)


def reasoning_summary(state: TurnState, *, stopped: bool = False) -> str:
    """The heuristic one-sentence ``reasoning_summary`` of a turn (``stopped``: it was
    cut short, so "answered" would be wrong)."""
    parts = []
    if state.changed_files:
        shown = ", ".join(state.changed_files[:5])
        more = f" and {len(state.changed_files) - 5} more" if len(state.changed_files) > 5 else ""
        parts.append(f"updated {shown}{more}")
    if state.commands:
        parts.append(f"ran {state.commands} command(s)")
    if state.qa_passed is True:
        parts.append("QA checks passed")
    elif state.qa_passed is False:
        parts.append("QA checks still fail")
    if not parts:
        if stopped:
            return "The turn was stopped before it changed any files."
        return "I looked into your request and answered without changing files."
    done = "I " + "; ".join(parts) + f" ({state.tool_calls} tool call(s))"
    return f"{done}, then the turn was stopped." if stopped else f"{done}."
