"""Human-in-the-loop approval: building ``hitl_request`` and checking ``hitl_response``.

The shape is upstream §1.6 (LangChain-compatible). A pending request is persisted through
``ConversationStore.save_state(project_id, "hitl_pending", ...)`` as :class:`PendingHitl`
JSON, so it survives a page reload and an agent restart.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import attrs
from amicable_protocol import structure, unstructure
from amicable_protocol.messages import (
    ActionRequest,
    HitlDecision,
    HitlPending,
    HitlRequest,
    ReviewConfig,
)

from amicable_agent.errors import AgentError

from .safety import describe_action

if TYPE_CHECKING:
    from amicable_protocol.messages import HitlResponseData

#: ``save_state`` key of the pending request.
STATE_KEY = "hitl_pending"


class HitlValidationError(AgentError):
    """A ``hitl_response`` that cannot be applied; ``str(exc)`` is the upstream error text."""


@attrs.frozen
class PendingCall:
    """One gated tool call: the model's ``tool_use`` id, name and input."""

    tool_use_id: str
    name: str
    args: dict[str, Any]


@attrs.frozen
class PendingHitl:
    """What is persisted while a turn waits for approval.

    Attributes:
        interrupt_id: id the editor echoes in ``hitl_response``.
        request: the ``hitl_request`` payload.
        calls: the gated calls, in ``action_requests`` order.
        turn: the paused turn's counters (see ``turns.TurnState``) as JSON.
    """

    interrupt_id: str
    request: HitlRequest
    calls: tuple[PendingCall, ...]
    turn: dict[str, Any] = attrs.field(factory=dict)

    def public(self) -> HitlPending:
        """The part the editor sees (INIT ``hitl_pending``)."""
        return HitlPending(interrupt_id=self.interrupt_id, request=self.request)

    def to_json(self) -> Any:
        """JSON for ``save_state``."""
        return unstructure(self)

    @classmethod
    def from_json(cls, value: Any) -> PendingHitl | None:
        """Parse a stored value (None or unreadable -> None)."""
        if not isinstance(value, dict):
            return None
        try:
            return structure(value, cls)
        except Exception:
            return None


def build_pending(calls: list[PendingCall], turn: dict[str, Any]) -> PendingHitl:
    """A new pending request for ``calls`` (every decision allowed for each)."""
    request = HitlRequest(
        action_requests=tuple(
            ActionRequest(name=c.name, args=c.args, description=describe_action(c.name, c.args))
            for c in calls
        ),
        review_configs=tuple(ReviewConfig(action_name=c.name) for c in calls),
    )
    return PendingHitl(
        interrupt_id=f"hitl_{uuid.uuid4().hex}", request=request, calls=tuple(calls), turn=turn
    )


def validate_response(
    pending: PendingHitl | None, data: HitlResponseData
) -> tuple[HitlDecision, ...]:
    """The decisions of ``data``, one per gated call, after checking them.

    Raises:
        HitlValidationError: with the upstream error strings.
    """
    if not data.session_id or not data.interrupt_id:
        raise HitlValidationError("missing session_id, interrupt_id, or response")
    if pending is None:
        raise HitlValidationError("no pending HITL request for this session")
    if data.interrupt_id != pending.interrupt_id:
        raise HitlValidationError("interrupt_id does not match pending request")
    decisions = data.response.decisions
    if len(decisions) != len(pending.request.action_requests):
        raise HitlValidationError(
            "invalid HITL response: decisions length must match action_requests"
        )
    for decision, config in zip(decisions, pending.request.review_configs, strict=True):
        if decision.type not in config.allowed_decisions:
            raise HitlValidationError(
                f"invalid HITL response: decision '{decision.type}' not allowed for tool "
                f"'{config.action_name}'"
            )
        if decision.type == "edit" and decision.edited_action is None:
            raise HitlValidationError("invalid HITL response: edit decision needs edited_action")
    return decisions


def rejection_message(decision: HitlDecision, call: PendingCall) -> str:
    """The tool result fed back to the model for a rejected call."""
    if decision.message:
        return f"User rejected this tool call: {decision.message}"
    return f"User rejected the tool call for `{call.name}` with id {call.tool_use_id}"
