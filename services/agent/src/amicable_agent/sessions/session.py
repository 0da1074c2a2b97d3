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

import attrs
import trio
from amicable_protocol.limits import INIT_PROMPT_CHARS, clip_text, fit_history
from amicable_protocol.messages import (
    InitData,
    InitReply,
    MessageType,
    PermissionMode,
    ProjectInfo,
    ServerData,
    ServerMessage,
    ThinkingLevel,
    TurnRecord,
)

from amicable_agent.errors import AgentError, SandboxProvisionError

from .attachment import Attachment, Outgoing
from .jobs import TurnQueue
from .sandbox import SessionSandbox
from .transcript import load_turn_page

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

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
        self._sandbox = SessionSandbox(session_id, deps, self.send)
        self._jobs = TurnQueue(self, deps, self._sandbox, self._poke, self.broadcast)

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
        """The conversation store."""
        return self._deps.store

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
                        # The checkpoint baseline is the state the session opened with; made
                        # while provisioning (beside the database) so the first prompt does
                        # not wait for git. With GitLab sync it follows the restore from
                        # GitLab (turn worker).
                        prepare = (
                            self._jobs.prepare_checkpoints if self._deps.git_sync is None else None
                        )
                        if not await self._sandbox.provision(stack, prepare=prepare):
                            self.close()
                            return
                        nursery.start_soon(self._idle_watch)
                        nursery.start_soon(self._jobs.serve)
                        nursery.start_soon(self._jobs.serve_checkpoints)
                        nursery.start_soon(self._sandbox.keep_alive, self._busy)
                        nursery.start_soon(self._supervise, stack)
        finally:
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
        engine = self._deps.engine
        extra: dict[str, Any] = sandbox.db_info.init_fields() if sandbox.db_info else {}
        if engine is not None:
            history = await engine.history(self)
            pending = await engine.hitl_pending(self)
            choices = engine.model_choices()
            if choices:  # an engine without models (tests) leaves the extension out
                extra["models"] = choices
                extra["model"] = await engine.project_model(self, data.model if may_edit else None)
                extra["spend"] = await engine.project_spend(self)
        else:
            history = await self._deps.store.chat_history(self._session_id)
            pending = None
        info = project.info()
        if info.project_prompt is not None:  # a client must be able to take the frame
            info = attrs.evolve(
                info, project_prompt=clip_text(info.project_prompt, INIT_PROMPT_CHARS)
            )
        git_sync = self._deps.git_sync
        if git_sync is not None:
            record = await git_sync.repo_record(self._session_id)
            if record is not None:
                info = attrs.evolve(info, **record.project_fields())
                extra["git"] = record.to_git_info()
        page = await load_turn_page(self._deps.store, self._session_id)
        # Only the very first INIT of a fresh sandbox says "new": a reload must not make the
        # editor send the creation prompt again.
        exists = handle.existed or self._init_replies > 0
        self._init_replies += 1
        # No await from here on: the running turn's events and the queue are those of the
        # moment the reply is sent (later broadcasts reach the socket after it).
        turns = self._with_last(page.turns)
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

    def _with_last(self, turns: tuple[TurnRecord, ...]) -> tuple[TurnRecord, ...]:
        """``turns`` plus the last finished turn when it ended after the page was read."""
        last = self._jobs.last_record
        if last is None or any(t.turn_id == last.turn_id for t in turns):
            return turns
        return (*turns, last)

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

    @asynccontextmanager
    async def hold_turns(self, wait_s: float) -> AsyncIterator[None]:
        """Keep turns from starting for the duration of the block (a restore); see
        :meth:`~.jobs.TurnQueue.hold`.

        Raises:
            TurnRunning: a turn is running or queued, or did not finish within ``wait_s``.
        """
        async with self._jobs.hold(wait_s):
            yield
