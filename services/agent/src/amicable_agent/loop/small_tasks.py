"""Short answers from the small model (``AMICABLE_SMALL_MODEL``): a project's name from its
first prompt, a checkpoint's commit subject, the answer to a ``web_fetch`` prompt.

Every one of them is optional: without a small model configured, or when it fails, answers
badly or takes too long, the caller keeps its plain fallback (the request text as the subject,
the first words of the prompt as the name, the page's text for the model). A small task never
fails what it serves, and what it costs is recorded like any model call.

:class:`ModelServices` is what the engine lends to model calls outside a turn
(:meth:`~amicable_agent.loop.api.TurnEngine.model_services`): the model clients and these
tasks; :func:`metered_complete` is such a call, counted however it ends.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import attrs
import trio

from amicable_agent.store.spend import UsageRecord

from .compaction import truncate_middle
from .model_api import RECORD_TIMEOUT_S, LlmError, TokenUsage, UsageMeter
from .models import ModelSpec
from .selection import ModelClients

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from .llm import LlmClient
    from .spend import Budgets

log = logging.getLogger(__name__)

#: Deadline of one small task (it runs beside a user who is waiting, or before a commit).
SMALL_TASK_TIMEOUT_S = 20.0
#: Longest commit subject we ask for and accept (git's customary 72, with room).
SUBJECT_MAX_CHARS = 72
#: Longest project name (the store and upstream cap names at 80).
NAME_MAX_CHARS = 80
#: Page text handed to the small model with a ``web_fetch`` prompt.
PAGE_MAX_CHARS = 60_000

_NAME_SYSTEM = (
    "You name projects. Reply with a name of 2 to 4 words for the app the user describes: "
    "no leading article, no quotes, no punctuation at the end, nothing else."
)
_SUBJECT_SYSTEM = (
    "You write git commit subjects. Reply with one line of at most 60 characters in the "
    "imperative mood (e.g. 'Add a dark mode toggle') summarising the requests below: no "
    "quotes, no trailing period, nothing else."
)
_PAGE_SYSTEM = (
    "You read a web page for a developer. Answer the question using only the page text "
    "below; quote code, versions and API names exactly; say so plainly when the page does "
    "not answer it. Be concise (at most about 300 words)."
)
_LEADING = re.compile(
    r"^(?:(?:please|pls|can you|could you|i want|i'd like|i need|let's|lets)\s+)*"
    r"(?:(?:build|create|make|write|generate|design|code|develop)\s+)?(?:me\s+)?"
    r"(?:(?:a|an|the|some)\s+)?",
    re.IGNORECASE,
)
_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
_WORD = re.compile(r"[^\W_][\w'’-]*", re.UNICODE)


@attrs.frozen
class SmallAnswer:
    """The small model's reply and which model gave it (its cost went to the task's sink)."""

    text: str
    spec: ModelSpec


def small_usage_record(
    spec: ModelSpec, usage: TokenUsage, project_id: str, task: str, user_sub: str | None
) -> UsageRecord:
    """What small task ``task`` cost, for the store (``small:<task>`` stands in for the turn)."""
    return usage_record(spec, usage, project_id, f"small:{task}", user_sub)


def usage_record(
    spec: ModelSpec, usage: TokenUsage, project_id: str, turn_id: str, user_sub: str | None
) -> UsageRecord:
    """What a call of ``spec`` that used ``usage`` cost, for the store."""
    return UsageRecord(
        project_id=project_id,
        user_sub=user_sub,
        turn_id=turn_id,
        model_id=spec.id,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_input_tokens,
        cache_write_tokens=usage.cache_creation_input_tokens,
        cost_usd=spec.cost_usd(usage),
    )


async def metered_complete(
    client: LlmClient,
    system: str,
    prompt: str,
    *,
    max_output_tokens: int,
    record: Callable[[TokenUsage], Awaitable[None]],
) -> str:
    """``client``'s answer to ``prompt`` (no tools), passing what the call cost to ``record``
    however it ends - answered, failed after its retries or cancelled - since failed and
    cancelled attempts cost too (as a turn's calls: :func:`.stream.metered_answer`).

    Raises:
        LlmError: the model failed (its attempts are recorded first).

    Cancellation: the attempts so far are recorded (shielded, at most
    :data:`~.model_api.RECORD_TIMEOUT_S`), then the cancellation propagates.
    """
    meter = UsageMeter()
    try:
        answer = await client.complete(
            system, prompt, max_output_tokens=max_output_tokens, meter=meter
        )
    finally:
        if meter.attempts:
            with trio.CancelScope(shield=True), trio.move_on_after(RECORD_TIMEOUT_S):
                await record(meter.usage)
    return answer.text


def name_from_prompt(prompt: str) -> str:
    """A project name from the first words of ``prompt`` (no model): ``"build me a todo app
    with tags"`` -> ``"Todo App With Tags"``; ``"Untitled"`` when no word is left."""
    first = prompt.strip().splitlines()[0] if prompt.strip() else ""
    rest = _LEADING.sub("", first.strip())
    words = _WORD.findall(rest)[:4]
    name = " ".join(w[:1].upper() + w[1:] for w in words)
    return name[:NAME_MAX_CHARS] or "Untitled"


def clean_name(text: str) -> str | None:
    """The model's project name, tidied: one line, no quotes or article, at most 6 words;
    None when nothing usable is left."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = line.strip().strip("\"'`*“”‘’").rstrip(".!:;,").strip()
    line = _ARTICLE.sub("", line)
    words = line.split()
    if not words or len(words) > 6:
        return None
    return " ".join(words)[:NAME_MAX_CHARS]


def clean_subject(text: str) -> str | None:
    """The model's commit subject, tidied to one line of at most :data:`SUBJECT_MAX_CHARS`;
    None when nothing usable is left."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = line.strip().strip("\"'`*“”").rstrip(".").strip()
    if line.lower().startswith(("subject:", "commit:")):
        line = line.split(":", 1)[1].strip()
    if not line:
        return None
    if len(line) > SUBJECT_MAX_CHARS:
        line = line[: SUBJECT_MAX_CHARS - 1].rstrip() + "…"
    return line


