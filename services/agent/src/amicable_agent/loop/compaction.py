"""Keep the model conversation valid and small.

* :func:`repair` makes a stored conversation acceptable to the Messages API again (after a
  crash or a cancel between a ``tool_use`` and its result).
* :func:`compact` folds older turns into a bullet summary once the history is long.
* :func:`fit_context` cuts old tool output so a request stays under the context budget.
"""

from __future__ import annotations

import json
from typing import Any

#: Result fed back for a ``tool_use`` whose execution never finished.
INTERRUPTED_RESULT = "Tool call interrupted (the turn was stopped before it finished)."
SUMMARY_MAX_CHARS = 8_000
_OLD_TOOL_OUTPUT_MAX = 2_000


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def is_tool_result_message(message: dict[str, Any]) -> bool:
    """A user message that carries tool results (not a request typed by the person)."""
    return message.get("role") == "user" and any(
        b.get("type") == "tool_result" for b in _blocks(message)
    )


def message_text(message: dict[str, Any]) -> str:
    """The concatenated text blocks of a message."""
    return "\n".join(str(b.get("text", "")) for b in _blocks(message) if b.get("type") == "text")


def truncate_middle(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters keeping its head and tail (errors are at the end)."""
    if len(text) <= limit:
        return text
    head = limit // 3
    tail = limit - head
    return f"{text[:head]}\n… [{len(text) - limit} chars omitted] …\n{text[-tail:]}"


def append_user(messages: list[dict[str, Any]], content: str | list[dict[str, Any]]) -> None:
    """Append a user message, merging it into a trailing user message (roles alternate)."""
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    if messages and messages[-1].get("role") == "user":
        messages[-1] = {"role": "user", "content": [*_blocks(messages[-1]), *blocks]}
    else:
        messages.append({"role": "user", "content": content})


def repair(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of ``messages`` that the API accepts.

    Drops leading non-user messages, merges consecutive same-role messages, adds an
    "interrupted" result for every ``tool_use`` whose result is missing and drops results
    whose call is gone.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role not in ("user", "assistant"):
            continue
        blocks = [dict(b) for b in _blocks(message)]
        if not blocks:
            continue
        if not out and role != "user":
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    fixed: list[dict[str, Any]] = []
    for i, message in enumerate(out):
        if message["role"] == "user":
            prev_ids = _tool_use_ids(fixed[-1]) if fixed else []
            kept = [
                b
                for b in message["content"]
                if b.get("type") != "tool_result" or b.get("tool_use_id") in prev_ids
            ]
            have = {b.get("tool_use_id") for b in kept if b.get("type") == "tool_result"}
            missing = [
                {"type": "tool_result", "tool_use_id": tid, "content": INTERRUPTED_RESULT,
                 "is_error": True}
                for tid in prev_ids
                if tid not in have
            ]  # fmt: skip
            results = [b for b in kept if b.get("type") == "tool_result"]
            rest = [b for b in kept if b.get("type") != "tool_result"]
            content = results + missing + rest  # tool results must come first
            if content:
                fixed.append({"role": "user", "content": content})
            elif fixed and fixed[-1]["role"] == "assistant":
                fixed[-1]["content"] = [
                    b for b in fixed[-1]["content"] if b.get("type") != "tool_use"
                ] or [{"type": "text", "text": "(no reply)"}]
        else:
            fixed.append(message)
            if i == len(out) - 1 and _tool_use_ids(message):
                fixed.append(
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": tid,
                             "content": INTERRUPTED_RESULT, "is_error": True}
                            for tid in _tool_use_ids(message)
                        ],
                    }
                )  # fmt: skip
    return fixed


def _tool_use_ids(message: dict[str, Any]) -> list[str]:
    if message.get("role") != "assistant":
        return []
    return [str(b.get("id")) for b in _blocks(message) if b.get("type") == "tool_use"]


def compact(
    messages: list[dict[str, Any]], previous_summary: str, *, trigger: int, keep: int
) -> tuple[list[dict[str, Any]], str] | None:
    """Fold all but about the last ``keep`` messages into a summary when ``trigger`` is hit.

    The kept part starts at a person's request, so no tool result loses its call. Returns
    ``(kept_messages, summary)`` or None when nothing needs compacting.
    """
    if len(messages) < trigger:
        return None
    # Walk back from ``len - keep`` to a person's request so at least ``keep`` stay.
    start = max(0, len(messages) - keep)
    while start > 0 and (
        messages[start].get("role") != "user" or is_tool_result_message(messages[start])
    ):
        start -= 1
    if start == 0:
        return None
    summary = summarise(messages[:start], previous_summary)
    return messages[start:], summary


def summarise(messages: list[dict[str, Any]], previous_summary: str = "") -> str:
    """A bullet summary of ``messages`` (requests, answers, files touched), bounded."""
    bullets: list[str] = []
    touched: list[str] = []
    for message in messages:
        if message.get("role") == "user" and not is_tool_result_message(message):
            text = message_text(message).strip()
            if "User request:\n" in text:
                text = text.rsplit("User request:\n", 1)[1]
            bullets.append(f"- The user asked: {' '.join(text.split())[:300]}")
        elif message.get("role") == "assistant":
            text = message_text(message).strip()
            if text:
                bullets.append(f"- You answered: {' '.join(text.split())[:300]}")
            for block in _blocks(message):
                if block.get("type") == "tool_use" and block.get("name") in (
                    "write_file",
                    "edit_file",
                ):
                    path = str((block.get("input") or {}).get("file_path", ""))
                    if path and path not in touched:
                        touched.append(path)
    if touched:
        bullets.append("- Files changed earlier: " + ", ".join(touched[:50]))
    text = "\n".join(([previous_summary.strip()] if previous_summary.strip() else []) + bullets)
    if len(text) > SUMMARY_MAX_CHARS:
        text = "…\n" + text[-SUMMARY_MAX_CHARS:]
    return text


#: What one image counts for in :func:`request_size`: the model is billed by pixels (about
#: 1,600 tokens for a capped image), not by its base64 length.
IMAGE_CHARS = 6_400


def _image_bytes(value: Any) -> tuple[int, int]:
    """(count, base64 characters) of the images inside ``value``."""
    if isinstance(value, list):
        found = [_image_bytes(v) for v in value]
        return sum(f[0] for f in found), sum(f[1] for f in found)
    if isinstance(value, dict):
        if value.get("type") == "image":
            return 1, len(str((value.get("source") or {}).get("data", "")))
        if isinstance(value.get("content"), list):
            return _image_bytes(value["content"])
    return 0, 0


def request_size(messages: list[dict[str, Any]]) -> int:
    """Approximate size of ``messages`` in characters; an image counts :data:`IMAGE_CHARS`
    whatever its base64 length (a screenshot would otherwise crowd out all history)."""
    count, data = _image_bytes([m.get("content") for m in messages])
    return len(json.dumps(messages, ensure_ascii=False)) - data + count * IMAGE_CHARS


def fit_context(messages: list[dict[str, Any]], budget_chars: int) -> list[dict[str, Any]]:
    """``messages`` with old tool results cut until the request fits ``budget_chars``.

    The last tool-result message is never cut (the model needs it to continue).
    """
    if request_size(messages) <= budget_chars:
        return messages
    out = [dict(m) for m in messages]
    last_results = max((i for i, m in enumerate(out) if is_tool_result_message(m)), default=-1)
    for limit in (_OLD_TOOL_OUTPUT_MAX, 200):
        for i, message in enumerate(out):
            if i == last_results or not is_tool_result_message(message):
                continue
            blocks = []
            for block in _blocks(message):
                content = block.get("content")
                if block.get("type") == "tool_result" and isinstance(content, str):
                    block = {**block, "content": truncate_middle(content, limit)}
                blocks.append(block)
            out[i] = {**message, "content": blocks}
        if request_size(out) <= budget_chars:
            return out
    # Still too big: drop images of earlier requests (the latest request keeps its own).
    last_request = max(
        (i for i, m in enumerate(out) if m.get("role") == "user" and not is_tool_result_message(m)),
        default=-1,
    )
    for i, message in enumerate(out):
        if i != last_request and message.get("role") == "user":
            blocks = [
                {"type": "text", "text": "[image omitted from the history]"}
                if b.get("type") == "image" else b
                for b in _blocks(message)
            ]  # fmt: skip
            out[i] = {**message, "content": blocks}
    return out
