"""The conversation as the editors were shown it: each turn's broadcast envelopes, recorded
while it runs and stored when it ends, so a reopened project (or a reloaded tab) rebuilds the
same chat — tool cards, usage, errors, stop markers — instead of plain text.

What is kept of a turn (:class:`TurnTranscript`): ``turn_started`` … ``turn_ended`` and
everything between that the chat renders. Cumulative ``agent_partial`` frames are coalesced
(the last one before each other event is kept, so tool cards keep their place in the text);
``update_file`` status lines are dropped; tool inputs and outputs are capped
(:func:`cap_value`). Stored turns are read back newest first in pages
(:func:`load_turn_page`), bounded in count and size.

A turn's checkpoint is taken in the background after the turn ended, so it is not in the
turn's record: the checkpoint queue stores its ``checkpoint`` ``trace_event`` under the turn
(:func:`save_turn_checkpoint`, a state key per turn) and :func:`load_turn_page` appends it to
the record read back, where the editor's replay attaches it as it does live ("View changes").
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

import attrs
import trio
from amicable_protocol.messages import (
    MessageType,
    ServerMessage,
    TraceEvent,
    TurnPage,
    TurnRecord,
    TurnStarted,
    server_message_to_json,
)

if TYPE_CHECKING:
    from amicable_agent.store import Store

log = logging.getLogger(__name__)

#: ``turn_events.kind`` of a stored turn record.
RECORD_KIND = "turn_record"
#: Store state key prefix of the checkpoint that saved a turn's files (+ the turn id).
CHECKPOINT_KEY_PREFIX = "turn_checkpoint:"
#: Characters kept of one string in a tool's input or output.
MAX_VALUE_CHARS = 2000
#: Characters kept of a whole tool input or output (JSON).
MAX_PAYLOAD_CHARS = 8000
#: Events kept of one turn (the last ones are kept: the turn's end matters most).
MAX_EVENTS = 600
#: Turns in one page, and the JSON size a page stops growing at.
PAGE_TURNS = 20
PAGE_BYTES = 1_000_000

_RECORDED = frozenset(
    {
        MessageType.TURN_STARTED,
        MessageType.UPDATE_IN_PROGRESS,
        MessageType.AGENT_PARTIAL,
        MessageType.AGENT_FINAL,
        MessageType.TRACE_EVENT,
        MessageType.HITL_REQUEST,
        MessageType.ERROR,
        MessageType.USAGE,
        MessageType.UPDATE_COMPLETED,
        MessageType.TURN_ENDED,
    }
)


_SANDBOX_ROOT = re.compile(r"(?:file://)?(?:/[^\s'\"():]*)?/sandboxes/[^/\s]+/workspace(?=/)")
_APP_ROOT = re.compile(r"(^|[\s'\"(\[])(?:file://)?(?:/@fs)?/app(?=/)")


def project_paths(text: str) -> str:
    """``text`` with sandbox paths (``/app/src/App.tsx``, a local sandbox's host directory)
    shown as project paths (``/src/App.tsx``)."""
    return _APP_ROOT.sub(r"\1", _SANDBOX_ROOT.sub("", text))


def cap_value(value: Any, chars: int = MAX_VALUE_CHARS, total: int = MAX_PAYLOAD_CHARS) -> Any:
    """``value`` with every string cut to ``chars`` (ending in ``…``); a value whose JSON is
    still longer than ``total`` becomes its JSON text, cut."""

    def cut(v: Any, depth: int) -> Any:
        if isinstance(v, str):
            return v if len(v) <= chars else v[: chars - 1] + "…"
        if depth > 8:
            return "…"
        if isinstance(v, dict):
            return {str(k): cut(x, depth + 1) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [cut(x, depth + 1) for x in v]
        return v

    capped = cut(value, 0)
    text = json.dumps(capped, ensure_ascii=False, default=str)
    if len(text) <= total:
        return capped
    return text[: total - 1] + "…"


def _capped(msg: ServerMessage) -> ServerMessage:
    data = msg.data
    if isinstance(data, TraceEvent) and (data.input is not None or data.output is not None):
        data = attrs.evolve(data, input=cap_value(data.input), output=cap_value(data.output))
        return attrs.evolve(msg, data=data)
    return msg


class TurnTranscript:
    """What one turn broadcast, as the editors rendered it (see the module docstring).

    ``start`` is the turn's ``turn_started``; ``announced`` says it was broadcast (an
    auto-heal is announced only when it really starts a turn)."""

    def __init__(self, turn_id: str, start: TurnStarted) -> None:
        self.turn_id = turn_id
        self.start = start
        self.announced = False
        self._events: list[ServerMessage] = []

    def observe(self, msg: ServerMessage) -> None:
        """Record one broadcast envelope (sync, cheap: partials replace each other)."""
        if msg.type not in _RECORDED or not self.announced:
            return
        events = self._events
        if (
            msg.type is MessageType.AGENT_PARTIAL
            and events
            and events[-1].type is MessageType.AGENT_PARTIAL
            and events[-1].id == msg.id
        ):
            events[-1] = msg
            return
        events.append(_capped(msg))
        if len(events) > MAX_EVENTS:
            del events[1]  # keep turn_started (the prompt) and the newest events

    def record(self, seq: int | None = None) -> TurnRecord:
        """The turn so far as a wire record."""
        events = tuple(server_message_to_json(m) for m in self._events)
        return TurnRecord(turn_id=self.turn_id, events=events, seq=seq)


def record_payload(record: TurnRecord) -> dict[str, Any]:
    """What is stored for a turn (``turn_events.payload_json``)."""
    return {"turn_id": record.turn_id, "events": list(record.events)}


def _from_row(seq: int, payload: Any) -> TurnRecord | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("turn_id"), str):
        return None
    events = payload.get("events")
    if not isinstance(events, list):
        return None
    kept = tuple(e for e in events if isinstance(e, dict))
    return TurnRecord(turn_id=payload["turn_id"], events=kept, seq=seq)


async def load_turn_page(
    store: Store, project_id: str, *, before: int | None = None, limit: int = PAGE_TURNS
) -> TurnPage:
    """The stored turns before ``before`` (all when None), newest ``limit`` at most and about
    :data:`PAGE_BYTES` of JSON, oldest first; ``before`` of the answer is the cursor for the
    page before it (None: there is none)."""
    rows = await store.turn_records(project_id, before=before, limit=limit + 1)
    page: list[TurnRecord] = []
    size = 0
    more = len(rows) > limit
    for seq, payload in rows[:limit]:
        record = _from_row(seq, payload)
        if record is None:
            log.warning("skipping an unreadable turn record %s of %s", seq, project_id)
            continue
        weight = len(json.dumps(payload, ensure_ascii=False, default=str))
        if page and size + weight > PAGE_BYTES:
            more = True
            break
        size += weight
        page.append(record)
    page.reverse()
    cursor = page[0].seq if page and more else None
    turns = [await _with_checkpoint(store, project_id, r) for r in page]
    return TurnPage(turns=tuple(turns), before=cursor)


async def save_turn_checkpoint(
    store: Store, project_id: str, turn_id: str, event: TraceEvent
) -> None:
    """Remember that the ``checkpoint`` ``event`` saved the files of turn ``turn_id`` (best
    effort: a store failure only loses the turn's "View changes" after a reload)."""
    envelope = ServerMessage(type=MessageType.TRACE_EVENT, data=event, session_id=project_id)
    try:
        with trio.move_on_after(10):
            await store.save_state(
                project_id, CHECKPOINT_KEY_PREFIX + turn_id, server_message_to_json(envelope)
            )
    except Exception as exc:
        log.warning("could not store the checkpoint of turn %s of %s: %s", turn_id, project_id, exc)


async def _with_checkpoint(store: Store, project_id: str, record: TurnRecord) -> TurnRecord:
    """``record`` with its checkpoint's ``trace_event`` last, when one was stored."""
    try:
        stored = await store.load_state(project_id, CHECKPOINT_KEY_PREFIX + record.turn_id)
    except Exception as exc:
        log.warning("could not load the checkpoint of turn %s: %s", record.turn_id, exc)
        return record
    if not isinstance(stored, dict) or stored.get("type") != str(MessageType.TRACE_EVENT):
        return record
    return attrs.evolve(record, events=(*record.events, stored))
