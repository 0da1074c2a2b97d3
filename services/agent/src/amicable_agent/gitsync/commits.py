"""Deterministic commit messages (no model call that could fail a sync).

A turn's commit: the user's request as the subject (whitespace collapsed, at most 72
characters), a body with the QA outcome and, when the request was longer, the request
itself; every message ends with a ``Changes:`` section from ``git diff --name-status``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:
    from .records import ProjectRef

SUBJECT_MAX = 72
BODY_TEXT_MAX = 600
CHANGES_MAX_LINES = 200
QaStatus = Literal["passed", "failed", "skipped", "cancelled", "error"]

_SPACE = re.compile(r"\s+")


def collapse(text: str) -> str:
    """``text`` on one line, runs of whitespace as one space."""
    return _SPACE.sub(" ", text).strip()


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters on a word boundary when possible, with ``...``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" .,;:") + "..."


@attrs.frozen
class CommitMessage:
    """Subject and body; :meth:`render` appends the ``Changes:`` section."""

    subject: str
    body: str = ""

    def render(self, name_status: str) -> str:
        """The full message for ``git commit -F -``."""
        parts = [shorten(collapse(self.subject) or "Update", SUBJECT_MAX), ""]
        if self.body.strip():
            parts += [self.body.strip(), ""]
        lines = [line for line in name_status.splitlines() if line.strip()]
        parts.append("Changes:")
        parts += [f"  {line}" for line in lines[:CHANGES_MAX_LINES]]
        if len(lines) > CHANGES_MAX_LINES:
            parts.append(f"  ... and {len(lines) - CHANGES_MAX_LINES} more")
        return "\n".join(parts) + "\n"


@attrs.frozen
class TurnSummary:
    """What the session knows at the end of an agent turn.

    Attributes:
        user_text: the user's message that started the turn.
        final_text: the agent's final answer.
        qa: the QA outcome.
        qa_detail: a short QA summary (first failing command, …).
        changed_files: files the agent wrote (informational; the commit uses git's view).
    """

    user_text: str
    final_text: str = ""
    qa: QaStatus = "skipped"
    qa_detail: str = ""
    changed_files: tuple[str, ...] = ()


_QA_LINE = {
    "passed": "QA: passed",
    "failed": "QA: failed",
    "skipped": "QA: not run",
    "cancelled": "QA: turn cancelled",
    "error": "QA: turn ended with an error",
}


def turn_message(turn: TurnSummary) -> CommitMessage:
    """The commit message of an agent turn."""
    request = collapse(turn.user_text)
    subject = request or "Agent turn"
    body = [
        _QA_LINE[turn.qa]
        + (f" ({shorten(collapse(turn.qa_detail), 200)})" if turn.qa_detail.strip() else "")
    ]
    if len(request) > SUBJECT_MAX:
        body.append("Request: " + shorten(request, BODY_TEXT_MAX))
    answer = collapse(turn.final_text)
    if answer:
        body.append("Agent: " + shorten(answer, BODY_TEXT_MAX))
    return CommitMessage(subject, "\n".join(body))


def ui_sync_message(slug: str, now: dt.datetime | None = None) -> CommitMessage:
    """Upstream's default editor message: ``UI sync (<slug>) <YYYY-MM-DD HH:MM:SS>``."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M:%S")
    return CommitMessage(f"UI sync ({slug}) {stamp}")


def user_message(text: str) -> CommitMessage:
    """A message given by the editor (``commit_message``): first line subject, rest body."""
    first, _, rest = text.strip().partition("\n")
    return CommitMessage(first, rest)


def bootstrap_message(project: ProjectRef) -> CommitMessage:
    """The baseline commit pushed when a project's branch does not exist yet (uses the
    prompt and template of a ``store.Project`` or a ``ProjectInfo`` when present)."""
    prompt = getattr(project, "prompt", None) or getattr(project, "project_prompt", None)
    about = shorten(collapse(str(prompt or "")), 220) or (
        "No project description was provided at creation time."
    )
    body = "\n".join(
        [
            f"Project Name: {project.name}",
            f"Project: {project.slug} ({project.project_id})",
            f"Template: {getattr(project, 'template_id', '') or 'unknown'}",
            f"About: {about}",
            "",
            "Initial baseline commit created from the sandbox template state.",
        ]
    )
    return CommitMessage("Bootstrap sandbox template", body)
