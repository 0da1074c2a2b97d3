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
    MessageType,
    TextData,
    TraceEvent,
    Usage,
    UserData,
)

from amicable_agent.errors import RuntimeClientError

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
from .llm import AssistantMessage, LlmClient, LlmError, estimate_cost_usd
from .prompts import (
    load_workspace_instructions,
    request_text,
    system_prompt,
    user_content,
    wrap_user_text,
)
from .safety import needs_approval
from .state import TurnState, reasoning_summary, send_status, send_trace
from .stream import stream_answer
from .tool_calls import qa_round, run_tools

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from amicable_protocol.messages import (
        HitlPending,
        HitlResponseData,
        RuntimeErrorData,
    )

    from .api import SessionHost, TurnEngine
    from .settings import LoopSettings

HITL_PENDING_ERROR = "HITL approval pending. Approve/reject the pending tool call to continue."
CONTINUE_PROMPT = "Your last answer was cut off by the output limit. Continue where you stopped."
CHAT_KEY = "chat_history"
SUMMARY_KEY = "conversation_summary"
CHAT_TAIL = 20
_CLEANUP_TIMEOUT_S = 10.0

Outcome = Literal["done", "paused"]


def create_engine(settings: LoopSettings) -> TurnEngine:
    """The production turn engine for ``settings`` (one per agent process)."""
    return Engine(settings)


