"""The Chat Completions wire format, translated to and from the loop's conversation format.

Pure functions, no I/O: :func:`chat_body` turns a :class:`~.model_api.ModelRequest` (Anthropic
Messages JSON) into a streaming Chat Completions request body, and :class:`ChunkReader` folds
the streamed chunks back into Anthropic blocks in an :class:`~.model_api.Attempt`.

What the translation has to bridge:

* tool results are ``tool`` messages (text only): images a tool returned follow them in a
  user message; ``is_error`` results start with ``Error:``;
* images are ``image_url`` parts with a data URL, or a short note when the model takes none;
* a retry after a drop cannot prefill: the partial answer goes back as an assistant message
  followed by a request to continue it;
* servers differ: tool call ids may be missing or use characters the Messages API refuses
  (so a project can switch provider), arguments may arrive as an object, ``finish_reason``
  may say ``stop`` although tools were called. The reader normalises all of it.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from amicable_agent.errors import AgentError

from .model_api import Attempt, TokenUsage, parse_arguments

if TYPE_CHECKING:
    from .model_api import ModelRequest

#: Sent after the partial answer of an attempt that dropped mid-stream.
CONTINUE_NOTE = (
    "Your previous answer was cut off by a network error after the text above. Continue "
    "exactly where it stopped, without repeating any of it."
)
IMAGE_OMITTED = "[image omitted: the selected model does not accept images]"
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _image_part(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    return {"type": "image_url", "image_url": {"url": url}}


def _user_message(parts: list[dict[str, Any]], images: bool) -> dict[str, Any] | None:
    """One user message from text and image blocks (plain text when there is no image, for
    servers that take only strings)."""
    out: list[dict[str, Any]] = []
    for block in parts:
        if block.get("type") == "image":
            out.append(_image_part(block) if images else {"type": "text", "text": IMAGE_OMITTED})
        elif block.get("type") == "text":
            out.append({"type": "text", "text": str(block.get("text", ""))})
    if not out:
        return None
    if all(p["type"] == "text" for p in out):
        return {"role": "user", "content": "\n\n".join(p["text"] for p in out)}
    return {"role": "user", "content": out}


def _tool_messages(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A ``tool`` message for one tool result, and the images it carried."""
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for part in _blocks(block.get("content")):
        if part.get("type") == "image":
            images.append(part)
        elif part.get("type") == "text":
            texts.append(str(part.get("text", "")))
    text = "\n".join(texts) or ("(image)" if images else "(no output)")
    if block.get("is_error") and not text.startswith("Error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id")), "content": text}, images


def _assistant_message(content: Any) -> dict[str, Any]:
    text = "".join(str(b.get("text", "")) for b in _blocks(content) if b.get("type") == "text")
    calls = [
        {"id": str(b.get("id")), "type": "function",
         "function": {"name": str(b.get("name") or ""),
                      "arguments": json.dumps(b.get("input") or {})}}
        for b in _blocks(content)
        if b.get("type") == "tool_use"
    ]  # fmt: skip
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


def chat_messages(
    system: str, messages: list[dict[str, Any]], *, images: bool = True, continue_from: str = ""
) -> list[dict[str, Any]]:
    """The ``messages`` array of a Chat Completions request for a loop conversation."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for message in messages:
        if message.get("role") == "assistant":
            out.append(_assistant_message(message.get("content")))
            continue
        blocks = _blocks(message.get("content"))
        returned: list[dict[str, Any]] = []
        for block in blocks:
            if block.get("type") == "tool_result":
                tool, pictures = _tool_messages(block)
                out.append(tool)
                returned.extend(pictures)
        rest = [b for b in blocks if b.get("type") != "tool_result"]
        if returned:
            rest = [{"type": "text", "text": "Images returned by the tool calls above:"},
                    *returned, *rest]  # fmt: skip
        user = _user_message(rest, images)
        if user is not None:
            out.append(user)
    if continue_from:
        out.append({"role": "assistant", "content": continue_from})
        out.append({"role": "user", "content": CONTINUE_NOTE})
    return out


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Loop tool definitions as Chat Completions ``function`` tools."""
    return [
        {"type": "function",
         "function": {"name": t["name"], "description": t.get("description", ""),
                      "parameters": t.get("input_schema") or {"type": "object", "properties": {}}}}
        for t in tools
    ]  # fmt: skip


