"""A session's turns, one at a time, and the steps after each turn.

Turn-related client messages (``user``, ``hitl_response``, ``runtime_error``) are queued as
jobs; one worker task serves them in order. A job is the turn, then the GitLab sync, then the
next job: each GitLab commit holds exactly one turn's work. The turn's checkpoint is handed to
the session's :class:`~.checkpoint_queue.CheckpointQueue` when the turn ends and taken in the
background, so a slow checkpoint never delays the next prompt. A restore holds the same lock
and waits for that queue (:meth:`TurnQueue.hold`), so it never interleaves with either.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio
from amicable_protocol.messages import (
    ErrorData,
    HitlResponseData,
    ImageBlock,
    MessageType,
    PromptAuthor,
    QueueData,
    QueuedPrompt,
    RuntimeErrorData,
    ServerMessage,
    TurnEnded,
    TurnOutcome,
    TurnRecord,
    TurnStarted,
    UserData,
)

from amicable_agent.errors import AgentError, TurnRunning
from amicable_agent.gitsync import TurnObserver, message_callbacks, prepare_sandbox, sync_after_turn
from amicable_agent.loop.small_tasks import small_usage_record

from .attachment import Attachment
from .checkpoint_queue import CheckpointQueue
from .takeover import mark_turn, take_over, unmark_turn
from .transcript import RECORD_KIND, TurnTranscript, project_paths, record_payload

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from amicable_protocol.messages import ServerData

    from amicable_agent.gitsync import GitSync
    from amicable_agent.loop.api import SessionHost, TurnEngine
    from amicable_agent.loop.model_api import TokenUsage
    from amicable_agent.loop.models import ModelSpec
    from amicable_agent.store import Store

    from .deps import SessionDeps
    from .relay import TurnRelay
    from .sandbox import SessionSandbox

log = logging.getLogger(__name__)

MODEL_NOT_CONFIGURED = (
    "No language model is configured. Set ANTHROPIC_API_KEY in the agent's environment "
    "(for `amicable up`: `export ANTHROPIC_API_KEY=sk-ant-...` before starting it), or use "
    "an OpenAI-compatible or local model (DEEPAGENTS_MODEL=openai:<model> with "
    "OPENAI_BASE_URL, see docs/models.md), and restart the agent."
)
#: How long the INIT (or the first turn) waits for the checkpoint baseline.
INIT_CHECKPOINT_S = 5.0
HITL_PENDING = "HITL approval pending. Approve/reject the pending tool call to continue."
#: Jobs waiting behind the running turn before ``busy`` is answered.
QUEUE_SIZE = 32


@attrs.frozen
class _Job:
    kind: MessageType
    data: Any
    origin: Attachment | None
    by: str | None = None
    id: str = attrs.field(factory=lambda: f"t-{uuid.uuid4().hex[:12]}")

    def started(self) -> TurnStarted:
        """The ``turn_started`` of this job (what every tab shows as the turn's prompt)."""
        trigger = _TRIGGERS[self.kind]
        author: PromptAuthor = "system" if self.kind is MessageType.RUNTIME_ERROR else "user"
        images = 0
        if isinstance(self.data, UserData):
            blocks = self.data.content_blocks or ()
            images = sum(1 for b in blocks if isinstance(b, ImageBlock))
        return TurnStarted(
            turn_id=self.id, trigger=trigger, text=_prompt_text(self), author=author,
            by=self.by, images=images,
        )  # fmt: skip

    def queued(self) -> QueuedPrompt:
        """This job as a ``queue`` entry."""
        started = self.started()
        return QueuedPrompt(
            id=self.id, text=started.text, trigger=started.trigger, author=started.author,
            by=self.by,
        )  # fmt: skip


_TRIGGERS: dict[MessageType, Any] = {
    MessageType.USER: "user",
    MessageType.RUNTIME_ERROR: "runtime_error",
    MessageType.HITL_RESPONSE: "hitl_response",
}


class TurnQueue:
    """The queue of a session's turns and its worker.

    Args:
        host: the session, as the turn engine sees it.
        deps: the server's dependencies (engine, store, GitLab sync).
        sandbox: the session's sandbox (runtime client for checkpoints, handle for sync).
        changed: called whenever :attr:`running` may have changed (the idle watch).
        broadcast: sends a message to every attached socket now (sync).
        store: the session's (fenced) store; ``deps.store`` by default.
    """

    def __init__(
        self,
        host: SessionHost,
        deps: SessionDeps,
        sandbox: SessionSandbox,
        changed: Callable[[], None],
        broadcast: Callable[[MessageType, ServerData], None],
        store: Store | None = None,
    ) -> None:
        self._host = host
        self._broadcast = broadcast
        self._store = store if store is not None else deps.store
        self._deps = deps
        self._sandbox = sandbox
        self._changed = changed
        self._send, self._recv = trio.open_memory_channel[_Job](QUEUE_SIZE)
        self._queued = 0
        self._turn_scope: trio.CancelScope | None = None
        self._by: Counter[str] = Counter()  # queued or running jobs per user
        self._observer: TurnObserver | None = None
        self._waiting: list[_Job] = []  # queued, in order (the ``queue`` broadcast)
        self._removed: set[str] = set()  # dequeued ids still in the channel
        self._transcript: TurnTranscript | None = None
        self._last_record: TurnRecord | None = None
        self._queue_shown = False  # the last ``queue`` broadcast listed prompts
        # Held while a job (turn + GitLab sync) runs, and by a restore.
        self._lock = trio.Lock()
        #: Set while the checkpoint baseline is being made (the file API waits for it).
        self._baseline: trio.Event | None = None
        #: The cross-replica relay when turns are leased (set by the session).
        self.relay: TurnRelay | None = None
        self._checkpoints = CheckpointQueue(
            host.session_id,
            self._store,
            lambda: sandbox.runtime,
            host.send,
            deps.checkpoints,
            snapshots=deps.snapshots,
            subject=_subject_writer(deps, host.session_id),
        )

    @property
    def running(self) -> bool:
        """A turn is running or queued."""
        return self._turn_scope is not None or self._queued > 0

    @property
    def checkpoint_busy(self) -> bool:
        """A checkpoint or snapshot is running or due."""
        return self._checkpoints.busy

    @property
    def observer(self) -> TurnObserver | None:
        """What the running turn sent so far (for its GitLab commit), or None."""
        return self._observer

    @property
    def transcript(self) -> TurnTranscript | None:
        """The running turn's transcript (every broadcast goes into it), or None."""
        return self._transcript

    def running_record(self) -> TurnRecord | None:
        """The running turn's events so far (for INIT), or None."""
        return self._transcript.record() if self._transcript is not None else None

    def with_last(self, turns: tuple[TurnRecord, ...]) -> tuple[TurnRecord, ...]:
        """``turns`` (a page read from the store) plus the last finished turn when it ended
        after the page was read."""
        last = self._last_record
        if last is None or any(t.turn_id == last.turn_id for t in turns):
            return turns
        return (*turns, last)

    def announce(self) -> None:
        """``turn_started`` of the running job to every tab, once."""
        transcript = self._transcript
        if transcript is not None and not transcript.announced:
            transcript.announced = True
            self._broadcast(MessageType.TURN_STARTED, transcript.start)

    def queued_prompts(self) -> tuple[QueuedPrompt, ...]:
        """The prompts waiting behind the running turn, in order."""
        return tuple(job.queued() for job in self._waiting)

    def dequeue(self, job_id: str) -> bool:
        """Remove a waiting prompt; False when it is not waiting (running or unknown)."""
        job = next((j for j in self._waiting if j.id == job_id), None)
        if job is None:
            return False
        self._waiting.remove(job)
        self._removed.add(job_id)
        self._queued -= 1
        if job.by is not None:
            self._by[job.by] -= 1
        self._changed()
        self._broadcast_queue()
        return True

    def _broadcast_queue(self) -> None:
        items = self.queued_prompts()
        self._queue_shown = bool(items)
        self._broadcast(MessageType.QUEUE, QueueData(items=items))

    def cancel(self) -> None:
        """Cancel the running turn (queued ones still run)."""
        if self._turn_scope is not None:
            self._turn_scope.cancel()

    def count_by(self, sub: str) -> int:
        """Jobs queued or running that ``sub`` submitted."""
        return self._by[sub]

    def submit(
        self,
        kind: MessageType,
        data: Any,
        origin: Attachment | None,
        *,
        by: str | None = None,
        msg_id: str | None = None,
    ) -> None:
        """Queue a ``user``, ``hitl_response`` or ``runtime_error`` message. Never blocks;
        a full queue or a missing model is answered to ``origin`` only. ``msg_id`` (the
        frame's ``id``) becomes the turn's id, so the sending tab knows its prompt."""
        if self._deps.engine is None:
            if kind is MessageType.USER:
                self._answer(origin, "model_not_configured", MODEL_NOT_CONFIGURED)
            return
        if kind is MessageType.RUNTIME_ERROR and self.running and not data.requested:
            return  # auto-heal only when idle, as upstream ("Fix it" is queued)
        job = _Job(kind, data, origin, by)
        if msg_id and not any(j.id == msg_id for j in self._waiting):
            job = attrs.evolve(job, id=msg_id[:128])
        try:
            self._send.send_nowait(job)
        except trio.WouldBlock:
            self._answer(origin, "busy", "Too many queued requests; try again.")
            return
        self._queued += 1
        if by is not None:
            self._by[by] += 1
        self._waiting.append(job)
        self._changed()
        if self._turn_scope is not None or len(self._waiting) > 1:
            self._broadcast_queue()  # it waits: every tab shows it as queued

    def _answer(self, origin: Attachment | None, error: str, detail: str) -> None:
        if origin is not None:
            data = ErrorData(error=error, detail=detail)
            origin.send_nowait(
                ServerMessage(type=MessageType.ERROR, data=data, session_id=self._host.session_id)
            )

    def expect_baseline(self) -> None:
        """The worker is about to make the baseline: from now on :meth:`baseline_made`
        waits for it (sync, so no request slips in before the worker starts)."""
        if not self._checkpoints.ready and self._baseline is None:
            self._baseline = trio.Event()

    async def baseline_made(self) -> None:
        """Wait (at most :data:`INIT_CHECKPOINT_S`) while the baseline is being made, so a
        file written through the API right after INIT is not taken into it."""
        baseline = self._baseline
        if baseline is not None:
            with trio.move_on_after(INIT_CHECKPOINT_S):
                await baseline.wait()

    async def prepare_checkpoints(self) -> None:
        """The repository and its baseline (and the checkpoint of turns an earlier session
        left unfinished), at most :data:`INIT_CHECKPOINT_S` (else the worker tries
        again before the first turn)."""
        self.expect_baseline()
        try:
            with trio.move_on_after(INIT_CHECKPOINT_S):
                await self._checkpoints.prepare()
        finally:
            if self._baseline is not None:
                self._baseline.set()
                self._baseline = None

    async def serve_checkpoints(self) -> None:
        """The checkpoint worker: takes each turn's checkpoint in the background."""
        await self._checkpoints.serve()

    async def serve(self) -> None:
        """The worker: serve jobs in order until cancelled."""
        git_sync = self._deps.git_sync
        sandbox = self._sandbox
        if git_sync is not None and sandbox.handle is not None and sandbox.project is not None:
            # Before the first turn: a reset sandbox is restored from GitLab (unless its
            # snapshot was restored: that is newer), an empty repository gets the sandbox as
            # its baseline (best effort, never raises).
            await prepare_sandbox(
                git_sync, sandbox.project, sandbox.handle, restored=sandbox.restored is not None
            )
        if not self._checkpoints.ready:
            # The baseline, before any job (a restore's hold waits for it too): after
            # provisioning, so the preview never waits for git; a prompt sent meanwhile queues.
            async with self._lock:
                await self.prepare_checkpoints()
        async for job in self._recv:
            if job.id in self._removed:  # dequeued while it waited (already uncounted)
                self._removed.discard(job.id)
                continue
            try:
                async with self._lock:
                    await self._serve_job(job)
            finally:
                if job.by is not None:
                    self._by[job.by] -= 1
                if self._turn_scope is not None:  # cut from outside (the lease was lost)
                    self._turn_scope = self._observer = None
                    self._changed()

    async def _serve_job(self, job: _Job) -> None:
        """One queued job: the turn, then its checkpoint, then the GitLab sync."""
        self._queued -= 1
        if job in self._waiting:
            self._waiting.remove(job)
        engine, git_sync = self._deps.engine, self._deps.git_sync
        if engine is None:  # pragma: no cover - submit() never queues then
            return
        if await _refused(engine, self._host, job):
            if self._waiting or self._queue_shown:
                self._broadcast_queue()
            return
        if not self._checkpoints.ready:  # the baseline must not include the first turn
            await self.prepare_checkpoints()
        title = _turn_title(job)
        await self._checkpoints.turn_started(title)
        await self._mark(job, title)
        outcome: TurnOutcome = "finished"
        if git_sync is not None:
            self._observer = TurnObserver(title)
        self._transcript = TurnTranscript(job.id, job.started())
        if self._waiting or self._queue_shown:
            self._broadcast_queue()
        if job.kind is not MessageType.RUNTIME_ERROR:
            self.announce()  # an auto-heal is announced when it really starts (it may not)
        with trio.CancelScope() as scope:
            self._turn_scope = scope
            self._changed()
            await self._record(job.kind, "started")
            try:
                await _run_job(engine, self._host, job)
            except AgentError as exc:
                outcome = "failed"
                await self._host.send(
                    MessageType.ERROR, ErrorData(error="turn_failed", detail=str(exc))
                )
            except Exception as exc:
                outcome = "failed"
                log.exception("turn failed in session %s", self._host.session_id)
                await self._host.send(
                    MessageType.ERROR, ErrorData(error="turn_failed", detail=type(exc).__name__)
                )
        if scope.cancelled_caught:
            outcome = "cancelled"
        self._turn_scope = None
        recorded = await self._end_transcript(job, outcome)
        self._changed()
        await self._checkpoints.turn_finished(
            title, interrupted=outcome != "finished", turn_id=job.id if recorded else None
        )
        await self._record(job.kind, outcome)
        await self._unmark()
        observer, self._observer = self._observer, None
        if git_sync is not None and observer is not None:
            await self._sync_to_git(git_sync, observer, outcome)

    async def take_over(self) -> None:
        """This session just took the project's lease: make the baseline, checkpointing what
        a dead holder's turn left in the sandbox, and tell everyone that turn was interrupted
        (see :mod:`.takeover`)."""
        await self.prepare_checkpoints()
        if self.relay is not None:
            try:
                await take_over(self._host, self._store, self._deps, self.relay, self.submit)
            except Exception:
                log.exception("could not close the turn left in %s", self._host.session_id)

    async def _mark(self, job: _Job, title: str) -> None:
        """Record the running turn (a replica taking over after this one died finds it)."""
        if self.relay is not None:
            await mark_turn(self._host, self.relay, str(job.kind), job.data, job.by, title)

    async def _unmark(self) -> None:
        if self.relay is not None:
            await unmark_turn(self._host)

    def snapshot_soon(self) -> None:
        """Take a snapshot in the background (after a restore's own checkpoint)."""
        self._checkpoints.snapshot_soon()

    @asynccontextmanager
    async def hold(self, wait_s: float) -> AsyncIterator[None]:
        """Keep turns and checkpoints from starting for the duration of the block (a restore).

        Waits up to ``wait_s`` for a finishing turn's sync and the checkpoints still due (so
        the last turn's files get their own checkpoint, not "Changes before restore"); turns
        submitted meanwhile are queued and start after the block.

        Raises:
            TurnRunning: a turn is running or queued, or it or its checkpoint did not finish
                within ``wait_s``.
        """
        if self.running:
            raise TurnRunning("a turn is running")
        deadline = trio.current_time() + wait_s
        with trio.move_on_at(deadline) as waited:
            await self._lock.acquire()
        if waited.cancelled_caught:
            raise TurnRunning("the last turn is still finishing")
        try:
            if self.running:  # a prompt arrived while we waited: it goes first
                raise TurnRunning("a turn is queued")
            async with self._checkpoints.hold(deadline):
                yield
        finally:
            self._lock.release()

    async def _sync_to_git(self, git_sync: GitSync, observer: TurnObserver, outcome: str) -> None:
        """Commit and push what the turn left in the sandbox (seed guide: after QA, best
        effort). Runs before the next queued turn so each commit is one turn's work."""
        sandbox = self._sandbox
        if sandbox.handle is None or sandbox.project is None:
            return
        on_progress, on_error = message_callbacks(self._host.send)
        summary = observer.summary(outcome)
        await sync_after_turn(
            git_sync, sandbox.project, sandbox.handle, summary,
            on_progress=on_progress, on_error=on_error,
        )  # fmt: skip

    async def _end_transcript(self, job: _Job, outcome: TurnOutcome) -> bool:
        """``turn_ended`` to every tab, then the turn's transcript into the store (not for
        an auto-heal that never started a turn). Returns whether the turn has a record."""
        transcript = self._transcript
        if transcript is None or not transcript.announced:
            self._transcript = None
            return False
        self._broadcast(MessageType.TURN_ENDED, TurnEnded(turn_id=job.id, outcome=outcome))
        self._transcript = None
        record = self._last_record = transcript.record()
        session_id = self._host.session_id
        try:
            with trio.move_on_after(10):
                await self._deps.store.append_turn_event(
                    session_id, RECORD_KIND, record_payload(record)
                )
        except Exception:
            log.warning("could not store the transcript of a turn of %s", session_id)
        return True

    async def _record(self, kind: MessageType, outcome: str) -> None:
        """Append a turn event (audit trail); a store failure never breaks the session."""
        session_id = self._host.session_id
        try:
            with trio.move_on_after(10):
                await self._store.append_turn_event(
                    session_id, f"turn_{outcome}", {"trigger": str(kind)}
                )
        except Exception:
            log.warning("could not record a turn event for %s", session_id)


async def _refused(engine: TurnEngine, host: SessionHost, job: _Job) -> bool:
    """A prompt while an approval is pending is refused (not a turn: nothing recorded)."""
    if job.kind not in (MessageType.USER, MessageType.RUNTIME_ERROR):
        return False
    if await engine.hitl_pending(host) is None:
        return False
    if job.kind is MessageType.USER:
        await host.send(MessageType.ERROR, ErrorData(error=HITL_PENDING))
    return True


async def _run_job(engine: TurnEngine, host: SessionHost, job: _Job) -> None:
    if job.kind in (MessageType.USER, MessageType.RUNTIME_ERROR):
        if job.kind is MessageType.USER:
            assert isinstance(job.data, UserData)
            await engine.run_user_turn(host, job.data, by=job.by)
        else:
            assert isinstance(job.data, RuntimeErrorData)
            await engine.run_runtime_error(host, job.data, by=job.by)
    elif job.kind is MessageType.HITL_RESPONSE:
        assert isinstance(job.data, HitlResponseData)
        await engine.resume_hitl(host, job.data, by=job.by)


def _prompt_text(job: _Job) -> str:
    """What the turn's prompt bubble says."""
    if isinstance(job.data, UserData):
        return job.data.text
    if isinstance(job.data, RuntimeErrorData):
        return f"Fix this error in the preview: {project_paths(job.data.error.message)}"
    return ""


def _subject_writer(
    deps: SessionDeps, project_id: str
) -> Callable[[Sequence[str]], Awaitable[str | None]] | None:
    """The small model writing commit subjects, when one is configured (its cost recorded)."""
    small = deps.small
    if small is None or not small.enabled:
        return None

    async def record(spec: ModelSpec, usage: TokenUsage) -> None:
        try:
            await deps.store.record_usage(
                small_usage_record(spec, usage, project_id, "commit", None)
            )
        except Exception:  # the subject is still good; the store logs its own trouble
            log.warning("could not record the commit subject's usage for %s", project_id)

    async def write(requests: Sequence[str]) -> str | None:
        answer = await small.commit_subject(requests, on_usage=record)
        return None if answer is None else answer.text

    return write


def _turn_title(job: _Job) -> str:
    """What a turn was asked to do, for its commit message."""
    if isinstance(job.data, UserData):
        return job.data.text or "Update the app"
    if isinstance(job.data, RuntimeErrorData):
        return f"Fix runtime error: {job.data.error.message}"
    return "Continue after review"