class SmallTasks:
    """The small tasks of one agent process (see the module docstring).

    Args:
        models: the model clients; the small one is ``models.catalog.small``.
        timeout_s: deadline of one task.
    """

    def __init__(self, models: ModelClients, *, timeout_s: float = SMALL_TASK_TIMEOUT_S) -> None:
        self._models = models
        self._timeout_s = timeout_s

    @property
    def enabled(self) -> bool:
        """A small model is configured (``AMICABLE_SMALL_MODEL``)."""
        return self._models.settings.small_model_id is not None

    async def ask(
        self,
        system: str,
        prompt: str,
        *,
        on_usage: Callable[[ModelSpec, TokenUsage], Awaitable[None]],
        max_output_tokens: int = 256,
    ) -> SmallAnswer | None:
        """The small model's answer to ``prompt``; None when no small model is configured,
        or it fails or does not answer in time (logged). What every attempt cost goes to
        ``on_usage`` however the task ends (:func:`metered_complete`).

        Cancellation: the attempts so far are recorded, then the cancellation propagates.
        """
        if not self.enabled:
            return None
        spec = self._models.catalog.small
        client = self._models.client(spec)

        async def record(usage: TokenUsage) -> None:
            await on_usage(spec, usage)

        with trio.move_on_after(self._timeout_s):
            try:
                text = await metered_complete(
                    client, system, prompt, max_output_tokens=max_output_tokens, record=record
                )
            except LlmError as exc:
                log.warning("the small model (%s) failed: %s", spec.id, exc.message)
                return None
            return SmallAnswer(text.strip(), spec)
        log.warning("the small model (%s) did not answer within %.0f s", spec.id, self._timeout_s)
        return None

    async def project_name(
        self, prompt: str, *, on_usage: Callable[[ModelSpec, TokenUsage], Awaitable[None]]
    ) -> SmallAnswer | None:
        """A 2-4 word name for the app ``prompt`` describes (``text`` cleaned), or None."""
        answer = await self.ask(
            _NAME_SYSTEM, truncate_middle(prompt, 4_000), on_usage=on_usage, max_output_tokens=32
        )
        if answer is None or (name := clean_name(answer.text)) is None:
            return None
        return attrs.evolve(answer, text=name)

    async def commit_subject(
        self,
        requests: Sequence[str],
        *,
        on_usage: Callable[[ModelSpec, TokenUsage], Awaitable[None]],
    ) -> SmallAnswer | None:
        """One commit subject for the turns asked for by ``requests`` (oldest first), or None."""
        listed = "\n".join(f"- {truncate_middle(r, 1_500)}" for r in requests[-10:])
        answer = await self.ask(
            _SUBJECT_SYSTEM, f"Requests:\n{listed}", on_usage=on_usage, max_output_tokens=48
        )
        if answer is None or (subject := clean_subject(answer.text)) is None:
            return None
        return attrs.evolve(answer, text=subject)

    async def page_answer(
        self,
        question: str,
        page: str,
        *,
        on_usage: Callable[[ModelSpec, TokenUsage], Awaitable[None]],
    ) -> SmallAnswer | None:
        """The answer to ``question`` from the text of a fetched ``page``, or None."""
        prompt = (
            f"Question: {question[:2_000]}\n\nPage text:\n{truncate_middle(page, PAGE_MAX_CHARS)}"
        )
        answer = await self.ask(_PAGE_SYSTEM, prompt, on_usage=on_usage, max_output_tokens=1024)
        if answer is None or not answer.text:
            return None
        return answer


@attrs.frozen
class ModelServices:
    """The engine's models, for model calls outside a turn (the database pane's schema
    intents, checkpoints' commit subjects).

    Attributes:
        models: the model clients and catalog (one client per model and process).
        small: the small model's tasks.
    """

    models: ModelClients
    small: SmallTasks

    @property
    def budgets(self) -> Budgets:
        """The spend budgets the engine's turns keep to (``AMICABLE_BUDGET_*``)."""
        return self.models.settings.budgets
