"""Small tasks for the small model (``AMICABLE_SMALL_MODEL``): the history summary.

When compaction folds older turns away (:func:`.compaction.compact`), a configured small
model writes the summary the system prompt carries from then on; without one, or when it
fails, the heuristic bullet summary is used. A summary never fails a turn.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from .accounting import record_call
from .compaction import SUMMARY_MAX_CHARS, summarise
from .model_api import LlmError

if TYPE_CHECKING:
    from .api import SessionHost
    from .llm import LlmClient
    from .model_api import TokenUsage
    from .selection import ModelClients
    from .state import TurnState

log = logging.getLogger(__name__)

SUMMARY_TIMEOUT_S = 60.0
_SYSTEM = (
    "You summarise the earlier part of a conversation between a user and an AI that builds "
    "a web app. Write at most 25 short bullet points: what the user asked for, decisions "
    "taken, files created or changed, open problems. No preamble."
)


async def model_summary(
    client: LlmClient, folded: list[dict[str, Any]], previous: str
) -> tuple[str, TokenUsage] | None:
    """A summary of ``folded`` (and the ``previous`` summary) by ``client``'s model, with
    its usage; None when the model fails or takes longer than :data:`SUMMARY_TIMEOUT_S`.

    Cancellation: propagates (the turn was cancelled).
    """
    # The heuristic summary is the model's input: bounded, and free of tool output.
    digest = summarise(folded, previous)
    with trio.move_on_after(SUMMARY_TIMEOUT_S):
        try:
            answer = await client.complete(_SYSTEM, digest, max_output_tokens=1024)
        except LlmError as exc:
            log.warning("the small model could not summarise the history: %s", exc.message)
            return None
        text = answer.text.strip()
        return (text[:SUMMARY_MAX_CHARS], answer.usage) if text else None
    log.warning("the small model did not summarise the history in time")
    return None


async def small_summary(
    models: ModelClients,
    host: SessionHost,
    state: TurnState,
    folded: list[dict[str, Any]],
    previous: str,
) -> str | None:
    """The small model's summary of ``folded`` when ``AMICABLE_SMALL_MODEL`` is set (its
    cost counts in the turn); None otherwise or when it fails (the heuristic one is used)."""
    if models.settings.small_model_id is None:
        return None
    spec = models.catalog.small
    result = await model_summary(models.client(spec), folded, previous)
    if result is None:
        return None
    text, usage = result
    await record_call(host, state, spec, usage)
    return text
