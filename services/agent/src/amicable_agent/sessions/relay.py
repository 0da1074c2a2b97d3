"""A project's turn across agent replicas: the holder's broadcasts reach sockets attached to
other replicas, and their turn frames reach the holder.

- **Events:** while its session holds the lease, every broadcast is appended, in order and in
  batches, to the existing ``turn_events`` table (kind ``wire``, the encoded frame and the
  lease token) and announced with ``NOTIFY``; the sessions of the project on other replicas
  read the events after the last id they saw and broadcast them to their own sockets. Events
  carrying one of the session's own tokens are skipped (it sent them itself). Only a shared
  store (PostgreSQL) relays; on SQLite the one process's sockets are all attached to the
  holder already.
- **Requests:** a ``user``/``hitl_response``/``runtime_error``/``cancel`` frame reaching a
  session that does not hold the lease is queued in ``turn_requests``; the holder takes the
  queue (fenced: only the holder can) whenever it is notified, and at each acquisition.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol import structure, unstructure
from amicable_protocol.messages import (
    CancelData,
    HitlResponseData,
    MessageType,
    RuntimeErrorData,
    ServerMessage,
    UserData,
    decode_server_message,
    encode_server_message,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from amicable_agent.store import Store

    from .lease import Notifier, TurnLease

log = logging.getLogger(__name__)

#: Broadcasts waiting to be written before the oldest are dropped (a store outage).
PUBLISH_BACKLOG = 4096
#: The frames a non-holder forwards, and their data classes.
REQUEST_TYPES: dict[MessageType, type[Any]] = {
    MessageType.USER: UserData,
    MessageType.HITL_RESPONSE: HitlResponseData,
    MessageType.RUNTIME_ERROR: RuntimeErrorData,
    MessageType.CANCEL: CancelData,
}
#: Relayed events are kept this long (a reader far behind that has reconnected anyway).
WIRE_EVENTS_KEEP_S = 3600.0
#: Deadline of one relay call to the store.
RELAY_CALL_S = 10.0


class TurnRelay:
    """The cross-replica side of one session (see the module docstring).

    Args:
        project_id: the project.
        store: the shared store (unfenced; the request take uses ``fenced``).
        fenced: the session's fenced view of the store.
        lease: the session's lease.
        notifier: the process's notification fan-out.
        deliver: broadcasts a relayed message to this replica's sockets only.
        submit: hands a request taken from the queue to the local turn queue.
    """

    def __init__(
        self,
        project_id: str,
        store: Store,
        fenced: Store,
        lease: TurnLease,
        notifier: Notifier,
        deliver: Callable[[ServerMessage], None],
        submit: Callable[[MessageType, Any, str | None], None],
    ) -> None:
        self._project_id = project_id
        self._store = store
        self._fenced = fenced
        self._lease = lease
        self._notifier = notifier
        self._deliver = deliver
        self._submit = submit
        self._backlog: list[dict[str, Any]] = []
        self._wake = trio.Event()
        self.relays = store.shared
        #: The holder is draining: requests stay queued for the next holder.
        self.paused = False

    @property
    def _poll_s(self) -> float:
        return self._lease.settings.ttl_s / 3

    # --- events -----------------------------------------------------------------------

    def offer(self, message: ServerMessage) -> None:
        """Queue a broadcast of the holder for the other replicas (never blocks)."""
        token = self._lease.fence.token
        if not self.relays or token is None or self._lease.lost:
            return
        if len(self._backlog) >= PUBLISH_BACKLOG:
            del self._backlog[0]
        self._backlog.append({"t": token, "f": encode_server_message(message)})
        self._wake.set()

    async def publish(self) -> None:
        """The holder's writer: append the queued broadcasts in order until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            batch, self._backlog = self._backlog, []
            if not batch:
                continue
            try:
                with trio.fail_after(RELAY_CALL_S):
                    await self._fenced.append_wire_events(self._project_id, batch)
            except Exception as exc:
                log.warning(
                    "could not relay %d events of %s: %s", len(batch), self._project_id, exc
                )

    async def follow(self) -> None:
        """Broadcast the events other replicas' holders relay, in order, until cancelled."""
        if not self.relays:
            return
        last = await self._newest()
        while True:
            await self._notifier.wait("events", self._project_id, self._poll_s)
            try:
                with trio.fail_after(RELAY_CALL_S):
                    events = await self._store.wire_events_after(self._project_id, last)
            except Exception as exc:
                log.warning("could not read relayed events of %s: %s", self._project_id, exc)
                continue
            for seq, payload in events:
                last = seq
                if not isinstance(payload, dict) or payload.get("t") in self._lease.tokens:
                    continue
                try:
                    self._deliver(decode_server_message(str(payload.get("f"))))
                except Exception as exc:
                    log.warning("skipping a relayed event of %s: %s", self._project_id, exc)

    async def _newest(self) -> int:
        while True:
            try:
                with trio.fail_after(RELAY_CALL_S):
                    return (await self._store.wire_events_after(self._project_id, -1))[0][0]
            except Exception as exc:
                log.warning("could not read relayed events of %s: %s", self._project_id, exc)
                await trio.sleep(self._poll_s)

    async def last_text(self, after: int) -> str:
        """The newest (cumulative) assistant text relayed after event id ``after``."""
        if not self.relays:
            return ""
        text = ""
        for _, payload in await self._store.wire_events_after(self._project_id, after):
            try:
                msg = decode_server_message(str(payload.get("f")))
            except Exception:
                continue
            if msg.type in (MessageType.AGENT_PARTIAL, MessageType.AGENT_FINAL):
                text = str(getattr(msg.data, "text", "") or text)
        return text

    async def prune(self) -> None:
        """Drop relayed events older than :data:`WIRE_EVENTS_KEEP_S` (at each turn start)."""
        if self.relays:
            try:
                with trio.fail_after(RELAY_CALL_S):
                    await self._fenced.prune_wire_events(self._project_id, WIRE_EVENTS_KEEP_S)
            except Exception as exc:
                log.warning("could not prune relayed events of %s: %s", self._project_id, exc)

    async def newest_id(self) -> int:
        """The newest turn-event id of the project (0 without a shared store)."""
        return await self._newest() if self.relays else 0

    # --- requests ---------------------------------------------------------------------

    async def forward(self, kind: MessageType, data: Any, by: str | None) -> None:
        """Queue a client frame for the holder (this session does not hold the lease)."""
        try:
            with trio.fail_after(RELAY_CALL_S):
                await self._store.queue_turn_request(
                    self._project_id, str(kind), unstructure(data), by
                )
        except Exception as exc:
            log.warning("could not queue a %s for %s: %s", kind, self._project_id, exc)

    async def pump(self) -> None:
        """The holder's intake: take the queued requests at once and on every
        notification (or poll), and hand them to the turn queue, until cancelled."""
        while True:
            try:
                taken = []
                if not self.paused:
                    with trio.fail_after(RELAY_CALL_S):
                        taken = await self._fenced.take_turn_requests(self._project_id)
            except Exception as exc:
                log.warning("could not take requests of %s: %s", self._project_id, exc)
                taken = []
            for kind, payload, by in taken:
                try:
                    mtype = MessageType(kind)
                    self._submit(mtype, structure(payload, REQUEST_TYPES[mtype]), by)
                except Exception as exc:
                    log.warning("skipping a queued %s of %s: %s", kind, self._project_id, exc)
            await self._notifier.wait("request", self._project_id, self._poll_s)
