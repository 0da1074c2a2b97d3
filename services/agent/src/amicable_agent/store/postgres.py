"""PostgreSQL implementation of :class:`amicable_agent.store.base.Store` (a store several agent
replicas can share; the queries are in ``sql_store``).

The one module that uses :mod:`psycopg`. Calls run in worker threads
(``trio.to_thread.run_sync``) on a small pool of connections; the limiter's slot count is the
pool size, so a connection is never used by two threads at once. Each call is one
transaction (``with conn.transaction()``); a conflicting slug is retried inside a savepoint.

Connections that sat idle longer than ``ping_after_s`` are checked with ``SELECT 1`` before
use and replaced when the server dropped them (a database restart or failover), so the first
call after an outage succeeds instead of failing on a dead socket. A failure in the middle of
a call is not retried (a write may or may not have committed): it raises
:class:`~amicable_agent.errors.StoreUnavailable` and the connection is discarded.

Schema changes are the same numbered migrations as the SQLite store, in PostgreSQL's
dialect, applied under a transaction-scoped advisory lock so replicas starting at the same
time do not race.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import trio
from psycopg.conninfo import make_conninfo

from amicable_agent.errors import StoreUnavailable

from .leases import CHANNEL, RECONNECTED
from .sql import SqlStore, render_migrations

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Arbitrary constant naming the migration lock (``pg_advisory_xact_lock``).
MIGRATION_LOCK_ID = 0x616D6963  # "amic"
#: Connections idle longer than this are pinged before use.
PING_AFTER_S = 30.0
#: Connect timeout per attempt.
CONNECT_TIMEOUT_S = 10
#: ``application_name`` of the ``LISTEN`` connection (to find it in ``pg_stat_activity``).
LISTEN_APPLICATION = "amicable-listen"

MIGRATIONS = render_migrations(
    serial_pk="BIGSERIAL PRIMARY KEY", real="DOUBLE PRECISION", blob="BYTEA"
)


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Apply the pending migrations (serialised across processes); returns the version."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = int(row[0] or 0) if row else 0
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            conn.execute(script)  # several statements: allowed without parameters
            conn.execute("INSERT INTO schema_version VALUES (%s)", (number,))
            current = number
    return current


class _Pool:
    """A fixed set of lazily opened connections, handed out to one worker thread at a time."""

    def __init__(self, conninfo: str, size: int, ping_after_s: float) -> None:
        self.conninfo = conninfo
        self.ping_after_s = ping_after_s
        self.limiter = trio.CapacityLimiter(size)
        self._lock = threading.Lock()  # worker threads share the lists below
        #: idle connections with the time each was last used (monotonic)
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []
        self._all: set[psycopg.Connection[Any]] = set()
        #: when a connection last failed: idle ones older than that are suspect (the server
        #: may have restarted under all of them)
        self._failed_at = float("-inf")

    def connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        with self._lock:
            self._all.add(conn)
        return conn

    def _pop_idle(self) -> tuple[psycopg.Connection[Any], float] | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def take(self) -> psycopg.Connection[Any]:
        """An open connection (worker thread; the limiter guarantees one is free or new)."""
        while (idle := self._pop_idle()) is not None:
            conn, last_used = idle
            if conn.closed:
                self.discard(conn)
                continue
            if last_used <= self._failed_at or time.monotonic() - last_used >= self.ping_after_s:
                try:
                    conn.execute("SELECT 1")
                except psycopg.Error:
                    self.discard(conn, failed=True)
                    continue
            return conn
        return self.connect()

    def give_back(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            self.discard(conn, failed=True)
        else:
            with self._lock:
                self._idle.append((conn, time.monotonic()))

    def discard(self, conn: psycopg.Connection[Any], *, failed: bool = False) -> None:
        with self._lock:
            self._all.discard(conn)
            if failed:
                self._failed_at = time.monotonic()
        with contextlib.suppress(psycopg.Error):  # closing a dead socket
            conn.close()

    def close_all(self) -> None:
        with self._lock:
            conns, self._idle = list(self._all), []
        for conn in conns:
            self.discard(conn)


class PostgresStore(SqlStore):
    """The PostgreSQL store. Create with :func:`open_postgres_store`."""

    percent_placeholders = True
    lock_clause = " FOR UPDATE"
    #: Seconds before a dropped ``LISTEN`` connection is reopened.
    listen_retry_s = 1.0

    def __init__(self, pool: _Pool) -> None:
        super().__init__()
        self._pool = pool

    @property
    def shared(self) -> bool:
        return True

    def _notify(self, conn: Any, what: str, project_id: str) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{what}:{project_id}"))

    async def listen(
        self,
        on_notify: Callable[[str], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """``LISTEN`` on :data:`CHANNEL` on a connection of its own (a worker thread waits
        for notifications; ``application_name`` :data:`LISTEN_APPLICATION`) and call
        ``on_notify(payload)`` in Trio for each, until cancelled.

        A dropped connection (a PostgreSQL restart, a failover, a terminated backend) is
        logged and reopened after :attr:`listen_retry_s`; notifications sent meanwhile are
        lost, so once listening again it delivers :data:`RECONNECTED`, which wakes every
        waiter: relayed events are then read from ``turn_events`` after the last id each
        session saw, queued requests are taken and released leases are tried."""
        stop = threading.Event()
        token = trio.lowlevel.current_trio_token()
        conninfo = make_conninfo(self._pool.conninfo, application_name=LISTEN_APPLICATION)

        def deliver(payload: str) -> None:
            trio.from_thread.run_sync(on_notify, payload, trio_token=token)

        def loop(ready: Callable[[], None]) -> None:
            dropped: float | None = None
            while not stop.is_set():
                try:
                    with psycopg.connect(
                        conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                    ) as conn:
                        conn.execute(f"LISTEN {CHANNEL}")
                        ready()
                        if dropped is not None:
                            log.info(
                                "listening to PostgreSQL again after %.1fs; waking every "
                                "session to catch up on what it missed",
                                time.monotonic() - dropped,
                            )
                            dropped = None
                            deliver(RECONNECTED)
                        while not stop.is_set():
                            for note in conn.notifies(timeout=0.25, stop_after=64):
                                deliver(note.payload)
                except trio.RunFinishedError:
                    return
                except psycopg.Error as exc:
                    if stop.is_set():
                        return
                    # The first failure of an outage is a warning, the retries are debug.
                    level, dropped = (
                        (logging.WARNING, time.monotonic())
                        if dropped is None
                        else (logging.DEBUG, dropped)
                    )
                    log.log(
                        level,
                        "the LISTEN connection to PostgreSQL failed (%s); reconnecting every "
                        "%.1fs (relayed events stay in turn_events and are read on reconnect)",
                        str(exc).strip() or type(exc).__name__, self.listen_retry_s,
                    )  # fmt: skip
                    stop.wait(self.listen_retry_s)

        started = trio.Event()

        def ready() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(started.set, trio_token=token)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    partial(trio.to_thread.run_sync, loop, ready, abandon_on_cancel=True)
                )
                with trio.fail_after(CONNECT_TIMEOUT_S + 5):
                    await started.wait()
                task_status.started()
        finally:
            stop.set()

    async def _run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        pool = self._pool
        fn = self._guarded(fn)

        def call() -> T:
            try:
                conn = pool.take()
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"cannot reach the PostgreSQL store: {exc}") from exc
            try:
                with conn.transaction():
                    result = fn(conn)
            except psycopg.OperationalError as exc:
                pool.discard(conn, failed=True)
                raise StoreUnavailable(f"the PostgreSQL store failed mid-call: {exc}") from exc
            except BaseException:
                pool.give_back(conn)
                raise
            pool.give_back(conn)
            return result

        return await trio.to_thread.run_sync(call, limiter=pool.limiter)

    def _insert_slug(
        self, conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]
    ) -> psycopg.Cursor[Any] | None:
        try:
            with conn.transaction():  # a savepoint: a taken slug rolls back only this
                return conn.execute(query, params)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != "projects_live_slug":
                raise ValueError("the project already exists") from exc
            return None

    async def aclose(self) -> None:
        pool = self._pool
        # every slot taken, so no call is using a connection while they close
        held: list[object] = []
        try:
            for _ in range(int(pool.limiter.total_tokens)):
                slot = object()
                await pool.limiter.acquire_on_behalf_of(slot)
                held.append(slot)
            await trio.to_thread.run_sync(pool.close_all)
        finally:
            for slot in held:
                pool.limiter.release_on_behalf_of(slot)


@asynccontextmanager
async def open_postgres_store(
    url: str, *, pool_size: int = 4, ping_after_s: float = PING_AFTER_S
) -> AsyncIterator[PostgresStore]:
    """Connect to ``url`` (a libpq URL or DSN), migrate, and yield the store.

    Raises:
        StoreUnavailable: the server cannot be reached or the migration failed.

    Cancellation: closing is shielded so connections are always released.
    """
    pool = _Pool(url, pool_size, ping_after_s)

    def first() -> None:
        conn = pool.connect()
        try:
            migrate(conn)
        finally:
            pool.give_back(conn)

    try:
        await trio.to_thread.run_sync(first)
    except psycopg.Error as exc:
        await trio.to_thread.run_sync(pool.close_all)
        raise StoreUnavailable(f"cannot open the PostgreSQL store: {exc}") from exc
    store = PostgresStore(pool)
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
