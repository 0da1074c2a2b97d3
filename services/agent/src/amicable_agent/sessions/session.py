"""A session: one per session id (== project id), owning its sandbox, its turns and its
idle timer.

Sockets *attach* to a session through an :class:`~.attachment.Attachment`; the session
broadcasts to all of them and drops one whose queue is full, so a slow socket never blocks a
turn. A turn belongs to the session, not to a socket: a reload re-attaches to the running
turn. The parts: :class:`~.sandbox.SessionSandbox` (provisioning, runtime client, keep-alive)
and :class:`~.jobs.TurnQueue` (turns one at a time, then checkpoint and GitLab sync).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol.limits import fit_history
from amicable_protocol.messages import (
    InitData,
    InitReply,
    MessageType,
    PermissionMode,
    ProjectInfo,
    ServerData,
    ServerMessage,
    ThinkingLevel,
)

from amicable_agent.errors import AgentError, SandboxProvisionError, TurnRunning

from .attachment import Attachment, Outgoing
from .init_fields import project_fields
from .jobs import TurnQueue
from .lease import TurnLease
from .relay import TurnRelay
from .sandbox import SessionSandbox
from .transcript import load_turn_page

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from amicable_agent.browser import PreviewCamera
    from amicable_agent.db import AppDbTools
    from amicable_agent.loop.api import RuntimeClient
    from amicable_agent.sandboxes import SandboxHandle
    from amicable_agent.store import Project, Store

    from .deps import SessionDeps

log = logging.getLogger(__name__)


class Session:
    """One editing session (== project id). Implements :class:`~amicable_agent.loop.api.SessionHost`.

    Created and run by :class:`~.manager.SessionManager`; don't construct directly.

    Cancellation: closing the session (idle timeout, project deletion, manager exit) cancels
    provisioning and the running turn; the runtime client is closed; attached sockets are
    dropped.
    """

    def __init__(
        self, session_id: str, deps: SessionDeps, *, started_by: str | None = None
    ) -> None:
        self._session_id = session_id
        #: The user whose ``init`` started the session (counts against their sandbox limit).
        self.started_by = started_by
        self._deps = deps
        self._attachments: set[Attachment] = set()
        self._changed = trio.Event()
        self._closed = trio.Event()
        self._permission_mode: PermissionMode = "default"
        self._thinking_level: ThinkingLevel = "none"
        self._cancel_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._init_replies = 0
        #: When a socket came or went or a turn changed state (least recently used first).
        self.last_used = trio.current_time()
        self._draining = False
        self._sandbox = SessionSandbox(session_id, deps, self.send)
        self._lease: TurnLease | None = None
        self._relay: TurnRelay | None = None
        self._store: Store = deps.store
        if deps.leases is not None:
            self._lease = TurnLease(session_id, deps.store, deps.leases, deps.notifier)
            self._store = deps.store.fenced(session_id, self._lease.fence)
            deps.store.register_fence(session_id, self._lease.fence)
        self._jobs = TurnQueue(self, deps, self._sandbox, self._poke, self.broadcast, self._store)
        if self._lease is not None:
            self._relay = TurnRelay(
                session_id, deps.store, self._store, self._lease, deps.notifier,
                self._deliver, self._take_request,
            )  # fmt: skip
            self._jobs.relay = self._relay

    # --- SessionHost ------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        """The session id (== project id == app id)."""
        return self._session_id

    @property
    def project(self) -> ProjectInfo:
        """The project's public info (after provisioning)."""
        if self._sandbox.project is None:
            raise AgentError("session is not ready")
        return self._sandbox.project.info()

    @property
    def permission_mode(self) -> PermissionMode:
        """The mode set by the last ``init``."""
        return self._permission_mode

    @property
    def thinking_level(self) -> ThinkingLevel:
        """The thinking level set by the last ``init``."""
        return self._thinking_level

    @property
    def runtime(self) -> RuntimeClient:
        """The sandbox runtime client (after provisioning)."""
        if self._sandbox.runtime is None:
            raise AgentError("session is not ready")
        return self._sandbox.runtime

    @property
    def store(self) -> Store:
        """The conversation store (fenced by the turn lease: a write after another replica
        took the project over is refused)."""
        return self._store

    @property
    def holds_lease(self) -> bool:
        """This session runs the project's turns (always, without leases)."""
        return self._lease is None or self._lease.holding

    @property
    def app_db(self) -> AppDbTools | None:
        """The model's DB tools when the app's database was prepared at INIT, else None."""
        return self._sandbox.app_db

    @property
    def preview(self) -> PreviewCamera | None:
        """The agent's browser pointed at this session's preview, or None without one."""
        browser = self._deps.browser
        if browser is None or self._sandbox.project is None:
            return None
        return browser.camera(self._sandbox.project.slug)

    @property
    def handle(self) -> SandboxHandle | None:
        """The sandbox handle once provisioned."""
        return self._sandbox.handle

    @property
    def closed(self) -> bool:
        """The session has ended (a new ``init`` starts a fresh one)."""
        return self._closed.is_set()

    @property
    def turn_running(self) -> bool:
        """A turn is running or queued."""
        return self._jobs.running

    @property
    def attachment_count(self) -> int:
        """How many sockets are attached."""
        return len(self._attachments)

    async def send(self, type: MessageType, data: ServerData, *, msg_id: str | None = None) -> None:
        """Broadcast to every attached socket; never blocks (slow sockets are dropped)."""
        self.broadcast(type, data, msg_id=msg_id)
        await trio.lowlevel.checkpoint()

    def broadcast(self, type: MessageType, data: ServerData, *, msg_id: str | None = None) -> None:
        """Synchronous :meth:`send`."""
        observer = self._jobs.observer
        if observer is not None:
            observer.observe(type, data)
        transcript = self._jobs.transcript
        if transcript is not None and type is MessageType.UPDATE_IN_PROGRESS:
            self._jobs.announce()  # an auto-heal turn really starts: its prompt goes first
        message = self.message(type, data, msg_id=msg_id)
        if transcript is not None:
            transcript.observe(message)
        if self._relay is not None:
            self._relay.offer(message)
        self._deliver(message)

    def _deliver(self, message: ServerMessage) -> None:
        """Send to this replica's sockets only (a relayed event, or a broadcast)."""
        out = Outgoing(message)
        for attachment in list(self._attachments):
            if not attachment.send_nowait(out):
                self.detach(attachment)

    def message(
        self, type: MessageType, data: ServerData, *, msg_id: str | None = None
    ) -> ServerMessage:
        """A server envelope of this session."""
        if msg_id is None:
            return ServerMessage(type=type, data=data, session_id=self._session_id)
        return ServerMessage(type=type, data=data, session_id=self._session_id, id=msg_id)

    # --- attachments ------------------------------------------------------------------

    def attach(self, attachment: Attachment) -> None:
        """Attach a socket: it receives every later broadcast."""
        self._attachments.add(attachment)
        self._poke()

    def detach(self, attachment: Attachment) -> None:
        """Detach a socket (closed by the client, or dropped as slow)."""
        self._attachments.discard(attachment)
        self._poke()

    def _poke(self) -> None:
        self.last_used = trio.current_time()
        self._changed.set()
        self._changed = trio.Event()

    def _busy(self) -> bool:
        return bool(self._attachments) or self.turn_running

    # --- lifecycle --------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Provision, then serve turns until idle or closed.

        Cancellation: everything the session owns is cancelled; the runtime client closes.
        """
        try:
            async with AsyncExitStack() as stack:
                with self._cancel_scope:
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        task_status.started()
                        # The checkpoint baseline (the state the session opened with) is
                        # not part of provisioning: the turn worker makes it first thing, in
                        # the background, so "ready" and the preview do not wait for git (see
                        # TurnQueue.serve; under the lease, when taking it).
                        if not await self._sandbox.provision(stack):
                            self.close()
                            return
                        if self._lease is None and self._deps.git_sync is None:
                            self._jobs.expect_baseline()
                        nursery.start_soon(self._idle_watch)
                        if self._lease is None or self._relay is None:
                            nursery.start_soon(self._jobs.serve)
                            nursery.start_soon(self._jobs.serve_checkpoints)
                        else:
                            nursery.start_soon(self._relay.follow)
                            nursery.start_soon(
                                serve_while_held, self._lease, self._relay, self._jobs, self._poke
                            )
                        nursery.start_soon(self._sandbox.keep_alive, self._busy)
                        nursery.start_soon(self._supervise, stack)
        finally:
            if self._lease is not None:
                self._deps.store.unregister_fence(self._session_id, self._lease.fence)
            self._closed.set()
            self._sandbox.set_ready()
            if self._sandbox.failed is None:
                # After a failed provisioning each socket's INIT answers the failure and
                # closes the socket itself; dropping them here could beat that answer.
                for attachment in list(self._attachments):
                    attachment.drop()
            self._attachments.clear()

    def close(self) -> None:
        """Close the session now (sync; the session's task finishes shortly)."""
        self._cancel_scope.cancel()

    def _take_request(self, kind: MessageType, data: Any, by: str | None) -> None:
        """A frame another replica queued for this holder."""
        if kind is MessageType.CANCEL:
            self._jobs.cancel()
        else:
            self._jobs.submit(kind, data, None, by=by)

    async def drain(self, deadline: float) -> None:
        """Stop taking turns here (frames go to the store for the next holder), let the
        running one finish until ``deadline``, then close (releasing the lease)."""
        self._draining = True
        if self._relay is not None:
            self._relay.paused = True
        with trio.move_on_at(deadline):
            while self._jobs.running or self._jobs.checkpoint_busy:
                with trio.move_on_after(0.2):
                    await self._changed.wait()
        self.close()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the session has ended."""
        await self._closed.wait()

    async def wait_ready(self) -> None:
        """Wait until provisioning finished (successfully or not)."""
        await self._sandbox.wait_ready()

    async def _supervise(self, stack: AsyncExitStack) -> None:
        await self._sandbox.supervise(stack, self._busy)
        self.close()  # its sandbox died unused, or could not be restarted

    async def _idle_watch(self) -> None:
        while True:
            changed = self._changed
            if self._busy():
                await changed.wait()
                continue
            with trio.move_on_after(self._deps.idle_timeout_s):
                await changed.wait()
                continue
            log.info("session %s idle, closing", self._session_id)
            self.close()
            return

    # --- client messages ----------------------------------------------------------------

    async def init_reply(self, data: InitData, *, may_edit: bool = True) -> InitReply:
        """Apply ``init`` controls and build the INIT answer (waits for provisioning).

        ``may_edit``: the caller may change the project, so the model ``init`` names (the
        editor's picker) becomes the project's model.

        Raises:
            SandboxProvisionError: provisioning failed (the session is closing).
        """
        if data.permission_mode is not None:
            self._permission_mode = data.permission_mode
        if data.thinking_level is not None:
            self._thinking_level = data.thinking_level
        await self.wait_ready()
        sandbox = self._sandbox
        handle, project = sandbox.handle, sandbox.project
        if sandbox.failed is not None or handle is None or project is None:
            raise SandboxProvisionError(sandbox.failed or "the session closed")
        await self._deps.backend.touch(handle.sandbox_id)
        info, extra, history, pending = await project_fields(
            self, self._deps, sandbox, project, data.model if may_edit else None
        )
        page = await load_turn_page(self._deps.store, self._session_id)
        # Only the very first INIT of a fresh sandbox says "new": a reload must not make the
        # editor send the creation prompt again.
        exists = handle.existed or self._init_replies > 0
        self._init_replies += 1
        # No await from here on: the running turn's events and the queue are those of the
        # moment the reply is sent (later broadcasts reach the socket after it).
        turns = self._jobs.with_last(page.turns)
        return InitReply(
            url=self._deps.preview_url(project.slug),
            sandbox_id=handle.sandbox_id,
            exists=exists,
            app_id=self._session_id,
            template_id=project.template_id,
            project=info,
            conversation_history=fit_history(history[-20:]),
            permission_mode=self._permission_mode,
            thinking_level=self._thinking_level,
            hitl_pending=pending,
            # Absent when empty: an agent's INIT with nothing to show keeps its old shape.
            turns=turns or None,
            turns_before=page.before,
            running_turn=self._jobs.running_record(),
            queued=self._jobs.queued_prompts() or None,
            **extra,
        )

    def refresh_project(self, project: Project) -> None:
        """Take a renamed project row (the sandbox id stays)."""
        self._sandbox.project = project

    def turns_by(self, sub: str) -> int:
        """Turns running or queued here that ``sub`` asked for."""
        return self._jobs.count_by(sub)

    def submit(
        self,
        kind: MessageType,
        data: Any,
        origin: Attachment | None,
        *,
        by: str | None = None,
        msg_id: str | None = None,
    ) -> None:
        """Route a turn-related client message (``user``, ``hitl_response``,
        ``runtime_error``, ``cancel``, ``dequeue``). Never blocks. ``msg_id``: the frame's
        ``id`` (the turn's id, see :meth:`~.jobs.TurnQueue.submit`)."""
        handle = self._sandbox.handle
        if handle is not None and self._nursery is not None:
            # Activity keeps the sandbox's idle TTL fresh; touch must not block the caller.
            self._nursery.start_soon(self._deps.backend.touch, handle.sandbox_id)
        relay = self._relay
        if (
            relay is not None
            and (not self.holds_lease or self._draining)
            and self._deps.engine is not None
            and self._nursery is not None
        ):
            self._nursery.start_soon(relay.forward, kind, data, by)
            return
        if kind is MessageType.CANCEL:
            self._jobs.cancel()
            return
        if kind is MessageType.DEQUEUE:
            self._jobs.dequeue(data.id)
            return
        self._jobs.submit(kind, data, origin, by=by, msg_id=msg_id)

    def snapshot_soon(self) -> None:
        """Copy the project's new commits out of the sandbox in the background (called
        after a checkpoint restore, which records a checkpoint of its own)."""
        self._jobs.snapshot_soon()

    async def baseline_made(self) -> None:
        """Wait while the checkpoint baseline is being made (bounded; see
        :meth:`~.jobs.TurnQueue.baseline_made`)."""
        await self._jobs.baseline_made()

    @asynccontextmanager
    async def hold_turns(self, wait_s: float) -> AsyncIterator[None]:
        """Keep turns from starting for the duration of the block (a restore); see
        :meth:`~.jobs.TurnQueue.hold`.

        Raises:
            TurnRunning: a turn is running or queued, or did not finish within ``wait_s``.
        """
        if not self.holds_lease:
            raise TurnRunning("another agent replica runs this project's turns")
        async with self._jobs.hold(wait_s):
            yield


async def serve_while_held(
    lease: TurnLease, relay: TurnRelay, jobs: TurnQueue, released: Callable[[], None]
) -> None:
    """Run the project's turns whenever this session holds ``lease``: take it, catch up on a
    turn a dead holder left, serve the queue and the requests of other replicas; when the
    lease is lost, stop all of it, call ``released()`` and wait to take it again."""
    while True:
        await lease.acquire()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lease.heartbeat, nursery.cancel_scope.cancel)
                nursery.start_soon(relay.publish)
                await jobs.take_over()
                nursery.start_soon(jobs.serve)
                nursery.start_soon(jobs.serve_checkpoints)
                nursery.start_soon(relay.pump)
        finally:
            await lease.release()
            released()
