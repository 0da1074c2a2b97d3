"""Build a turn's :class:`TurnSummary` from the messages the turn sends.

The session feeds every message it broadcasts during a turn to :meth:`TurnObserver.observe`
(no change to the LLM loop needed): ``agent_final`` gives the answer; ``trace_event``
``qa_check`` events (one per QA command, with ``output.exit_code``) and ``error qa_failed``
give the QA outcome of the *last* QA round (self-heal rounds may fail first and pass later).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amicable_protocol.messages import ErrorData, MessageType, TextData, TraceEvent

from .commits import QaStatus, TurnSummary

if TYPE_CHECKING:
    from amicable_protocol.messages import ServerData


class TurnObserver:
    """Collects what a commit message needs while one turn runs."""

    def __init__(self, user_text: str) -> None:
        self.user_text = user_text
        self.final_text = ""
        self._qa_ran = False
        self._round_failed = False
        self._round_closed = False
        self._qa_detail = ""

    def observe(self, kind: MessageType, data: ServerData) -> None:
        """Look at one outgoing message (cheap; never raises)."""
        if kind is MessageType.AGENT_FINAL and isinstance(data, TextData):
            self.final_text = data.text
        elif (
            kind is MessageType.TRACE_EVENT
            and isinstance(data, TraceEvent)
            and data.phase == "qa_check"
        ):
            self._qa_check(data)
        elif (
            kind is MessageType.ERROR and isinstance(data, ErrorData) and data.error == "qa_failed"
        ):
            self._round_failed = True
            self._round_closed = True
            self._qa_detail = (data.detail or "").split("\n", 1)[0]

    def _qa_check(self, event: TraceEvent) -> None:
        if self._round_closed:  # a self-heal round starts
            self._round_failed = False
            self._round_closed = False
            self._qa_detail = ""
        self._qa_ran = True
        output: Any = event.output
        code = output.get("exit_code") if isinstance(output, dict) else None
        command = event.input.get("command") if isinstance(event.input, dict) else None
        if code not in (0, None):
            self._round_failed = True
            self._qa_detail = f"{command} exited with {code}" if command else f"exit {code}"

    def summary(self, outcome: str = "completed") -> TurnSummary:
        """The turn's summary; ``outcome`` is the session's (``cancelled``/``failed``/…)."""
        qa: QaStatus
        if outcome == "cancelled":
            qa = "cancelled"
        elif outcome == "failed":
            qa = "error"
        elif not self._qa_ran:
            qa = "skipped"
        else:
            qa = "failed" if self._round_failed else "passed"
        detail = self._qa_detail if qa == "failed" else ""
        return TurnSummary(self.user_text, self.final_text, qa, detail)
