"""The session manager: every live session, in one nursery, keyed by session id."""

from __future__ import annotations

import logging
import time
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

import trio

from amicable_agent.auth.access import QuotaExceeded
from amicable_agent.errors import RuntimeClientError, TurnRunning

from .sandbox import restore_snapshot
from .session import Session

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from amicable_agent.loop.api import RuntimeClient
    from amicable_agent.sandboxes import SandboxHandle
    from amicable_agent.store import Project

    from .attachment import Attachment
    from .deps import SessionDeps

log = logging.getLogger(__name__)

#: How long the file API's check that a sandbox's runtime answers may take.
PROBE_S = 5.0


class SessionManager:
    """Owns every session in one nursery. Create with :func:`open_session_manager`."""

    def __init__(self, deps: SessionDeps, nursery: trio.Nursery) -> None:
        self._deps = deps
        self._nursery = nursery
        self._sessions: dict[str, Session] = {}
        #: SIGTERM arrived: readiness fails, running turns finish, then leases go.
        self.draining = False

    @property
    def deps(self) -> SessionDeps:
        """The dependencies sessions are built with."""
        return self._deps

    def get(self, session_id: str) -> Session | None:
        """The live session of ``session_id``, if any."""
        session = self._sessions.get(session_id)
        return session if session is not None and not session.closed else None

    async def attach(
        self, session_id: str, attachment: Attachment, *, started_by: str | None = None
    ) -> Session:
        """Attach a socket to the session (creating and starting it if needed).

        A live session whose sandbox has gone (crashed, stopped as idle) is closed and
        started again, which brings the sandbox back from its workspace.
        """
        session = self.get(session_id)
        handle = session.handle if session is not None else None
        if (
            session is not None
            and handle is not None
            and await self._deps.backend.lookup(handle.sandbox_id) is None
        ):
            log.info("sandbox of session %s is gone; restarting the session", session_id)
            session.close()
            await session.wait_closed()
            session = None
        if session is None:
            session = Session(session_id, self._deps, started_by=started_by)
            self._sessions[session_id] = session
            session.attach(attachment)
            await self._nursery.start(self._run_session, session)
        else:
            session.attach(attachment)
        return session

    async def _run_session(
        self, session: Session, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await session.run(task_status=task_status)
        except Exception:
            # One broken session (e.g. a database error) must not take down the others.
            log.exception("session %s failed", session.session_id)
        finally:
            if self._sessions.get(session.session_id) is session:
                del self._sessions[session.session_id]

    async def ensure_runtime(self, project: Project) -> AbstractAsyncContextManager[RuntimeClient]:
        """A runtime client for a project's sandbox (for the file API), provisioning it (and
        restoring its snapshot) if needed. Returned as a context manager the caller closes.
        Never a client of a runtime known to be dead: where the backend can tell when a
        sandbox stopped, a runtime that does not answer is waited out and started again.

        Raises:
            SandboxProvisionError: the sandbox could not be started or restored.
        """
        handle = await self._handle(project)
        if not await self._answers(handle):
            handle = await self._handle(project)  # started again
        return self._deps.runtime_factory(handle)

    async def _handle(self, project: Project) -> SandboxHandle:
        session = self.get(project.project_id)
        handle = session.handle if session is not None else None
        if handle is not None and await self._deps.backend.lookup(handle.sandbox_id) is None:
            handle = None  # died: its session restarts it, or ensure below does
        if handle is None:
            return await self._ensure_restored(project)
        await self._deps.backend.touch(handle.sandbox_id)
        if session is not None:
            # a file written, or the history read, right after INIT sees the baseline made
            await session.baseline_made()
        return handle

    async def _ensure_restored(self, project: Project) -> SandboxHandle:
        with trio.fail_after(self._deps.provision_timeout_s):
            handle = await self._deps.backend.ensure(
                project.project_id, project_id=project.project_id, template_id=project.template_id
            )
        if self._deps.snapshots is not None:
            # Without a session nobody restored this sandbox: a file written into a
            # re-created one before its restore would be cleaned away by it.
            async with self._deps.runtime_factory(handle) as runtime:
                await restore_snapshot(self._deps, project.project_id, runtime)
        return handle

    async def _answers(self, handle: SandboxHandle) -> bool:
        """False when the backend can tell when a sandbox stopped and this one's runtime
        does not answer (it died an instant ago): then wait until the backend saw it stop."""
        wait_stopped = getattr(self._deps.backend, "wait_stopped", None)
        if wait_stopped is None:
            return True
        try:
            with trio.fail_after(PROBE_S):
                async with self._deps.runtime_factory(handle) as runtime:
                    await runtime.preview_status()
        except RuntimeClientError as exc:
            if exc.status != 0:
                return True  # it answered
        except trio.TooSlowError:
            pass
        else:
            return True
        with trio.move_on_after(PROBE_S):
            await wait_stopped(handle.sandbox_id)
        return False

    def turn_running(self, session_id: str) -> bool:
        """Whether the live session of ``session_id`` has a turn running or queued."""
        session = self.get(session_id)
        return session is not None and session.turn_running

    @asynccontextmanager
    async def hold_turns(self, session_id: str, *, wait_s: float) -> AsyncIterator[Session | None]:
        """Keep the session's turns from starting during the block (see
        :meth:`Session.hold_turns`); yields the live session, or None when there is none
        (then no turn can run).

        Raises:
            TurnRunning: a turn is running or queued.
        """
        session = self.get(session_id)
        if session is None:
            await self._check_lease_free(session_id)
            yield None
            return
        async with session.hold_turns(wait_s):
            yield session

    async def _check_lease_free(self, session_id: str) -> None:
        """Without a session here, a live lease means another replica runs this project's
        turns: a restore must not run under them.

        Raises:
            TurnRunning: another replica holds the project's lease.
        """
        leases = self._deps.leases
        if leases is None:
            return
        lease = await self._deps.store.lease_of(session_id)
        if (
            lease is not None
            and lease[0] not in (None, leases.replica_id)
            and lease[2] > time.time()
        ):
            raise TurnRunning("another agent replica runs this project's turns")

    async def check_sandbox_limits(self, sub: str, *, per_user: int, total: int) -> None:
        """Make room for one more session (and so one more running sandbox) or refuse:
        ``sub`` may have ``per_user`` of them and ``total`` may run in all (0 = no limit).
        At ``total``, the least recently used idle session (no socket attached, no turn
        running or queued) is closed and its sandbox stopped first.

        Raises:
            QuotaExceeded: a limit is reached (and, for ``total``, nothing is idle).
        """
        live = [s for s in self._sessions.values() if not s.closed]
        if per_user and sum(1 for s in live if s.started_by == sub) >= per_user:
            raise QuotaExceeded(
                f"you have {per_user} projects open, the most allowed at once; close one first"
            )
        if total and len(live) >= total:
            idle = [s for s in live if s.attachment_count == 0 and not s.turn_running]
            if not idle:
                raise QuotaExceeded(
                    f"{total} projects are open on this server, the most it runs at once; "
                    "try again when someone closes one"
                )
            await self._stop_idle(min(idle, key=lambda s: s.last_used))

    async def _stop_idle(self, session: Session) -> None:
        handle = session.handle
        log.info("at the sandbox cap: stopping the least recently used idle session %s",
                 session.session_id)  # fmt: skip
        session.close()
        await session.wait_closed()
        stop = getattr(self._deps.backend, "stop", None)
        if handle is not None and stop is not None:
            await stop(handle.sandbox_id)

    def turns_by(self, sub: str) -> int:
        """Turns running or queued that ``sub`` asked for, in every session."""
        return sum(s.turns_by(sub) for s in self._sessions.values() if not s.closed)

    async def drain(self, grace_s: float) -> None:
        """Graceful shutdown: stop taking turns, let running ones finish within
        ``grace_s``, then close every session (each hands its lease over)."""
        self.draining = True
        deadline = trio.current_time() + grace_s
        async with trio.open_nursery() as nursery:
            for session in list(self._sessions.values()):
                nursery.start_soon(session.drain, deadline)

    def close_session(self, session_id: str) -> None:
        """Close a session if it is live (project deleted)."""
        session = self.get(session_id)
        if session is not None:
            session.close()

    def statistics(self) -> dict[str, int]:
        """Counts for ``/healthz`` and tests."""
        live = [s for s in self._sessions.values() if not s.closed]
        return {
            "sessions": len(live),
            "sockets": sum(s.attachment_count for s in live),
            "turns": sum(1 for s in live if s.turn_running),
            "leases": sum(1 for s in live if s.holds_lease),
            "refused_writes": self._deps.store.refused_writes
            if self._deps.leases is not None
            else 0,
        }


@asynccontextmanager
async def open_session_manager(deps: SessionDeps) -> AsyncIterator[SessionManager]:
    """Run a :class:`SessionManager` for the duration of the block.

    Cancellation: leaving the block closes every session (turns cancelled, sockets dropped).
    """
    async with trio.open_nursery() as nursery:
        manager = SessionManager(deps, nursery)
        try:
            yield manager
        finally:
            nursery.cancel_scope.cancel()
