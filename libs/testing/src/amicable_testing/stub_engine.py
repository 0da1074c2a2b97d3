"""A turn engine that does nothing: the base of the session tests' recording engines.

It implements every method of :class:`amicable_agent.loop.api.TurnEngine` with the answer of
a loop that has no history, no pending approval and no model choice; a test overrides what it
looks at. Turn methods take ``by`` (the caller's ``sub``) as the real engine does.
"""

from __future__ import annotations

from typing import Any

import trio
from amicable_protocol.messages import HistoryEntry, HitlPending, ModelChoice, SpendSummary

__all__ = ["StubEngine"]


class StubEngine:
    """A :class:`~amicable_agent.loop.api.TurnEngine` whose every method is a no-op."""

    async def run_user_turn(self, host: Any, data: Any, *, by: str | None = None) -> None:
        """Do nothing."""
        await trio.lowlevel.checkpoint()

    async def resume_hitl(self, host: Any, data: Any, *, by: str | None = None) -> None:
        """Do nothing."""
        await trio.lowlevel.checkpoint()

    async def run_runtime_error(self, host: Any, data: Any, *, by: str | None = None) -> None:
        """Do nothing."""
        await trio.lowlevel.checkpoint()

    async def hitl_pending(self, host: Any) -> HitlPending | None:
        """No approval is pending."""
        await trio.lowlevel.checkpoint()
        return None

    async def history(self, host: Any) -> list[HistoryEntry]:
        """No history."""
        await trio.lowlevel.checkpoint()
        return []

    def model_services(self) -> None:
        """No models (schema intents answer 503, checkpoints keep plain subjects)."""
        return None

    def model_choices(self) -> tuple[ModelChoice, ...]:
        """No model choice (INIT carries no ``models``)."""
        return ()

    async def project_model(self, host: Any, requested: str | None = None) -> str:
        """The requested model, or none."""
        await trio.lowlevel.checkpoint()
        return requested or ""

    async def project_spend(self, host: Any) -> SpendSummary:
        """Nothing spent."""
        await trio.lowlevel.checkpoint()
        return SpendSummary()
