"""Incremental ``text/event-stream`` parsing for both model APIs (one ``json.loads`` per event).

The Anthropic Messages stream names each event (``event: content_block_delta`` + one
``data:`` line); the Chat Completions stream sends bare ``data:`` lines and ends with
``data: [DONE]``. Both shapes have a fast path here; anything else (several data lines,
comments, CRLF framing) takes the general one.
"""

from __future__ import annotations

import json
from typing import Any

#: The ``type`` of the event parsed from ``data: [DONE]`` (end of a Chat Completions stream).
DONE = "[DONE]"


class StreamEvent:
    """One parsed SSE event: ``type`` and its JSON ``data`` (a dict).

    ``type`` is the ``event:`` name, else the payload's own ``type`` field, else ``""``.
    Other attributes read the JSON fields (``event.index``, ``event.delta.text``; nested
    objects are wrapped the same way, missing fields are ``None``), like the SDK's models.
    """

    __slots__ = ("data", "type")

    def __init__(self, type: str, data: dict[str, Any]) -> None:
        self.type = type
        self.data = data

    def __getattr__(self, name: str) -> Any:
        value = self.data.get(name)
        return StreamEvent(value.get("type", ""), value) if isinstance(value, dict) else value


class SseParser:
    """Incremental ``text/event-stream`` parser: :meth:`feed` bytes, get whole events.

    Lines end in LF or CRLF; an event's ``data:`` lines are joined with LF and decoded as
    JSON once. ``ping`` events, comments and events without data are dropped;
    ``data: [DONE]`` becomes an event of type :data:`DONE`. A malformed JSON payload raises
    ``json.JSONDecodeError`` (the stream is treated as dropped and retried).
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """The events completed by ``chunk`` (often none or one)."""
        data = self._buffer + chunk if self._buffer else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")  # a CR split from its LF stays buffered
        if b"\n\n" not in data:
            self._buffer = data
            return []
        *blocks, self._buffer = data.split(b"\n\n")
        events: list[StreamEvent] = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                # Chat Completions: one data line, no event name.
                events.append(_event("", block[6:]))
                continue
            name, sep, body = block.partition(b"\n")
            # Messages: one event line, one data line.
            if (
                sep
                and name.startswith(b"event: ")
                and body.startswith(b"data: ")
                and b"\n" not in body
            ):
                if name != b"event: ping":
                    events.append(_event(name[7:].decode(), body[6:]))
            else:
                self._general(block, events)
        return events

    @staticmethod
    def _general(block: bytes, events: list[StreamEvent]) -> None:
        name = ""
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                name = line[6:].strip().decode()
        if data and name != "ping":
            events.append(_event(name, b"\n".join(data)))


def _event(name: str, raw: bytes) -> StreamEvent:
    if raw.strip() == b"[DONE]":
        return StreamEvent(DONE, {})
    payload = json.loads(raw.decode())
    if not isinstance(payload, dict):
        raise json.JSONDecodeError("event data is not a JSON object", raw.decode(), 0)
    return StreamEvent(name or str(payload.get("type", "")), payload)
