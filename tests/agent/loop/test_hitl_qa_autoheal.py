"""HITL pause/resume, QA with self-heal, and runtime-error auto-heal through the engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amicable_protocol.messages import (
    EditedAction,
    HitlDecision,
    HitlResponse,
    HitlResponseData,
    RuntimeErrorData,
    RuntimeErrorInfo,
    UserData,
)
from amicable_testing.fake_anthropic import Reply, Text, ToolUse

from .conftest import error_text


def user(text: str) -> UserData:
    return UserData(session_id="sess-1", text=text)


def decision(kind: str, **kw: Any) -> HitlDecision:
    return HitlDecision(type=kind, **kw)  # type: ignore[arg-type]


def response(interrupt_id: str, *decisions: HitlDecision) -> HitlResponseData:
    return HitlResponseData("sess-1", interrupt_id, HitlResponse(tuple(decisions)))


def last_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"]


async def _pause_on_rm(fake: Any, url: str, make_engine: Any, host: Any, workspace: Path) -> Any:
    (workspace / "victim.txt").write_text("x")
    (workspace / "other.txt").write_text("y")
    fake.add(
        Reply([Text("Removing the file."), ToolUse("ls", {"path": "/"}),
               ToolUse("execute", {"command": "rm victim.txt"})]),
        Reply([Text("Finished.")]),
    )  # fmt: skip
    engine = make_engine(url)
    await engine.run_user_turn(host, user("delete victim"))
    return engine


async def test_hitl_pause_then_approve(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    engine = await _pause_on_rm(fake, url, make_engine, host, workspace)
    types = host.types()
    assert "hitl_request" in types
    assert "update_completed" not in types
    assert types[-2:] == ["agent_final", "trace_event"]
    request = host.of("hitl_request")[0].data
    assert [a.name for a in request.request.action_requests] == ["execute"]
    assert request.request.action_requests[0].args == {"command": "rm victim.txt"}
    assert request.request.review_configs[0].allowed_decisions == ("approve", "edit", "reject")
    assert (workspace / "victim.txt").exists()  # nothing ran yet, not even the ls
    assert host.traces("tool_start") == []
    pending = await engine.hitl_pending(host)
    assert pending.interrupt_id == request.interrupt_id

    # Validation errors use the upstream strings and leave the request pending.
    await engine.resume_hitl(host, response("wrong", decision("approve")))
    await engine.resume_hitl(host, response(request.interrupt_id))
    await engine.resume_hitl(host, response(request.interrupt_id, decision("edit")))
    assert [m.data.error for m in host.of("error")] == [
        "interrupt_id does not match pending request",
        "invalid HITL response: decisions length must match action_requests",
        "invalid HITL response: edit decision needs edited_action",
    ]
    assert await engine.hitl_pending(host) is not None

    host.sent.clear()
    await engine.resume_hitl(host, response(request.interrupt_id, decision("approve")))
    assert not (workspace / "victim.txt").exists()
    assert host.types()[0] != "update_in_progress"
    assert host.types()[-1] == "update_completed"
    assert [t.tool_name for t in host.traces("tool_end")] == ["ls", "execute"]
    assert await engine.hitl_pending(host) is None
    final = host.of("agent_final")[0]
    assert final.data.text == "Removing the file.\n\nFinished."
    await engine.resume_hitl(host, response(request.interrupt_id, decision("approve")))
    assert host.of("error")[-1].data.error == "no pending HITL request for this session"


async def test_hitl_edit_runs_the_edited_action(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    engine = await _pause_on_rm(fake, url, make_engine, host, workspace)
    interrupt_id = host.of("hitl_request")[0].data.interrupt_id
    edited = EditedAction(name="execute", args={"command": "rm other.txt"})
    await engine.resume_hitl(host, response(interrupt_id, decision("edit", edited_action=edited)))
    assert (workspace / "victim.txt").exists()
    assert not (workspace / "other.txt").exists()
    call = fake.view(-1)["messages"][-2]["content"][-1]
    assert call["input"] == {"command": "rm other.txt"}


async def test_hitl_reject_feeds_the_refusal_back(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    engine = await _pause_on_rm(fake, url, make_engine, host, workspace)
    interrupt_id = host.of("hitl_request")[0].data.interrupt_id
    await engine.resume_hitl(
        host, response(interrupt_id, decision("reject", message="keep that file"))
    )
    assert (workspace / "victim.txt").exists()
    results = last_results(fake.view(-1))
    assert results[1] == {"type": "tool_result", "tool_use_id": results[1]["tool_use_id"],
                          "content": error_text(fake, "User rejected this tool call: keep that file"),
                          "is_error": True}  # fmt: skip
    assert host.types()[-1] == "update_completed"


async def test_hitl_pending_survives_an_agent_restart(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    await _pause_on_rm(fake, url, make_engine, host, workspace)
    interrupt_id = host.of("hitl_request")[0].data.interrupt_id
    restarted = make_engine(url)  # a new process: only the store is shared
    pending = await restarted.hitl_pending(host)
    assert pending.interrupt_id == interrupt_id
    await restarted.resume_hitl(host, response(interrupt_id, decision("approve")))
    assert not (workspace / "victim.txt").exists()
    assert host.of("agent_final")[-1].data.text == "Removing the file.\n\nFinished."


async def test_bypass_mode_and_interrupt_on_json(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    (workspace / "victim.txt").write_text("x")
    fake.add(Reply([ToolUse("execute", {"command": "rm victim.txt"})]), Reply([Text("ok")]))
    host.permission_mode = "bypass"
    await make_engine(url).run_user_turn(host, user("delete"))
    assert not (workspace / "victim.txt").exists()
    assert not host.of("hitl_request")
    # A tool listed in DEEPAGENTS_HITL_INTERRUPT_ON_JSON pauses in the other modes.
    host.permission_mode = "accept_edits"
    fake.add(Reply([ToolUse("write_file", {"file_path": "/a.txt", "content": "a"})]))
    engine = make_engine(url, hitl_interrupt_on=frozenset({"write_file"}))
    await engine.run_user_turn(host, user("write"))
    assert host.of("hitl_request")[0].data.request.action_requests[0].name == "write_file"


# --- QA ----------------------------------------------------------------------------------


async def test_qa_failure_self_heals_then_passes(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    fake.add(
        Reply([Text("Writing the page."), ToolUse("write_file", {"file_path": "/page.txt", "content": "v1"})]),
        Reply([Text("Done.")]),
        Reply([Text("Fixing."), ToolUse("write_file", {"file_path": "/fixed.txt", "content": "ok"})]),
        Reply([Text("Fixed.")]),
    )  # fmt: skip
    engine = make_engine(url, qa_enabled=True,
                         qa_commands=("test -f page.txt", "test -f fixed.txt || (echo 'error TS2304: missing fixed.txt' >&2; exit 2)"))  # fmt: skip
    await engine.run_user_turn(host, user("make a page"))
    assert len(fake.requests) == 4
    heal = fake.view(2)["messages"][-1]["content"]
    heal_text = heal if isinstance(heal, str) else heal[-1]["text"]
    assert heal_text.startswith("QA failed on `test -f fixed.txt")
    assert "(exit 2)" in heal_text
    assert "missing fixed.txt" in heal_text
    errors = host.of("error")
    assert [e.data.error for e in errors] == ["qa_failed"]
    assert [(r.command.split()[2], r.exit_code) for r in errors[0].data.qa_results] == [
        ("page.txt", 0), ("fixed.txt", 2)]  # fmt: skip
    checks = host.traces("qa_check")
    assert len(checks) == 4
    assert all(c.duration_ms is not None for c in checks)
    statuses = [m.data.text for m in host.of("update_file")]
    assert statuses == ["Writing /page.txt", "Running QA checks (lint/typecheck/build)...",
                        "QA failed, attempting self-heal...", "Writing /fixed.txt",
                        "Running QA checks (lint/typecheck/build)..."]  # fmt: skip
    assert "QA checks passed" in host.traces("reasoning_summary")[0].text
    assert host.types()[-1] == "update_completed"


async def test_qa_gives_up_after_max_rounds(fake_llm: Any, make_engine: Any, host: Any) -> None:
    fake, url = fake_llm
    fake.responder = lambda body: (
        Reply([ToolUse("write_file", {"file_path": "/a.txt", "content": "x"})])
        if body["messages"][-1]["role"] == "user" and "tool_result" not in json.dumps(body["messages"][-1])
        else Reply([Text("Tried.")])
    )  # fmt: skip
    engine = make_engine(url, qa_enabled=True, qa_commands=("exit 1",), self_heal_max_rounds=1)
    await engine.run_user_turn(host, user("go"))
    assert len(host.of("error")) == 2  # one qa_failed per failing round
    final = host.of("agent_final")[0].data.text
    assert "after 1 self-heal round(s) (max 1)" in final
    assert "QA still failing after self-heal attempts; preparing summary..." in [
        m.data.text for m in host.of("update_file")]  # fmt: skip


async def test_environment_failure_skips_self_heal(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    fake.add(Reply([ToolUse("write_file", {"file_path": "/a.txt", "content": "x"})]),
             Reply([Text("Done.")]))  # fmt: skip
    engine = make_engine(url, qa_enabled=True, qa_commands=("definitely-missing-tool-xyz --check",))
    await engine.run_user_turn(host, user("go"))
    assert len(fake.requests) == 2  # no self-heal round
    assert host.of("error")[0].data.error == "qa_failed"
    assert "environment" in host.of("agent_final")[0].data.text


async def test_qa_uses_package_json_scripts_and_is_skipped_without_changes(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    (workspace / "package.json").write_text(json.dumps({"scripts": {
        "lint": "true", "build": "true", "test": "false", "dev": "vite"}}))  # fmt: skip
    fake, url = fake_llm
    fake.add(Reply([Text("Just answering.")]),
             Reply([ToolUse("write_file", {"file_path": "/a.txt", "content": "x"})]),
             Reply([Text("Done.")]))  # fmt: skip
    engine = make_engine(url, qa_enabled=True)
    await engine.run_user_turn(host, user("question"))
    assert host.runtime.exec_log == []
    await engine.run_user_turn(host, user("change"))
    checks = sorted(c for c in host.runtime.exec_log if c != "nproc")  # nproc: QA slots
    assert checks == ["npm run -s build", "npm run -s lint"]
    assert not host.of("error")


# --- auto-heal ----------------------------------------------------------------------------


def runtime_error(kind: str = "console_error", fingerprint: str | None = "fp1") -> RuntimeErrorData:
    return RuntimeErrorData("sess-1", RuntimeErrorInfo(kind=kind, message="boom is not defined",
                                                       stack="at App.tsx:3", fingerprint=fingerprint))  # fmt: skip


async def test_runtime_error_auto_heal_policy(
    fake_llm: Any, make_engine: Any, host: Any, mock_clock: Any
) -> None:
    # A manual clock: time moves only when the test jumps it (real I/O still works).
    fake, url = fake_llm
    engine = make_engine(url, auto_heal_cooldown_s=30, auto_heal_max_attempts_per_fingerprint=2)
    await engine.run_runtime_error(host, runtime_error())
    assert len(fake.requests) == 1
    prompt = fake.view(0)["messages"][-1]["content"]
    assert "Runtime error detected in the running preview" in prompt
    assert "boom is not defined" in prompt
    assert host.store.chat["proj-1"][0][1].startswith("Auto-fix runtime error (console_error)")
    await engine.run_runtime_error(host, runtime_error())  # within the cooldown: silent
    assert len(fake.requests) == 1
    assert not host.of("error")
    mock_clock.jump(31)
    await engine.run_runtime_error(host, runtime_error())
    assert len(fake.requests) == 2
    mock_clock.jump(31)
    await engine.run_runtime_error(host, runtime_error())  # third time: paused
    assert len(fake.requests) == 2
    error = host.of("error")[-1].data
    assert error.error == "runtime_auto_heal_paused"
    assert error.fingerprint == "fp1"
    await engine.run_runtime_error(host, runtime_error(fingerprint="fp2"))  # another error
    assert len(fake.requests) == 3
    mock_clock.jump(700)  # the dedupe window passed
    await engine.run_runtime_error(host, runtime_error())
    assert len(fake.requests) == 4


async def test_preview_load_failed_includes_the_dev_server_log(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    host.runtime.preview_log_lines = [
        "vite v7 ready",
        "[vite] Internal server error: Unexpected token",
    ]
    await make_engine(url).run_runtime_error(host, runtime_error("preview_load_failed", None))
    prompt = fake.view(0)["messages"][-1]["content"]
    assert "Dev server log (last lines):" in prompt
    assert "Internal server error: Unexpected token" in prompt


async def test_auto_heal_disabled_and_refused_while_hitl_pending(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    await make_engine(url, auto_heal_enabled=False).run_runtime_error(host, runtime_error())
    assert fake.requests == []
    engine = await _pause_on_rm(fake, url, make_engine, host, workspace)
    await engine.run_runtime_error(host, runtime_error())
    assert host.of("error")[-1].data.error.startswith("HITL approval pending")


async def test_user_turn_refused_while_hitl_pending(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    engine = await _pause_on_rm(fake, url, make_engine, host, workspace)
    before = len(fake.requests)
    await engine.run_user_turn(host, user("something else"))
    assert len(fake.requests) == before
    assert host.of("error")[-1].data.error.startswith("HITL approval pending")


async def test_cancel_stops_running_qa(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    import trio

    fake, url = fake_llm
    fake.add(Reply([ToolUse("write_file", {"file_path": "/a.txt", "content": "x"})]),
             Reply([Text("Done.")]))  # fmt: skip
    engine = make_engine(url, qa_enabled=True,
                         qa_commands=("sleep 1000 & echo $! > qa.pid; wait", "true"))  # fmt: skip
    pid_file = workspace / "qa.pid"
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.run_user_turn, host, user("go"))
            with trio.fail_after(20):
                while not pid_file.exists() or not pid_file.read_text().strip():
                    await trio.sleep(0.01)
            scope.cancel()
    child = int(pid_file.read_text())
    with trio.fail_after(10):  # SIGKILL was sent to the group; wait for the kernel
        while _alive(child):
            await trio.sleep(0.01)
    assert host.types()[-1] == "update_completed"
    # One calm stop marker is the editor's (turn_ended): the note is for the model only.
    assert "turn was stopped" not in host.of("agent_final")[0].data.text
    assert "turn was stopped" in str(host.store.conversations["proj-1"][-1]["content"])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
