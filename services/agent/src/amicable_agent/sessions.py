"""Sessions: one per session id, owning its sandbox handle, runtime client, turns and idle timer.

A :class:`SessionManager` owns one nursery in which every :class:`Session` runs. Sockets
*attach* to a session through an :class:`Attachment` (a bounded send queue drained by the
socket's writer task); a session broadcasts to all attachments with ``send_nowait`` and drops
an attachment whose queue is full, so a slow socket never blocks a turn. A turn belongs to the
session, not to a socket: a reload re-attaches to the running turn.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio
from amicable_protocol.messages import (
    ErrorData,
    HitlResponseData,
    InitData,
    InitReply,
    MessageType,
    PermissionMode,
    ProjectInfo,
    RuntimeErrorData,
    SandboxStage,
    SandboxStatus,
    ServerData,
    ServerMessage,
    ThinkingLevel,
    UserData,
    encode_server_message,
)

from .checkpoints import Checkpoints
from .db import AppDatabase
from .errors import AgentError, SandboxProvisionError, TurnRunning
from .gitsync import GitSync, TurnObserver, message_callbacks, prepare_sandbox, sync_after_turn
from .sandboxes import SandboxBackend, SandboxHandle, sandbox_id_for
from .store import Store
from .turn_api import RuntimeClient, TurnEngine
from .ws_server import frame_bytes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .db import AppDbInfo, AppDbTools
    from .store import Project

log = logging.getLogger(__name__)

MODEL_NOT_CONFIGURED = (
    "No language model is configured. Set ANTHROPIC_API_KEY in the agent's environment "
    "(for `amicable up`: `export ANTHROPIC_API_KEY=sk-ant-...` before starting it) "
    "and restart the agent."
)
#: How often an attached session refreshes its sandbox's idle clock.
KEEPALIVE_INTERVAL_S = 60.0
#: How long the INIT waits for the checkpoint baseline (a slow one is left to the turn).
INIT_CHECKPOINT_S = 5.0
#: Deadline of the checkpoint taken after each turn (best effort).
CHECKPOINT_TIMEOUT_S = 30.0
HITL_PENDING = "HITL approval pending. Approve/reject the pending tool call to continue."


@attrs.frozen
class SessionDeps:
    """What sessions need from the server (passed down explicitly, no globals).

    Attributes:
        store: the projects store.
        backend: the sandbox backend.
        runtime_factory: opens a :class:`RuntimeClient` for a sandbox handle.
        engine: the LLM loop, or None when no model is configured.
        preview_url: maps a label (slug) to the browser URL of the preview.
        default_template: template of projects created by ``init`` with an unknown id.
        idle_timeout_s: an unattended, idle session closes after this long.
        provision_timeout_s: deadline for ``backend.ensure``.
        db: the per-app Hasura database (credentials injected at provisioning), or None.
        git_sync: GitLab persistence (a commit after each turn), or None.
    """

    store: Store
    backend: SandboxBackend
    runtime_factory: Callable[[SandboxHandle], AbstractAsyncContextManager[RuntimeClient]]
    engine: TurnEngine | None
    preview_url: Callable[[str], str]
    default_template: str = "vite"
    idle_timeout_s: float = 600.0
    provision_timeout_s: float = 300.0
    db: AppDatabase | None = None
    git_sync: GitSync | None = None


class Outgoing:
    """A message on its way to the sockets: encoded at most once, however many sockets
    (and only if some socket actually sends it; a coalesced partial is never encoded)."""

    __slots__ = ("_frame", "_wire", "message")

    def __init__(self, message: ServerMessage) -> None:
        self.message = message
        self._frame: str | None = None
        self._wire: bytes | None = None

    @property
    def frame(self) -> str:
        """The JSON text frame of :attr:`message` (encoded on first use, then cached)."""
        if self._frame is None:
            self._frame = encode_server_message(self.message)
        return self._frame

    @property
    def wire(self) -> bytes:
        """:attr:`frame` as a complete WebSocket frame (built once for every socket)."""
        if self._wire is None:
            self._wire = frame_bytes(self.frame)
        return self._wire


class Attachment:
    """One socket's view of a session: a bounded queue of outgoing messages.

    The socket's writer task takes messages with :meth:`receive` / :meth:`receive_nowait`;
    the session (and the socket's own reader) push with :meth:`send_nowait`, which never
    blocks. When the queue is full the attachment is *dropped*: it stops accepting,
    :attr:`dropped` is set, and the socket closes once the writer has drained the queue.

    ``agent_partial`` messages carry the whole text so far, so a queued partial is
    *superseded* by a newer partial with the same id: the older one is removed and the new
    one is queued at the end. What the socket receives is therefore always the produced
    sequence minus superseded partials, in order; nothing else is ever skipped, and a
    backlog (slow client, busy event loop) shrinks to one partial per streaming message
    instead of growing with the stream.

    With :attr:`direct` set (a socket that can write without blocking), a message sent
    while nothing is queued is written at once by the sending task; only what cannot be
    written then waits in the queue for the writer.
    """

    def __init__(self, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        # Queued entries in order; a superseded partial's slot is set to None and skipped.
        self._queue: deque[Outgoing | None] = deque()
        self._live = 0
        self._partials: dict[str, int] = {}  # msg id -> absolute position in the queue
        self._popped = 0  # absolute position of self._queue[0]
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self._head_offset = 0
        self.dropped = False
        self.coalesced = 0
        self.direct_sends = 0
        #: Set by a socket that can write without blocking: returns how many bytes of the
        #: message's :attr:`Outgoing.wire` it wrote at once (0: none, queue it as usual).
        self.direct: Callable[[Outgoing], int] | None = None
        #: Bytes of the message last taken that were already written (by :attr:`direct`).
        self.taken_offset = 0
        self.session: Session | None = None

    def __len__(self) -> int:
        """How many messages are queued (superseded partials not counted)."""
        return self._live

    def send_nowait(self, message: ServerMessage | Outgoing) -> bool:
        """Queue ``message``; returns False (and drops the socket) if it cannot."""
        if self.dropped:
            return False
        out = message if isinstance(message, Outgoing) else Outgoing(message)
        msg = out.message
        if msg.type is MessageType.AGENT_PARTIAL:
            position = self._partials.pop(msg.id, None)
            if position is not None:  # supersede the queued partial of this message
                self._queue[position - self._popped] = None
                self._live -= 1
                self.coalesced += 1
        written = 0
        if not self._live and self.direct is not None:
            # Nothing queued and the socket idle: write now, in this task, instead of a
            # scheduler pass later in the writer's.
            written = self.direct(out)
            if written >= len(out.wire):
                self.direct_sends += 1
                return True
        if self._live >= self._queue_size:
            log.warning("dropping a slow WebSocket client")
            self.drop()
            return False
        if written > 0:  # the rest goes first, from the writer; never superseded now
            self._head_offset = written
        elif msg.type is MessageType.AGENT_PARTIAL:
            self._partials[msg.id] = self._popped + len(self._queue)
        self._queue.append(out)
        self._live += 1
        self._lot.unpark_all()
        return True

    def receive_nowait(self) -> ServerMessage:
        """The next queued message.

        Raises:
            trio.WouldBlock: nothing is queued.
            trio.EndOfChannel: the attachment was dropped and everything has been taken.
        """
        return self.take_nowait().message

    def take_nowait(self) -> Outgoing:
        """The next queued message with its cached encodings (see :meth:`receive_nowait`)."""
        queue = self._queue
        while queue:
            out = queue.popleft()
            self._popped += 1
            if out is None:
                continue
            self._live -= 1
            self.taken_offset, self._head_offset = self._head_offset, 0
            msg = out.message
            if msg.type is MessageType.AGENT_PARTIAL:
                self._partials.pop(msg.id, None)
            return out
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> Outgoing:
        """Wait for the next queued message (the socket writer's call).

        Takes a queued message without yielding to the scheduler first: the writer's send
        that follows is the checkpoint. Waits only when the queue is empty.

        Raises:
            trio.EndOfChannel: the attachment was dropped and everything has been taken.
        """
        while True:
            try:
                return self.take_nowait()
            except trio.WouldBlock:
                await self._lot.park()

    def drop(self) -> None:
        """Stop accepting messages; the writer ends after draining what is queued."""
        self.dropped = True
        self._closed = True
        self._lot.unpark_all()


@attrs.frozen
class _Job:
    kind: MessageType
    data: Any
    origin: Attachment | None


class Session:
    """One editing session (== project id). Implements :class:`turn_api.SessionHost`.

    Created and run by :class:`SessionManager`; don't construct directly.

    Cancellation: closing the session (idle timeout, project deletion, manager exit) cancels
    provisioning and the running turn; the runtime client is closed; attached sockets are
    dropped.
    """

    def __init__(self, session_id: str, deps: SessionDeps) -> None:
        self._session_id = session_id
        self._deps = deps
        self._attachments: set[Attachment] = set()
        self._changed = trio.Event()
        self._ready = trio.Event()
        self._closed = trio.Event()
        self._failed: str | None = None
        self._project: Project | None = None
        self._handle: SandboxHandle | None = None
        self._runtime: RuntimeClient | None = None
        self._permission_mode: PermissionMode = "default"
        self._thinking_level: ThinkingLevel = "none"
        self._jobs_send, self._jobs_recv = trio.open_memory_channel[_Job](32)
        self._queued = 0
        self._turn_scope: trio.CancelScope | None = None
        self._cancel_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._init_replies = 0
        self._started_at = time.monotonic()
        self._db_info: AppDbInfo | None = None
        self._app_db: AppDbTools | None = None
        self._observer: TurnObserver | None = None
        # Held while a job (turn + its checkpoint + GitLab sync) runs, and by a restore.
        self._turn_lock = trio.Lock()
        self._checkpoints_ready = False

    # --- SessionHost ------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        """The session id (== project id == app id)."""
        return self._session_id

    @property
    def project(self) -> ProjectInfo:
        """The project's public info (after provisioning)."""
        if self._project is None:
            raise AgentError("session is not ready")
        return self._project.info()

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
        if self._runtime is None:
            raise AgentError("session is not ready")
        return self._runtime

    @property
    def store(self) -> Store:
        """The conversation store."""
        return self._deps.store

    @property
    def app_db(self) -> AppDbTools | None:
        """The model's DB tools when the app's database was prepared at INIT, else None."""
        return self._app_db

    @property
    def handle(self) -> SandboxHandle | None:
        """The sandbox handle once provisioned."""
        return self._handle

    @property
    def closed(self) -> bool:
        """The session has ended (a new ``init`` starts a fresh one)."""
        return self._closed.is_set()

    @property
    def turn_running(self) -> bool:
        """A turn is running or queued."""
        return self._turn_scope is not None or self._queued > 0

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
        if self._observer is not None:
            self._observer.observe(type, data)
        out = Outgoing(self.message(type, data, msg_id=msg_id))
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
        attachment.session = self
        self._poke()

    def detach(self, attachment: Attachment) -> None:
        """Detach a socket (closed by the client, or dropped as slow)."""
        self._attachments.discard(attachment)
        if attachment.session is self:
            attachment.session = None
        self._poke()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

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
                        await self._provision(stack)
                        nursery.start_soon(self._idle_watch)
                        nursery.start_soon(self._turn_worker)
                        nursery.start_soon(self._keep_sandbox_alive)
        finally:
            self._closed.set()
            self._ready.set()
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
        await self._ready.wait()

    async def _stage(self, stage: SandboxStage, message: str) -> None:
        elapsed = int((time.monotonic() - self._started_at) * 1000)
        sandbox_id = self._handle.sandbox_id if self._handle else sandbox_id_for(self._session_id)
        log.log(
            logging.WARNING if stage == "failed" else logging.INFO,
            "sandbox %s (session %s): %s after %.1f s: %s",
            sandbox_id, self._session_id, stage, elapsed / 1000, message,
        )  # fmt: skip
        await self.send(
            MessageType.SANDBOX_STATUS,
            SandboxStatus(stage=stage, message=message, sandbox_id=sandbox_id, elapsed_ms=elapsed),
        )

    async def _provision(self, stack: AsyncExitStack) -> None:
        deps = self._deps
        try:
            await self._stage("queued", "Preparing your workspace…")
            project = await deps.store.get_project(self._session_id)
            if project is None:
                try:
                    project = await deps.store.create_project(
                        "Untitled", template_id=deps.default_template, project_id=self._session_id
                    )
                except ValueError as exc:  # the id belongs to a deleted project
                    raise SandboxProvisionError(
                        "this project was deleted; create a new project"
                    ) from exc
            self._project = project
            with trio.fail_after(deps.provision_timeout_s):
                handle = await deps.backend.ensure(
                    self._session_id,
                    project_id=project.project_id,
                    template_id=project.template_id,
                    on_stage=self._stage,
                )
            self._handle = handle
            if project.sandbox_id != handle.sandbox_id:
                await deps.store.set_sandbox_id(project.project_id, handle.sandbox_id)
            self._runtime = await stack.enter_async_context(deps.runtime_factory(handle))
            async with trio.open_nursery() as prepare:
                if deps.git_sync is None:
                    # The checkpoint baseline is the state the session opened with; made here
                    # (beside the database) so the first prompt does not wait for git. With
                    # GitLab sync it follows the restore from GitLab (turn worker).
                    prepare.start_soon(self._prepare_checkpoints)
                if deps.db is not None:  # never fails the session: no database this time
                    self._db_info = await deps.db.try_prepare_session(
                        self._session_id, self._runtime, preview_url=deps.preview_url(project.slug)
                    )
                    if self._db_info is not None:
                        self._app_db = deps.db.session_tools(self._session_id, self._db_info)
            await self._stage("ready", "Workspace ready")
        except (SandboxProvisionError, trio.TooSlowError, AgentError, ValueError) as exc:
            reason = (
                exc.reason
                if isinstance(exc, SandboxProvisionError)
                else "timed out while starting the sandbox"
                if isinstance(exc, trio.TooSlowError)
                else str(exc)
            )
            self._failed = reason
            await self._stage("failed", reason)
            self._ready.set()
            self.close()
            return
        self._ready.set()

    async def _keep_sandbox_alive(self) -> None:
        # An open editor may sit quietly (HMR socket only); keep the sandbox's idle TTL
        # fresh while anyone is attached or a turn runs.
        while True:
            await trio.sleep(KEEPALIVE_INTERVAL_S)
            handle = self._handle
            if handle is not None and (self._attachments or self.turn_running):
                with trio.move_on_after(KEEPALIVE_INTERVAL_S):
                    await self._deps.backend.touch(handle.sandbox_id)

    async def _idle_watch(self) -> None:
        while True:
            changed = self._changed
            if self._attachments or self.turn_running:
                await changed.wait()
                continue
            with trio.move_on_after(self._deps.idle_timeout_s):
                await changed.wait()
                continue
            log.info("session %s idle, closing", self._session_id)
            self.close()
            return

    # --- client messages ----------------------------------------------------------------

    async def init_reply(self, data: InitData) -> InitReply:
        """Apply ``init`` controls and build the INIT answer (waits for provisioning).

        Raises:
            SandboxProvisionError: provisioning failed (the session is closing).
        """
        if data.permission_mode is not None:
            self._permission_mode = data.permission_mode
        if data.thinking_level is not None:
            self._thinking_level = data.thinking_level
        await self.wait_ready()
        if self._failed is not None or self._handle is None or self._project is None:
            raise SandboxProvisionError(self._failed or "the session closed")
        await self._deps.backend.touch(self._handle.sandbox_id)
        engine = self._deps.engine
        if engine is not None:
            history = await engine.history(self)
            pending = await engine.hitl_pending(self)
        else:
            history = await self._deps.store.chat_history(self._session_id)
            pending = None
        project = self._project
        info = project.info()
        extra: dict[str, Any] = self._db_info.init_fields() if self._db_info else {}
        git_sync = self._deps.git_sync
        if git_sync is not None:
            record = await git_sync.repo_record(self._session_id)
            if record is not None:
                info = attrs.evolve(info, **record.project_fields())
                extra["git"] = record.to_git_info()
        # Only the very first INIT of a fresh sandbox says "new": a reload must not make the
        # editor send the creation prompt again.
        exists = self._handle.existed or self._init_replies > 0
        self._init_replies += 1
        return InitReply(
            url=self._deps.preview_url(project.slug),
            sandbox_id=self._handle.sandbox_id,
            exists=exists,
            app_id=self._session_id,
            template_id=project.template_id,
            project=info,
            conversation_history=tuple(history[-20:]),
            permission_mode=self._permission_mode,
            thinking_level=self._thinking_level,
            hitl_pending=pending,
            **extra,
        )

    def refresh_project(self, project: Project) -> None:
        """Take a renamed project row (the sandbox id stays)."""
        self._project = project

    def submit(self, kind: MessageType, data: Any, origin: Attachment | None) -> None:
        """Route a turn-related client message (``user``, ``hitl_response``,
        ``runtime_error``, ``cancel``). Never blocks."""
        if self._handle is not None:
            self._nursery_touch()
        if kind is MessageType.CANCEL:
            if self._turn_scope is not None:
                self._turn_scope.cancel()
            return
        if self._deps.engine is None:
            if kind is MessageType.USER and origin is not None:
                origin.send_nowait(
                    self.message(
                        MessageType.ERROR,
                        ErrorData(error="model_not_configured", detail=MODEL_NOT_CONFIGURED),
                    )
                )
            return
        if kind is MessageType.RUNTIME_ERROR and self.turn_running:
            return  # auto-heal only when idle, as upstream
        try:
            self._jobs_send.send_nowait(_Job(kind, data, origin))
        except trio.WouldBlock:
            if origin is not None:
                origin.send_nowait(
                    self.message(
                        MessageType.ERROR,
                        ErrorData(error="busy", detail="Too many queued requests; try again."),
                    )
                )
            return
        self._queued += 1
        self._poke()

    def _nursery_touch(self) -> None:
        # Activity keeps the sandbox's idle TTL fresh; touch must not block the caller.
        handle = self._handle
        if handle is not None and self._nursery is not None:
            self._nursery.start_soon(self._deps.backend.touch, handle.sandbox_id)

    async def _turn_worker(self) -> None:
        engine = self._deps.engine
        git_sync = self._deps.git_sync
        if git_sync is not None and self._handle is not None and self._project is not None:
            # Before the first turn: a reset sandbox is restored from GitLab, an empty
            # repository gets the template as its baseline (best effort, never raises).
            await prepare_sandbox(git_sync, self._project, self._handle)
        async for job in self._jobs_recv:
            async with self._turn_lock:
                await self._serve_job(engine, git_sync, job)

    async def _serve_job(
        self, engine: TurnEngine | None, git_sync: GitSync | None, job: _Job
    ) -> None:
        """One queued job: the turn, then its checkpoint, then the GitLab sync."""
        self._queued -= 1
        if engine is None:  # pragma: no cover - submit() never queues then
            return
        if not self._checkpoints_ready:  # the baseline must not include the first turn
            self._checkpoints_ready = await self._checkpoint(None)
        outcome = "finished"
        if git_sync is not None:
            self._observer = TurnObserver(_turn_title(job))
        with trio.CancelScope() as scope:
            self._turn_scope = scope
            self._poke()
            await self._record(job.kind, "started")
            try:
                await self._run_job(engine, job)
            except AgentError as exc:
                outcome = "failed"
                await self.send(MessageType.ERROR, ErrorData(error="turn_failed", detail=str(exc)))
            except Exception as exc:
                outcome = "failed"
                log.exception("turn failed in session %s", self._session_id)
                await self.send(
                    MessageType.ERROR,
                    ErrorData(error="turn_failed", detail=type(exc).__name__),
                )
        if scope.cancelled_caught:
            outcome = "cancelled"
        self._turn_scope = None
        self._poke()
        await self._record(job.kind, outcome)
        await self._checkpoint(_turn_title(job))
        observer, self._observer = self._observer, None
        if git_sync is not None and observer is not None:
            await self._sync_to_git(git_sync, observer, outcome)

    async def _prepare_checkpoints(self) -> None:
        """The repository and its baseline, at most :data:`INIT_CHECKPOINT_S` of the INIT
        (else the turn worker tries again before the first turn)."""
        with trio.move_on_after(INIT_CHECKPOINT_S):
            self._checkpoints_ready = await self._checkpoint(None)

    async def _checkpoint(self, title: str | None) -> bool:
        """Commit what the turn changed as a checkpoint (``title`` None: only make sure the
        repository and its baseline exist). Best effort and bounded: a failure is logged and
        returns False, never raises."""
        runtime = self._runtime
        if runtime is None:
            return False
        with trio.move_on_after(CHECKPOINT_TIMEOUT_S):
            try:
                checkpoints = Checkpoints(runtime, timeout_s=CHECKPOINT_TIMEOUT_S)
                if title is None:
                    await checkpoints.ensure()
                else:
                    await checkpoints.create(title)
            except Exception as exc:
                log.warning("checkpoint of session %s failed: %s", self._session_id, exc)
                return False
            return True
        log.warning("checkpoint of session %s timed out", self._session_id)
        return False

    @asynccontextmanager
    async def hold_turns(self, wait_s: float) -> AsyncIterator[None]:
        """Keep turns from starting for the duration of the block (a restore).

        Waits up to ``wait_s`` for a finishing turn's checkpoint/sync; turns submitted
        meanwhile are queued and start after the block.

        Raises:
            TurnRunning: a turn is running or queued, or did not finish within ``wait_s``.
        """
        if self.turn_running:
            raise TurnRunning("a turn is running")
        with trio.move_on_after(wait_s) as waited:
            await self._turn_lock.acquire()
        if waited.cancelled_caught:
            raise TurnRunning("the last turn is still finishing")
        try:
            if self.turn_running:  # a prompt arrived while we waited: it goes first
                raise TurnRunning("a turn is queued")
            yield
        finally:
            self._turn_lock.release()

    async def _sync_to_git(self, git_sync: GitSync, observer: TurnObserver, outcome: str) -> None:
        """Commit and push what the turn left in the sandbox (seed guide: after QA, best
        effort). Runs before the next queued turn so each commit is one turn's work."""
        if self._handle is None or self._project is None:
            return
        on_progress, on_error = message_callbacks(self.send)
        summary = observer.summary(outcome)
        await sync_after_turn(
            git_sync, self._project, self._handle, summary,
            on_progress=on_progress, on_error=on_error,
        )  # fmt: skip

    async def _record(self, kind: MessageType, outcome: str) -> None:
        """Append a turn event (audit trail); a store failure never breaks the session."""
        try:
            with trio.move_on_after(10):
                await self._deps.store.append_turn_event(
                    self._session_id, f"turn_{outcome}", {"trigger": str(kind)}
                )
        except Exception:
            log.warning("could not record a turn event for %s", self._session_id)

    async def _run_job(self, engine: TurnEngine, job: _Job) -> None:
        if job.kind in (MessageType.USER, MessageType.RUNTIME_ERROR):
            if await engine.hitl_pending(self) is not None:
                if job.kind is MessageType.USER:
                    await self.send(MessageType.ERROR, ErrorData(error=HITL_PENDING))
                return
            if job.kind is MessageType.USER:
                assert isinstance(job.data, UserData)
                await engine.run_user_turn(self, job.data)
            else:
                assert isinstance(job.data, RuntimeErrorData)
                await engine.run_runtime_error(self, job.data)
        elif job.kind is MessageType.HITL_RESPONSE:
            assert isinstance(job.data, HitlResponseData)
            await engine.resume_hitl(self, job.data)


def _turn_title(job: _Job) -> str:
    """What a turn was asked to do, for its commit message."""
    if isinstance(job.data, UserData):
        return job.data.text or "Update the app"
    if isinstance(job.data, RuntimeErrorData):
        return f"Fix runtime error: {job.data.error.message}"
    return "Continue after review"


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
