"""The session-facing helpers: message callbacks and best-effort project hooks."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from amicable_agent.gitsync import GitSync, TurnObserver, best_effort, message_callbacks
from amicable_agent.gitsync.errors import GitLabApiError
from amicable_protocol.messages import ErrorData, MessageType, TextData, TraceEvent
from amicable_testing.fake_gitlab import FakeGitLab

from .conftest import make_project


async def test_message_callbacks_send_update_file_and_error() -> None:
    sent: list[tuple[MessageType, Any]] = []

    async def send(kind: MessageType, data: Any) -> None:
        sent.append((kind, data))

    on_progress, on_error = message_callbacks(send)
    await on_progress("Committing changes to GitLab...")
    await on_error("git_sync_failed: GitLab refused access (HTTP 403)")
    assert sent == [
        (MessageType.UPDATE_FILE, TextData("Committing changes to GitLab...")),
        (MessageType.ERROR, ErrorData(error="git_sync_failed: GitLab refused access (HTTP 403)")),
    ]


async def test_best_effort_hooks_report_success_and_swallow_failures(
    git_sync: GitSync, gitlab: FakeGitLab, caplog: pytest.LogCaptureFixture
) -> None:
    project = make_project()
    assert await best_effort("create", git_sync.project_created, project) is True
    assert gitlab.by_path("amicable/demo-app") is not None

    async def broken(_: Any) -> None:
        await trio.lowlevel.checkpoint()
        raise GitLabApiError(500, "boom")

    with caplog.at_level(logging.WARNING):
        assert await best_effort("rename", broken, project) is False
    assert "GitLab rename failed: GitLab 500: boom" in caplog.text


async def test_best_effort_hooks_have_a_deadline(autojump_clock: trio.testing.MockClock) -> None:
    async def hangs() -> None:
        await trio.sleep_forever()

    start = trio.current_time()
    assert await best_effort("delete", hangs, timeout_s=120) is False
    assert trio.current_time() - start == pytest.approx(120)


def _check(command: str, code: int) -> TraceEvent:
    return TraceEvent(
        phase="qa_check", tool_name="qa", input={"command": command},
        output={"exit_code": code, "truncated": False, "output": ""},
    )  # fmt: skip


def test_the_observer_reports_the_last_qa_round() -> None:
    observer = TurnObserver("Add a button")
    assert observer.summary().qa == "skipped"
    observer.observe(MessageType.TRACE_EVENT, _check("npm run -s lint", 0))
    observer.observe(MessageType.TRACE_EVENT, _check("npm run -s build", 2))
    observer.observe(
        MessageType.ERROR,
        ErrorData(error="qa_failed", detail="QA failed on `npm run -s build` (exit 2).\nOutput: x"),
    )
    observer.observe(MessageType.AGENT_FINAL, TextData("Fixed."))
    failed = observer.summary()
    assert failed.qa == "failed"
    assert failed.qa_detail == "QA failed on `npm run -s build` (exit 2)."
    assert failed.final_text == "Fixed."
    assert failed.user_text == "Add a button"
    observer.observe(MessageType.TRACE_EVENT, _check("npm run -s lint", 0))  # self-heal round
    observer.observe(MessageType.TRACE_EVENT, _check("npm run -s build", 0))
    assert observer.summary().qa == "passed"
    assert observer.summary("cancelled").qa == "cancelled"
    assert observer.summary("failed").qa == "error"
    other = TurnObserver("x")
    other.observe(MessageType.ERROR, ErrorData(error="turn_failed"))
    other.observe(MessageType.UPDATE_FILE, TextData("Writing /src/App.tsx"))
    assert other.summary().qa == "skipped"
