"""A turn's usage and cost: recorded after every model call, summed in the ``usage`` message.

Each call becomes a :class:`~amicable_agent.store.spend.UsageRecord` (project, user, turn,
model, tokens, estimated cost) at once, so spend is never lost to a crash or a cancel and the
budgets (:mod:`.spend`) see it before the next call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amicable_protocol.messages import SpendSummary, Usage

from amicable_agent.store.spend import UsageRecord

if TYPE_CHECKING:
    from .api import ConversationStore, SessionHost
    from .model_api import TokenUsage
    from .models import ModelSpec
    from .state import TurnState


async def record_call(
    host: SessionHost, state: TurnState, spec: ModelSpec, usage: TokenUsage
) -> None:
    """Count one model call in the turn (and its budgets) and store it."""
    cost = spec.cost_usd(usage)
    state.add_usage(usage)
    state.cost_usd = round(state.cost_usd + cost, 6)
    if state.guard is not None:
        state.guard.add(usage.total, cost)
    await host.store.record_usage(
        UsageRecord(
            project_id=host.project.project_id,
            user_sub=state.user_sub,
            turn_id=state.assistant_msg_id,
            model_id=spec.id,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_input_tokens,
            cache_write_tokens=usage.cache_creation_input_tokens,
            cost_usd=cost,
        )
    )


async def project_spend(store: ConversationStore, project_id: str) -> SpendSummary:
    """The project's spend since it was created."""
    totals = await store.spend_since(0.0, project_id=project_id)
    return SpendSummary(
        cost_usd=totals.cost_usd,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
    )


async def usage_message(host: SessionHost, state: TurnState, spec: ModelSpec) -> Usage:
    """The ``usage`` message at the end of a turn: this turn's tokens and cost, and the
    project's running total."""
    usage = state.usage
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        cost_usd=state.cost_usd,
        model=spec.model,
        model_id=spec.id,
        project=await project_spend(host.store, host.project.project_id),
    )
