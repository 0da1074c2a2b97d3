"""The session manager: every live session, in one nursery, keyed by session id."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

import trio

from .session import Session

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from amicable_agent.loop.api import RuntimeClient
    from amicable_agent.store import Project

    from .attachment import Attachment
    from .deps import SessionDeps

log = logging.getLogger(__name__)


class SessionManager:
    """Owns every session in one nursery. Create with :func:`open_session_manager`."""

    def __init__(self, deps: SessionDeps, nursery: trio.Nursery) -> None:
        self._deps = deps
        self._nursery = nursery
        self._sessions: dict[str, Session] = {}

    @property
    def deps(self) -> SessionDeps:
        """The dependencies sessions are built with."""
        return self._deps

    def get(self, session_id: str) -> Session | None:
        """The live session of ``session_id``, if any."""
        session = self._sessions.get(session_id)
        return session if session is not None and not session.closed else None

    async def attach(self, session_id: str, attachment: Attachment) -> Session:
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
            session = Session(session_id, self._deps)
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
        """A runtime client for a project's sandbox (for the file API), provisioning it if
        needed. Returned as a context manager the caller closes."""
        session = self.get(project.project_id)
        handle = session.handle if session is not None else None
        if handle is None:
            with trio.fail_after(self._deps.provision_timeout_s):
                handle = await self._deps.backend.ensure(
                    project.project_id,
                    project_id=project.project_id,
                    template_id=project.template_id,
                )
        else:
            await self._deps.backend.touch(handle.sandbox_id)
        return self._deps.runtime_factory(handle)

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
            yield None
            return
        async with session.hold_turns(wait_s):
            yield session

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