class Engine:
    """The LLM loop shared by every session of one agent process.

    Args:
        settings: loop settings.
        llm: the model client (tests may pass one; otherwise created from ``settings``).
    """

    def __init__(self, settings: LoopSettings, *, llm: LlmClient | None = None) -> None:
        self.settings = settings
        self.llm = llm or LlmClient(settings)
        self._limiters: dict[str, AutoHealLimiter] = {}
        self._secrets = tuple(
            dict.fromkeys([*settings.known_secrets, *(s for s in (settings.api_key,) if s)])
        )

    async def aclose(self) -> None:
        """Close the model client's connections."""
        await self.llm.aclose()

    # --- TurnEngine ----------------------------------------------------------------------

    async def run_user_turn(self, host: SessionHost, data: UserData) -> None:
        """One ``user`` turn: ``update_in_progress`` … ``update_completed``.

        Cancellation: the conversation keeps what was done plus a note that the turn was
        stopped; ``agent_final``, ``usage`` and ``update_completed`` are still sent
        (shielded, bounded), then ``Cancelled`` propagates.
        """
        await self._user_turn(host, data, request_text(data))

    async def resume_hitl(self, host: SessionHost, data: HitlResponseData) -> None:
        """Apply the approval decisions and continue the paused turn."""
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
        messages = await host.store.load_conversation(pid)
        decided = {c.tool_use_id: (c, d) for c, d in zip(pending.calls, decisions, strict=True)}
        last = messages[-1] if messages else {}
        if last.get("role") != "assistant":  # conversation changed under us: nothing to run
            await self._send_final(host, state)
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

    async def run_runtime_error(self, host: SessionHost, data: RuntimeErrorData) -> None:
        """Start an auto-heal turn unless cooldown, dedupe cap or settings say no."""
        if not self.settings.auto_heal_enabled:
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
        decision = limiter.decide(fingerprint, now)
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
        log_tail: list[str] | None = None
        if error.kind == "preview_load_failed":
            try:
                with trio.fail_after(10):
                    log_tail = list((await host.runtime.preview_logs(200)).lines)
            except (RuntimeClientError, trio.TooSlowError):
                log_tail = None
        prompt = build_prompt(error, log_tail)
        await self._user_turn(
            host,
            UserData(session_id=data.session_id, text=prompt),
            f"Auto-fix runtime error ({error.kind}): {error.message[:200]}",
        )

    async def hitl_pending(self, host: SessionHost) -> HitlPending | None:
        """The outstanding approval request, if any."""
        value = await host.store.load_state(host.project.project_id, STATE_KEY)
        pending = PendingHitl.from_json(value)
        return pending.public() if pending is not None else None

    async def history(self, host: SessionHost) -> list[HistoryEntry]:
        """The last 20 user-visible ``{role, text}`` entries."""
        value = await host.store.load_state(host.project.project_id, CHAT_KEY)
        entries = []
        for item in value if isinstance(value, list) else []:
            if isinstance(item, dict) and item.get("role") in ("user", "assistant"):
                entries.append(HistoryEntry(role=item["role"], text=str(item.get("text", ""))))
        return entries[-CHAT_TAIL:]

    # --- turn plumbing -------------------------------------------------------------------

    async def _user_turn(self, host: SessionHost, data: UserData, display_text: str) -> None:
        if await self.hitl_pending(host) is not None:  # the session checks too; be safe
            await host.send(MessageType.ERROR, ErrorData(error=HITL_PENDING_ERROR))
            return
        await host.send(MessageType.UPDATE_IN_PROGRESS, Empty())
        messages: list[dict[str, Any]] = []  # filled by body(); cleanup saves it only then
        state = TurnState()

        async def body() -> Outcome:
            messages[:] = await self._prepare(host, data, display_text)
            return await self._loop(host, messages, state)

        await self._drive(host, messages, state, body)

    async def _prepare(
        self, host: SessionHost, data: UserData, display_text: str
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
            messages, summary = compacted
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
        await self._chat(host, "user", display_text)
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
        note = ""
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
            note = (
                "This turn was stopped. What was done so far is kept."
                if _is_cancellation(exc)
                else "This turn failed with an internal error. What was done so far is kept."
            )
            with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_TIMEOUT_S):
                await self._close_round(host, messages, state, note)
                await self._send_final(host, state)
            raise
        if outcome == "paused":
            return
        await self._close_round(host, messages, state, note)
        await self._send_final(host, state)

    async def _close_round(
        self, host: SessionHost, messages: list[dict[str, Any]], state: TurnState, note: str
    ) -> None:
        """Make the conversation consistent after an interrupted turn and save it."""
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
            state.commit(f"_{note}_")
            messages.append({"role": "assistant", "content": [{"type": "text", "text": note}]})
        await host.store.save_conversation(host.project.project_id, messages)

    async def _send_final(self, host: SessionHost, state: TurnState) -> None:
        if state.text:
            await host.send(
                MessageType.AGENT_FINAL, TextData(state.text), msg_id=state.assistant_msg_id
            )
            await self._chat(host, "assistant", state.text)
        await self._trace(host, state, TraceEvent(
            phase="reasoning_summary", tool_name="reasoning_summary",
            text=reasoning_summary(state),
        ))  # fmt: skip
        usage = state.usage
        await host.send(
            MessageType.USAGE,
            Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_input_tokens=usage.cache_read_input_tokens,
                cache_creation_input_tokens=usage.cache_creation_input_tokens,
                cost_usd=estimate_cost_usd(self.settings.model, usage),
                model=self.settings.model,
            ),
        )
        await host.send(MessageType.UPDATE_COMPLETED, Empty())

    async def _chat(self, host: SessionHost, role: str, text: str) -> None:
        pid = host.project.project_id
        await host.store.append_chat(pid, role, text)
        value = await host.store.load_state(pid, CHAT_KEY)
        tail = value if isinstance(value, list) else []
        tail = [*tail, {"role": role, "text": text}][-CHAT_TAIL:]
        await host.store.save_state(pid, CHAT_KEY, tail)

    async def _trace(self, host: SessionHost, state: TurnState | None, event: TraceEvent) -> None:
        await send_trace(host, state, event)

    async def _status(self, host: SessionHost, state: TurnState, text: str) -> None:
        await send_status(host, state, text)

    def _system(self, summary: str, instructions: str, *, with_db: bool = False) -> str:
        # Workspace instructions live in the system prompt (re-read every turn) rather than
        # in each request, so they do not pile up in the stored history.
        parts = [system_prompt(with_db=with_db)]
        if instructions:
            parts.append(f"Workspace instructions (follow them):\n{instructions}")
        if summary:
            parts.append(f"Summary of the earlier conversation:\n{summary}")
        return "\n\n".join(parts)

    def _budget_note(self, state: TurnState) -> str | None:
        s = self.settings
        if state.tool_calls >= s.turn_max_tool_calls:
            return (
                f"I stopped because this turn reached its budget of {s.turn_max_tool_calls} "
                "tool calls. What was done so far is kept; send another message to continue."
            )
        if state.usage.total >= s.turn_max_tokens:
            return (
                f"I stopped because this turn reached its budget of {s.turn_max_tokens} "
                "tokens. What was done so far is kept; send another message to continue."
            )
        return None

    async def _loop(
        self, host: SessionHost, messages: list[dict[str, Any]], state: TurnState
    ) -> Outcome:
        pid = host.project.project_id
        summary = str(await host.store.load_state(pid, SUMMARY_KEY) or "")
        system = self._system(
            summary,
            await load_workspace_instructions(host.runtime),
            with_db=app_db_of(host) is not None,
        )
        while True:
            budget = self._budget_note(state)
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
            gated = [
                PendingCall(b["id"], b["name"], dict(b.get("input") or {}))
                for b in tool_uses
                if needs_approval(b["name"], b.get("input") or {}, host.permission_mode,
                                  self.settings.hitl_interrupt_on, with_db=with_db)
            ]  # fmt: skip
            if gated:
                await self._pause(host, state, gated)
                return "paused"
            await self._run_tools(host, messages, tool_uses, state)

    async def _stream(
        self, host: SessionHost, messages: list[dict[str, Any]], state: TurnState, system: str
    ) -> AssistantMessage:
        return await stream_answer(self.llm, self.settings, host, messages, state, system)

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
                 "delete or change things.",
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
                        secrets=self._secrets, rejected=rejected)  # fmt: skip

    async def _qa_round(
        self, host: SessionHost, messages: list[dict[str, Any]], state: TurnState
    ) -> bool:
        return await qa_round(host, messages, state, settings=self.settings, secrets=self._secrets)


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_cancellation(e) for e in exc.exceptions)
    return False
