"""Running a model answer's tool calls, and the QA round with self-heal after a turn's edits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol.messages import ErrorData, MessageType, QaResult, TraceEvent

from . import qa as qa_mod
from .accounting import record_call
from .compaction import repair
from .redact import redact_payload, redact_secrets
from .state import TurnState, send_status, send_trace
from .tools import status_line
from .visual import qa_look, shed_old_screenshots

if TYPE_CHECKING:
    from .api import SessionHost
    from .settings import LoopSettings
    from .toolbox import Toolbox


async def run_tools(
    host: SessionHost,
    messages: list[dict[str, Any]],
    tool_uses: list[dict[str, Any]],
    state: TurnState,
    *,
    settings: LoopSettings,
    secrets: tuple[str, ...],
    toolbox: Toolbox,
    rejected: dict[str, str] | None = None,
) -> None:
    """Run the calls of one assistant message in order and append their results."""
    state.pending_results = []
    rejected = rejected or {}
    for block in tool_uses:
        tid, name = block["id"], block["name"]
        args = dict(block.get("input") or {})
        if tid in rejected:
            result = {"type": "tool_result", "tool_use_id": tid,
                      "content": rejected[tid], "is_error": True}  # fmt: skip
            state.pending_results.append(result)
            continue
        problem = toolbox.problem(host, name, args)
        if problem is not None:  # a malformed call: the model hears why, nothing runs
            await send_trace(host, state, TraceEvent(
                phase="tool_error", tool_name=name or "(none)", run_id=tid,
                input=redact_payload(args, secrets=secrets), error=problem))  # fmt: skip
            state.pending_results.append(
                {"type": "tool_result", "tool_use_id": tid, "content": problem, "is_error": True}
            )
            continue
        if state.tool_calls >= settings.turn_max_tool_calls:
            state.pending_results.append({
                "type": "tool_result", "tool_use_id": tid, "is_error": True,
                "content": "Not run: this turn's tool-call budget is used up.",
            })  # fmt: skip
            continue
        state.tool_calls += 1
        safe_input = redact_payload(args, secrets=secrets)
        await send_trace(host, state, TraceEvent(
            phase="tool_start", tool_name=name, input=safe_input, run_id=tid))  # fmt: skip
        line = status_line(name, args)
        if line:
            await send_status(host, state, line)
        started = trio.current_time()
        outcome = await toolbox.run(
            host, name, args, redact=lambda text: redact_secrets(text, secrets=secrets),
            on_usage=lambda spec, usage: record_call(host, state, spec, usage),
        )  # fmt: skip
        if name == "execute":
            state.commands += 1
        if outcome.changed_path:
            state.changed_since_qa = True
            if outcome.changed_path not in state.changed_files:
                state.changed_files.append(outcome.changed_path)
        await send_trace(host, state, TraceEvent(
            phase="tool_error" if outcome.is_error else "tool_end", tool_name=name,
            input=safe_input, run_id=tid,
            output=redact_payload(outcome.content, secrets=secrets),
            error=redact_payload(outcome.content, secrets=secrets, limit=500)
            if outcome.is_error else None,
            duration_ms=int((trio.current_time() - started) * 1000),
        ))  # fmt: skip
        state.pending_results.append({
            "type": "tool_result", "tool_use_id": tid, "content": outcome.result_content(),
            "is_error": outcome.is_error,
        })  # fmt: skip
    messages.append({"role": "user", "content": state.pending_results})
    state.pending_results = []
    shed_old_screenshots(messages)
    await host.store.save_conversation(host.project.project_id, messages)


# --- QA ------------------------------------------------------------------------------


async def qa_round(
    host: SessionHost,
    messages: list[dict[str, Any]],
    state: TurnState,
    *,
    settings: LoopSettings,
    secrets: tuple[str, ...],
) -> bool:
    """Run QA if files changed; True when the model gets another (self-heal) round."""
    if not (settings.qa_enabled and state.changed_since_qa):
        return False
    state.changed_since_qa = False
    await send_status(host, state, "Running QA checks (lint/typecheck/build)...")

    async def on_check(check: qa_mod.QaCheck) -> None:
        await send_trace(host, state, TraceEvent(
            phase="qa_check", tool_name="qa", input={"command": check.command},
            output={"exit_code": check.exit_code, "truncated": check.truncated,
                    "output": redact_payload(check.output[-2000:], secrets=secrets)},
            duration_ms=check.duration_ms,
        ))  # fmt: skip

    outcome = await qa_mod.run_qa(
        host.runtime, settings, on_check=on_check, template_id=host.project.template_id
    )
    state.qa_passed = outcome.passed
    failed = outcome.first_failure
    if failed is None:
        if await qa_look(host, messages, state, settings):
            await host.store.save_conversation(host.project.project_id, messages)
            return True
        return False
    await host.send(MessageType.ERROR, ErrorData(
        error="qa_failed", detail=redact_secrets(qa_mod.failure_detail(failed), secrets=secrets),
        qa_results=tuple(QaResult(c.command, c.exit_code, c.truncated, c.duration_ms)
                         for c in outcome.checks),
    ))  # fmt: skip
    pid = host.project.project_id
    if outcome.failure_kind == "environment":
        note = (
            f"QA failed due to a sandbox environment/setup issue on `{failed.command}` "
            "(a required tool is missing), so I did not try to fix it by editing code."
        )
    elif state.qa_rounds < settings.self_heal_max_rounds:
        state.qa_rounds += 1
        await send_status(host, state, "QA failed, attempting self-heal...")
        heal = redact_secrets(qa_mod.self_heal_message(failed), secrets=secrets)
        messages.append({"role": "user", "content": heal})
        await host.store.save_conversation(pid, messages)
        return True
    else:
        await send_status(
            host, state, "QA still failing after self-heal attempts; preparing summary..."
        )
        note = (
            f"I couldn't get the project into a passing state after {state.qa_rounds} "
            f"self-heal round(s) (max {settings.self_heal_max_rounds}); "
            f"`{failed.command}` still fails (exit {failed.exit_code})."
        )
    state.commit(note)
    messages.append({"role": "assistant", "content": [{"type": "text", "text": note}]})
    messages[:] = repair(messages)
    await host.store.save_conversation(pid, messages)
    return False
