"""A project's turn lease as one session sees it: acquiring it, the heartbeat, the fence.

Exactly one agent replica runs a project's turns: the one whose session holds the lease in
the shared store (:mod:`amicable_agent.store.leases`). A session tries to take it as soon as
its sandbox is ready and keeps it while it lives; sessions of the same project on other
replicas wait (woken by the store's ``NOTIFY`` when it is released, and polling at a third of
the lease time in case the holder died without releasing). The holder renews the lease every
third of its time; a renewal that finds the token gone (the holder was paused past its
expiry and another replica took over) ends the holder's turn work at once.

:class:`Fence` is what the session's fenced store view checks: the token while this session
holds (or held, until its turn work has ended) the lease, None otherwise.

:class:`Notifier` is the process-wide fan-out of the store's notifications to the sessions
waiting on them (``LISTEN`` on PostgreSQL; on SQLite nothing is ever notified and the waits
end by their poll interval, which the one process never needs: its own session is the holder).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from amicable_agent.store import Store

log = logging.getLogger(__name__)

#: Deadline of one lease call to the store.
LEASE_CALL_S = 10.0


def default_replica_id() -> str:
    """This process's name in the lease table: host (the pod name), pid and a random tail
    (a restarted pod with the same name and pid is still another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@attrs.frozen
class LeaseSettings:
    """How sessions share projects between replicas.

    Attributes:
        replica_id: this process in the lease table (``AMICABLE_REPLICA_ID``).
        ttl_s: a lease not renewed for this long may be taken over
            (``AMICABLE_TURN_LEASE_TTL_S``); renewed every third of it.
        auto_retry: a turn interrupted by its replica's death is run again by the replica
            that takes over (``AMICABLE_TURN_AUTO_RETRY``), instead of waiting for the user.
    """

    replica_id: str = attrs.field(factory=default_replica_id)
    ttl_s: float = 15.0
    auto_retry: bool = False


class Notifier:
    """Wakes the tasks waiting for a project's ``lease``/``request``/``events`` notification."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], trio.Event] = {}

    def notify(self, payload: str) -> None:
        """One notification, ``<what>:<project id>`` (from the store's listener); ``*:``
        (the listener reconnected: notifications may have been lost) wakes every waiter."""
        what, _, project_id = payload.partition(":")
        if what == "*":
            waiting, self._events = list(self._events.values()), {}
            for each in waiting:
                each.set()
            return
        event = self._events.pop((what, project_id), None)
        if event is not None:
            event.set()

    async def wait(self, what: str, project_id: str, timeout_s: float) -> None:
        """Until the next ``what`` notification of ``project_id``, at most ``timeout_s``."""
        key = (what, project_id)
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = trio.Event()
        with trio.move_on_after(timeout_s):
            await event.wait()


class Fence:
    """The token the session's fenced store view checks (None: not holding, unchecked)."""

    token: int | None = None


class TurnLease:
    """One session's side of its project's lease.

    Args:
        project_id: the project.
        store: the shared store (unfenced).
        settings: replica id and lease time.
        notifier: the process's notification fan-out.
    """

    def __init__(
        self, project_id: str, store: Store, settings: LeaseSettings, notifier: Notifier
    ) -> None:
        self._project_id = project_id
        self._store = store
        self._settings = settings
        self._notifier = notifier
        self.fence = Fence()
        #: Every token this session held (its own relayed events are not relayed back).
        self.tokens: set[int] = set()
        self.lost = False

    @property
    def holding(self) -> bool:
        """This session holds the lease (and has not found it lost)."""
        return self.fence.token is not None and not self.lost

    @property
    def settings(self) -> LeaseSettings:
        """Replica id, lease time, auto-retry."""
        return self._settings

    async def acquire(self) -> int:
        """Wait until this session holds the lease (at once if it does); returns the token."""
        while True:
            token = self.fence.token if self.holding else await self.try_acquire()
            if token is not None:
                return token
            await self._notifier.wait("lease", self._project_id, self._settings.ttl_s / 3)

    async def try_acquire(self) -> int | None:
        """One attempt at the lease: the token, or None (held by another replica, or the
        store failed: logged)."""
        try:
            with trio.fail_after(LEASE_CALL_S):
                # One process on its own store: a lease held by someone else is a dead
                # predecessor's (a restart), never a live replica's.
                token = await self._store.acquire_lease(
                    self._project_id, self._settings.replica_id, self._settings.ttl_s,
                    steal=not self._store.shared,
                )  # fmt: skip
        except Exception as exc:
            log.warning("could not ask for the lease of %s: %s", self._project_id, exc)
            return None
        if token is not None:
            self.fence.token = token
            self.tokens.add(token)
            self.lost = False
            log.info("holding the turn lease of %s (token %d)", self._project_id, token)
        return token

    async def heartbeat(self, on_lost: Callable[[], Any]) -> None:
        """Renew the lease every third of its time until cancelled; calls ``on_lost`` (and
        returns) when the lease has moved on or could not be renewed before it expired."""
        ttl = self._settings.ttl_s
        token = self.fence.token
        assert token is not None
        deadline = trio.current_time() + ttl
        while True:
            await trio.sleep(ttl / 3)
            try:
                with trio.fail_after(min(LEASE_CALL_S, ttl / 3)):
                    ok = await self._store.renew_lease(self._project_id, token, ttl)
            except Exception as exc:
                log.warning("could not renew the lease of %s: %s", self._project_id, exc)
                ok = trio.current_time() < deadline  # a hiccup, as long as it still counts
            else:
                if ok:
                    deadline = trio.current_time() + ttl
            if not ok:
                log.warning("lost the turn lease of %s (token %d)", self._project_id, token)
                self.lost = True
                on_lost()
                return

    async def release(self) -> None:
        """Give the lease up (shielded, bounded); the fence stops checking."""
        token, self.fence.token = self.fence.token, None
        if token is None or self.lost:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(LEASE_CALL_S):
            try:
                await self._store.release_lease(self._project_id, token)
            except Exception as exc:
                log.warning("could not release the lease of %s: %s", self._project_id, exc)