def chat_body(
    request: ModelRequest, model: str, *, images: bool = True, max_tokens_field: str = "max_tokens"
) -> dict[str, Any]:
    """The JSON body of a streaming Chat Completions request (usage in the last chunk)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": chat_messages(
            request.system, request.messages, images=images, continue_from=request.continue_from
        ),
        "stream": True,
        "stream_options": {"include_usage": True},
        max_tokens_field: request.max_output_tokens,
    }
    if request.tools:
        body["tools"] = chat_tools(request.tools)
    return body


class ChunkError(AgentError):
    """A streamed chunk carried an ``error`` object: the server gave up mid-stream
    (``status`` when the error names an HTTP status)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _call_id(raw: Any) -> str:
    if isinstance(raw, str) and _ID_OK.match(raw):
        return raw
    if isinstance(raw, str) and raw:
        return _ID_BAD_CHARS.sub("_", raw)[:64]
    return f"call_{uuid.uuid4().hex[:24]}"


class ChunkReader:
    """Folds streamed chunks into ``attempt``: text at block 0, tool call ``i`` at ``1 + i``.

    Call :meth:`feed` with each chunk's JSON, then :meth:`finish` once the stream ended
    with a ``finish_reason`` (:attr:`finished`).
    """

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt
        self.finished = False
        self._finish_reason: str | None = None

    def feed(self, data: dict[str, Any]) -> bool:
        """Apply one chunk; True when the answer's text grew.

        Raises:
            ChunkError: the chunk is an error report.
        """
        error = data.get("error")
        if error is not None:
            if isinstance(error, dict):
                code = error.get("code")
                status = code if isinstance(code, int) else None
                raise ChunkError(str(error.get("message") or error)[:300], status)
            raise ChunkError(str(error)[:300], None)
        usage = data.get("usage")
        if isinstance(usage, dict):
            self._usage(usage)
        grew = False
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                block = self.attempt.blocks.get(0)
                if block is None:
                    self.attempt.blocks[0] = {"type": "text", "text": text}
                else:
                    block["text"] += text
                grew = True
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._tool_call(call)
            reason = choice.get("finish_reason")
            if reason:
                self._finish_reason = str(reason)
                self.finished = True
        return grew

    def _tool_call(self, call: dict[str, Any]) -> None:
        index = call.get("index")
        position = 1 + (
            index if isinstance(index, int) and index >= 0 else len(self.attempt.json_parts)
        )
        block = self.attempt.blocks.get(position)
        function = call.get("function") or {}
        if block is None:
            block = {"type": "tool_use", "id": None, "name": "", "input": {}}
            self.attempt.blocks[position] = block
            self.attempt.json_parts[position] = []
        if call.get("id") and block["id"] is None:
            block["id"] = call["id"]
        name = function.get("name")
        if isinstance(name, str) and name:
            # Some servers repeat the name in every delta, others send it in pieces.
            block["name"] = name if name.startswith(block["name"]) else block["name"] + name
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # not the spec, but some servers send an object
            arguments = json.dumps(arguments)
        if isinstance(arguments, str) and arguments:
            self.attempt.json_parts[position].append(arguments)

    def _usage(self, usage: dict[str, Any]) -> None:
        prompt = int(usage.get("prompt_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        self.attempt.usage = TokenUsage(
            input_tokens=max(0, prompt - cached),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cache_read_input_tokens=cached,
        )

    def finish(self) -> None:
        """Parse the tool calls' arguments and set the stop reason (Messages vocabulary)."""
        seen: set[str] = set()
        for position, parts in sorted(self.attempt.json_parts.items()):
            block = self.attempt.blocks[position]
            block["input"] = parse_arguments("".join(parts))
            call_id = _call_id(block["id"])
            if call_id in seen:
                call_id = _call_id(None)
            seen.add(call_id)
            block["id"] = call_id
        self.attempt.json_parts.clear()
        has_tools = any(b["type"] == "tool_use" for b in self.attempt.blocks.values())
        reason = _STOP_REASONS.get(self._finish_reason or "", "end_turn")
        if has_tools and reason == "end_turn":
            reason = "tool_use"  # some servers say "stop" after calling tools
        self.attempt.stop_reason = reason
