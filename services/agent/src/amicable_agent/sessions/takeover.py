"""Failover of a turn whose agent replica died.

The holder records the running turn in the store (:data:`TURN_KEY`: the request, its title and
the newest turn-event id when it started) and clears it when the turn ends. A replica that
takes the lease over and still finds the record knows the turn was cut: its files were
already checkpointed as "interrupted: …" (the checkpoint queue's pending titles), and here the
turn is closed in the conversation — the text the model had streamed so far (read back from
the relayed events) and a notice are appended to the chat, every attached editor gets an
``error`` ``turn_interrupted``, a ``turn_interrupted`` turn event is recorded, and, when
``AMICABLE_TURN_AUTO_RETRY`` is on, the request is queued again. Pending approvals (HITL state)
are stored per project and need nothing: the next holder answers them as the last would have.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol import structure, unstructure
from amicable_protocol.messages import ErrorData, MessageType

from amicable_agent.loop.turn_end import append_chat

from .relay import REQUEST_TYPES

if TYPE_CHECKING:
    from collections.abc import Callable

    from amicable_agent.loop.api import SessionHost
    from amicable_agent.store import Store

    from .deps import SessionDeps
    from .relay import TurnRelay

log = logging.getLogger(__name__)

#: Store state key of the running turn.
TURN_KEY = "turn_running"
#: The ``error`` code every editor gets for a turn cut by its replica's death.
INTERRUPTED_ERROR = "turn_interrupted"
INTERRUPTED_NOTICE = (
    "This turn was interrupted: the agent server running it stopped. The files it had "
    "written are saved in the checkpoint history as \u201cinterrupted: {title}\u201d; "
    "send a message to continue from there."
)
RETRY_NOTICE = (
    "This turn was interrupted: the agent server running it stopped. Its files are saved "
    "as \u201cinterrupted: {title}\u201d and the request is being run again."
)
#: Deadline of the store calls made here.
STORE_CALL_S = 10.0


async def mark_turn(
    host: SessionHost, relay: TurnRelay, kind: str, data: Any, by: str | None, title: str
) -> None:
    """Record the turn that starts (a failed write is logged: the turn runs anyway), after
    dropping relayed events nobody needs any more."""
    await relay.prune()
    try:
        with trio.fail_after(STORE_CALL_S):
            record = {
                "kind": kind, "data": unstructure(data), "by": by, "title": title,
                "events": await relay.newest_id(),
            }  # fmt: skip
            await host.store.save_state(host.session_id, TURN_KEY, record)
    except Exception as exc:
        log.warning("could not record the running turn of %s: %s", host.session_id, exc)


async def unmark_turn(host: SessionHost) -> None:
    """The turn ended (however): nothing to take over."""
    try:
        with trio.fail_after(STORE_CALL_S):
            await host.store.save_state(host.session_id, TURN_KEY, None)
    except Exception as exc:
        log.warning("could not clear the running turn of %s: %s", host.session_id, exc)


async def take_over(
    host: SessionHost,
    store: Store,
    deps: SessionDeps,
    relay: TurnRelay,
    submit: Callable[..., None],
) -> None:
    """Close a turn a dead holder left (see the module docstring); nothing without one."""
    pid = host.session_id
    with trio.fail_after(STORE_CALL_S):
        record = await store.load_state(pid, TURN_KEY)
    if not isinstance(record, dict):
        return
    title = str(record.get("title") or "the last request")
    retry = deps.leases is not None and deps.leases.auto_retry
    notice = (RETRY_NOTICE if retry else INTERRUPTED_NOTICE).format(title=title)
    log.warning("taking over %s: its last turn (%r) was interrupted", pid, title)
    with trio.fail_after(STORE_CALL_S):
        text = await relay.last_text(int(record.get("events") or 0))
        await append_chat(host, "assistant", f"{text}\n\n{notice}" if text else notice)
        await store.append_turn_event(
            pid, INTERRUPTED_ERROR, {"trigger": record.get("kind"), "title": title}
        )
        await store.save_state(pid, TURN_KEY, None)
    await host.send(MessageType.ERROR, ErrorData(error=INTERRUPTED_ERROR, detail=notice))
    if retry:
        try:
            kind = MessageType(str(record.get("kind")))
            submit(kind, structure(record.get("data"), REQUEST_TYPES[kind]), None,
                   by=record.get("by"))  # fmt: skip
        except Exception as exc:
            log.warning("could not run the interrupted turn of %s again: %s", pid, exc)
