"""The turn engine: one ``user`` message becomes model calls, tool calls, QA and messages.

Implements :class:`amicable_agent.loop.api.TurnEngine`. The wire order of a turn is
``update_in_progress``; interleaved ``agent_partial`` / ``update_file`` / ``trace_event``;
then ``agent_final``, ``trace_event reasoning_summary``, ``usage``, ``update_completed``.
A turn paused for approval sends ``hitl_request`` and ends without ``update_completed``;
:meth:`Engine.resume_hitl` continues it.

The model conversation is saved after every model answer and tool round, so after an agent
restart the next turn continues it (:func:`compaction.repair` closes a round that was cut).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import trio
from amicable_protocol.messages import (
    Empty,
    ErrorData,
    HistoryEntry,
    HitlRequestData,
    ImageBlock,
    MessageType,
    TextData,
    TraceEvent,
    UserData,
)

from amicable_agent.errors import RuntimeClientError

from .accounting import project_spend
from .api import app_db_of
from .autoheal import AutoHealLimiter, build_prompt, fingerprint_of, paused_detail
from .compaction import append_user, compact, repair
from .hitl import (
    STATE_KEY,
    HitlValidationError,
    PendingCall,
    PendingHitl,
    build_pending,
    rejection_message,
    validate_response,
)
from .model_api import AssistantMessage, LlmError
from .prompts import (
    load_workspace_instructions,
    request_text,
    stack_prompt,
    system_prompt,
    user_content,
    wrap_user_text,
)
from .protected import protected_paths, refused_call
from .safety import needs_approval
from .selection import ModelClients, UnknownModel
from .small_tasks import ModelServices, SmallTasks
from .spend import SpendGuard
from .state import PLATFORM_SUMMARY_TAGS, TurnState, send_trace
from .stream import metered_answer
from .summaries import small_summary
from .tool_calls import qa_round, run_tools
from .toolbox import Toolbox
from .turn_end import append_chat, chat_history, close_round, send_final, turn_limit_note
from .visual import autoheal_screenshot

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from amicable_protocol.messages import (
        HitlPending,
        HitlResponseData,
        ModelChoice,
        RuntimeErrorData,
        SpendSummary,
    )

    from .api import SessionHost, TurnEngine
    from .llm import LlmClient
    from .models import ModelSpec
    from .settings import LoopSettings

HITL_PENDING_ERROR = "HITL approval pending. Approve/reject the pending tool call to continue."
CONTINUE_PROMPT = "Your last answer was cut off by the output limit. Continue where you stopped."
SUMMARY_KEY = "conversation_summary"
_CLEANUP_TIMEOUT_S = 10.0

Outcome = Literal["done", "paused"]


def create_engine(settings: LoopSettings) -> TurnEngine:
    """The production turn engine for ``settings`` (one per agent process)."""
    return Engine(settings)


class Engine:
    """The LLM loop shared by every session of one agent process.

    Args:
        settings: loop settings.
        llm: the default model's client (tests may pass one; otherwise opened from
            ``settings``, like the clients of the other models, on first use).
        toolbox: the tools offered beyond the workspace's (tests may pass one; otherwise
            created from ``settings``).
    """

    def __init__(
        self,
        settings: LoopSettings,
        *,
        llm: LlmClient | None = None,
        toolbox: Toolbox | None = None,
    ) -> None:
        self.settings = settings
        self.models = ModelClients(settings, default_client=llm)
        self.small = SmallTasks(self.models)
        self._services = ModelServices(self.models, self.small)
        self.toolbox = toolbox or Toolbox(settings, small=self.small)
        self._limiters: dict[str, AutoHealLimiter] = {}
        self._secrets = tuple(
            dict.fromkeys([*self.models.catalog.secrets(), *settings.known_secrets])
        )

    async def aclose(self) -> None:
        """Close the model clients' connections."""
        await self.models.aclose()

    # --- TurnEngine ----------------------------------------------------------------------

    async def run_user_turn(
        self, host: SessionHost, data: UserData, *, by: str | None = None
    ) -> None:
        """One ``user`` turn: ``update_in_progress`` … ``update_completed`` (or only an
        ``error`` when a spend budget is used up before it starts).

        Cancellation: the conversation keeps what was done plus a note that the turn was
        stopped; ``agent_final``, ``usage`` and ``update_completed`` are still sent
        (shielded, bounded), then ``Cancelled`` propagates.
        """
        await self._user_turn(host, data, request_text(data), by=by, requested=data.model)

    def model_services(self) -> ModelServices:
        """The model clients, budgets and small tasks, for calls outside a turn."""
        return self._services

    def model_choices(self) -> tuple[ModelChoice, ...]:
        """The models on offer, the deployment default first."""
        return self.models.catalog.choices()

    async def project_model(self, host: SessionHost, requested: str | None = None) -> str:
        """The project's model id, after storing ``requested`` when it is on offer."""
        pid = host.project.project_id
        try:
            spec = await self.models.choose(host.store, pid, requested)
        except UnknownModel:
            spec = await self.models.project_model(host.store, pid)
        return spec.id

    async def project_spend(self, host: SessionHost) -> SpendSummary:
        """The project's tokens and cost so far."""
        return await project_spend(host.store, host.project.project_id)

    async def resume_hitl(
        self, host: SessionHost, data: HitlResponseData, *, by: str | None = None
    ) -> None:
        """Apply the approval decisions and continue the paused turn (on its model; its
        spend counts for the user who started it)."""
        pid = host.project.project_id
        pending = PendingHitl.from_json(await host.store.load_state(pid, STATE_KEY))
        try:
            decisions = validate_response(pending, data)
        except HitlValidationError as exc:
            await host.send(MessageType.ERROR, ErrorData(error=str(exc)))
            return
        assert pending is not None
        await host.store.save_state(pid, STATE_KEY, None)
        state = TurnState.from_json(pending.turn)
        if state.user_sub is None:
            state.user_sub = by
        state.guard = await SpendGuard.load(
            host.store, self.settings.budgets, project_id=pid, user_sub=state.user_sub
        )
        messages = await host.store.load_conversation(pid)
        decided = {c.tool_use_id: (c, d) for c, d in zip(pending.calls, decisions, strict=True)}
        last = messages[-1] if messages else {}
        if last.get("role") != "assistant":  # conversation changed under us: nothing to run
            await send_final(host, state, self.models.catalog.resolve(state.model_id))
            return

        async def body() -> Outcome:
            tool_uses = [b for b in last["content"] if b.get("type") == "tool_use"]
            for block in tool_uses:
                entry = decided.get(block["id"])
                if entry and entry[1].type == "edit" and entry[1].edited_action is not None:
                    block["name"] = entry[1].edited_action.name
                    block["input"] = dict(entry[1].edited_action.args)
            rejected = {
                tid: rejection_message(d, c)
                for tid, (c, d) in decided.items()
                if d.type == "reject"
            }
            await self._run_tools(host, messages, tool_uses, state, rejected=rejected)
            return await self._loop(host, messages, state)

        await self._drive(host, messages, state, body)

    async def run_runtime_error(
        self, host: SessionHost, data: RuntimeErrorData, *, by: str | None = None
    ) -> None:
        """Start an auto-heal turn unless cooldown, dedupe cap or settings say no (a
        ``requested`` one — "Fix it" — always runs)."""
        requested = bool(data.requested)
        if not (self.settings.auto_heal_enabled or requested):
            return
        if await self.hitl_pending(host) is not None:
            await host.send(MessageType.ERROR, ErrorData(error=HITL_PENDING_ERROR))
            return
        error = data.error
        fingerprint = fingerprint_of(error)
        limiter = self._limiters.setdefault(
            host.session_id, AutoHealLimiter.from_settings(self.settings)
        )
        now = trio.current_time()
        decision = "run" if requested else limiter.decide(fingerprint, now)
        if decision == "paused":
            await host.send(
                MessageType.ERROR,
                ErrorData(
                    error="runtime_auto_heal_paused",
                    detail=paused_detail(fingerprint, self.settings),
                    fingerprint=fingerprint,
                ),
            )
            return
        if decision == "cooldown":
            return
        limiter.record(fingerprint, now)
        prompt, images = await _autoheal_request(host, self.settings, data)
        await self._user_turn(
            host,
            UserData(session_id=data.session_id, text=prompt, content_blocks=images),
            f"Auto-fix runtime error ({error.kind}): {error.message[:200]}",
            by=by,
        )

    async def hitl_pending(self, host: SessionHost) -> HitlPending | None:
        """The outstanding approval request, if any."""
        value = await host.store.load_state(host.project.project_id, STATE_KEY)
        pending = PendingHitl.from_json(value)
        return pending.public() if pending is not None else None

    async def history(self, host: SessionHost) -> list[HistoryEntry]:
        """The last 20 user-visible ``{role, text}`` entries."""
        return await chat_history(host)

    # --- turn plumbing -------------------------------------------------------------------

    async def _user_turn(
        self,
        host: SessionHost,
        data: UserData,
        display_text: str,
        *,
        by: str | None = None,
        requested: str | None = None,
    ) -> None:
        if await self.hitl_pending(host) is not None:  # the session checks too; be safe
            await host.send(MessageType.ERROR, ErrorData(error=HITL_PENDING_ERROR))
            return
        spec = await self._turn_model(host, requested)
        state = TurnState(model_id=spec.id, user_sub=by)
        pid = host.project.project_id
        state.guard = await SpendGuard.load(
            host.store, self.settings.budgets, project_id=pid, user_sub=by
        )
        refused = state.guard.exceeded()
        if refused is not None:  # nothing starts: the editor shows why
            await host.send(MessageType.ERROR, ErrorData(error="budget_exceeded", detail=refused))
            return
        await host.send(MessageType.UPDATE_IN_PROGRESS, Empty())
        messages: list[dict[str, Any]] = []  # filled by body(); cleanup saves it only then

        async def body() -> Outcome:
            messages[:] = await self._prepare(host, data, display_text, state)
            return await self._loop(host, messages, state)

        await self._drive(host, messages, state, body)

    async def _turn_model(self, host: SessionHost, requested: str | None) -> ModelSpec:
        """The turn's model: ``requested`` (then stored as the project's), else the
        project's; an unknown request is answered with an error and ignored."""
        pid = host.project.project_id
        try:
            return await self.models.choose(host.store, pid, requested)
        except UnknownModel:
            spec = await self.models.project_model(host.store, pid)
            await host.send(MessageType.ERROR, ErrorData(
                error="unknown_model",
                detail=f"The model {requested!r} is not offered here; using {spec.id}.",
            ))  # fmt: skip
            return spec

    async def _prepare(
        self, host: SessionHost, data: UserData, display_text: str, state: TurnState
    ) -> list[dict[str, Any]]:
        """Load (repair, compact) the conversation and append the wrapped request."""
        pid = host.project.project_id
        messages = repair(await host.store.load_conversation(pid))
        summary = await host.store.load_state(pid, SUMMARY_KEY) or ""
        compacted = compact(
            messages,
            str(summary),
            trigger=self.settings.compaction_trigger_messages,
            keep=self.settings.compaction_keep_messages,
        )
        if compacted is not None:
            before = len(messages)
            kept, folded_summary = compacted
            folded = messages[: before - len(kept)]
            summary = (
                await small_summary(self.models, host, state, folded, str(summary))
                or folded_summary
            )
            messages = kept
            await host.store.save_state(pid, SUMMARY_KEY, summary)
            await self._trace(host, None, TraceEvent(
                phase="pre_compact", tool_name="compaction",
                output={"history_before": before, "history_after": len(messages),
                        "summary_chars": len(summary),
                        "threshold": self.settings.compaction_trigger_messages},
            ))  # fmt: skip
        wrapped = wrap_user_text(
            request_text(data), thinking_level=host.thinking_level, ui_context=data.ui_context
        )
        append_user(messages, user_content(data, wrapped))
        await host.store.save_conversation(pid, messages)
        await append_chat(host, "user", display_text)
        return messages

    async def _drive(
        self,
        host: SessionHost,
        messages: list[dict[str, Any]],
        state: TurnState,
        body: Callable[[], Awaitable[Outcome]],
    ) -> None:
        """Run ``body`` under the turn deadline and finish the turn however it ends.

        Cancellation: the conversation is closed consistently and ``agent_final`` …
        ``update_completed`` are sent in a shielded, bounded cleanup; then it re-raises.
        """
        note, show_note = "", True  # a model error has its own error bubble: not twice
        try:
            outcome: Outcome = "done"
            with trio.move_on_after(self.settings.turn_timeout_s) as deadline:
                try:
                    outcome = await body()
                except LlmError as exc:
                    await host.send(
                        MessageType.ERROR, ErrorData(error=exc.code, detail=exc.message)
                    )
                    note = f"The model API failed ({exc.message}). What was done so far is kept."
                    show_note = False
                except RuntimeClientError as exc:
                    await host.send(
                        MessageType.ERROR, ErrorData(error="sandbox_error", detail=str(exc))
                    )
                    note = "The sandbox stopped answering. What was done so far is kept."
            if deadline.cancelled_caught:
                note = (
                    f"I stopped because this turn reached its time limit "
                    f"({int(self.settings.turn_timeout_s)} s). What was done so far is kept; "
                    "send another message to continue."
                )
        except BaseException as exc:  # only to finish the turn; always re-raised
            stopped = _is_cancellation(exc)
            note = STOPPED_NOTE if stopped else FAILED_NOTE
            spec = self.models.catalog.resolve(state.model_id)
            with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_TIMEOUT_S):
                await close_round(host, messages, state, note, show_note=not stopped)
                await send_final(host, state, spec, stopped=stopped)
            raise
        if outcome == "paused":
            return
        await close_round(host, messages, state, note, show_note=show_note)
        await send_final(host, state, self.models.catalog.resolve(state.model_id))

    async def _trace(self, host: SessionHost, state: TurnState | None, event: TraceEvent) -> None:
        await send_trace(host, state, event)

    def _system(self, summary: str, instructions: str, *, with_db: bool, template: str) -> str:
        # Workspace instructions live in the system prompt (re-read every turn) rather than
        # in each request, so they do not pile up in the stored history.
        parts = [system_prompt(with_db=with_db), stack_prompt(template, instructions)]
        if instructions:
            parts.append(f"Workspace instructions (follow them):\n{instructions}")
        if summary:
            parts.append(f"Summary of the earlier conversation:\n{summary}")
        return "\n\n".join(p for p in parts if p)

    async def _loop(
        self, host: SessionHost, messages: list[dict[str, Any]], state: TurnState
    ) -> Outcome:
        pid = host.project.project_id
        summary = str(await host.store.load_state(pid, SUMMARY_KEY) or "")
        system = self._system(
            summary,
            await load_workspace_instructions(host.runtime),
            with_db=app_db_of(host) is not None,
            template=host.project.template_id,
        )
        if extra := self.toolbox.prompt(host):
            system = f"{system}\n\n{extra}"
        while True:
            budget = turn_limit_note(state, self.settings)
            spent = state.guard.exceeded() if state.guard is not None else None
            if budget is None and spent is not None:
                await host.send(MessageType.ERROR, ErrorData(error="budget_exceeded", detail=spent))
                budget = f"I stopped because a spend budget is reached. {spent}"
            if budget is not None:
                state.commit(f"_{budget}_")
                messages.append(
                    {"role": "assistant", "content": [{"type": "text", "text": budget}]}
                )
                await host.store.save_conversation(pid, messages)
                return "done"
            answer = await self._stream(host, messages, state, system)
            content = answer.content or [{"type": "text", "text": "(no reply)"}]
            messages.append({"role": "assistant", "content": content})
            state.commit(answer.text)
            await host.store.save_conversation(pid, messages)
            tool_uses = answer.tool_uses
            if not tool_uses and answer.stop_reason == "max_tokens":
                messages.append({"role": "user", "content": CONTINUE_PROMPT})
                continue  # cut off mid-answer: let it finish (the budget still applies)
            if not tool_uses:
                if await self._qa_round(host, messages, state):
                    continue
                return "done"
            with_db = app_db_of(host) is not None
            protected = protected_paths(host.project.template_id)
            gated = [
                PendingCall(b["id"], b["name"], dict(b.get("input") or {}))
                for b in tool_uses
                if needs_approval(b["name"], b.get("input") or {}, host.permission_mode,
                                  self.settings.hitl_interrupt_on, with_db=with_db)
                and not refused_call(b["name"], b.get("input") or {}, protected)
            ]  # fmt: skip
            if gated:
                await self._pause(host, state, gated)
                return "paused"
            await self._run_tools(host, messages, tool_uses, state)

    async def _stream(
        self, host: SessionHost, messages: list[dict[str, Any]], state: TurnState, system: str
    ) -> AssistantMessage:
        spec = self.models.catalog.resolve(state.model_id)
        return await metered_answer(self.models.client(spec), spec, self.settings, host,
                                    messages, state, system, self.toolbox.definitions(host))  # fmt: skip

    async def _pause(self, host: SessionHost, state: TurnState, gated: list[PendingCall]) -> None:
        pending = build_pending(gated, state.to_json())
        await host.store.save_state(host.project.project_id, STATE_KEY, pending.to_json())
        await host.send(
            MessageType.HITL_REQUEST,
            HitlRequestData(interrupt_id=pending.interrupt_id, request=pending.request),
        )
        await host.send(
            MessageType.AGENT_FINAL,
            TextData(state.text or "Awaiting approval..."),
            msg_id=state.assistant_msg_id,
        )
        await self._trace(host, state, TraceEvent(
            phase="reasoning_summary", tool_name="reasoning_summary",
            text="I paused to ask for your approval before running a tool call that can "
                 "delete or change things.", tags=PLATFORM_SUMMARY_TAGS,
        ))  # fmt: skip

    async def _run_tools(
        self,
        host: SessionHost,
        messages: list[dict[str, Any]],
        tool_uses: list[dict[str, Any]],
        state: TurnState,
        *,
        rejected: dict[str, str] | None = None,
    ) -> None:
        await run_tools(host, messages, tool_uses, state, settings=self.settings,
                        secrets=self._secrets, toolbox=self.toolbox, rejected=rejected)  # fmt: skip

    async def _qa_round(
        self, host: SessionHost, messages: list[dict[str, Any]], state: TurnState
    ) -> bool:
        return await qa_round(host, messages, state, settings=self.settings, secrets=self._secrets)


#: What the model reads after a stopped or crashed turn (the editor shows its own marker).
STOPPED_NOTE = "This turn was stopped. What was done so far is kept."
FAILED_NOTE = "This turn failed with an internal error. What was done so far is kept."


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_cancellation(e) for e in exc.exceptions)
    return False


async def _autoheal_request(
    host: SessionHost, settings: LoopSettings, data: RuntimeErrorData
) -> tuple[str, tuple[ImageBlock, ...] | None]:
    """The auto-heal prompt (with the dev server's log for a page that did not load) and a
    screenshot of the page when one can be taken."""
    error = data.error
    log_tail: list[str] | None = None
    if error.kind == "preview_load_failed":
        try:
            with trio.fail_after(10):
                log_tail = list((await host.runtime.preview_logs(200)).lines)
        except (RuntimeClientError, trio.TooSlowError):
            log_tail = None
    prompt = build_prompt(error, log_tail)
    shot = await autoheal_screenshot(host, settings, error.url)
    if shot is None:
        return prompt, None
    # The text line right before the image marks it as a screenshot.
    return f"{prompt}\n\n{shot[0]}", (ImageBlock(shot[1], "image/jpeg"),)
