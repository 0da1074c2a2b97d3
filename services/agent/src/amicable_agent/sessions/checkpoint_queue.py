"""A session's checkpoints, taken in the background after its turns.

The turn worker (:mod:`.jobs`) tells :class:`CheckpointQueue` when a turn starts and when it
ends (after ``update_completed``), and goes on with the next turn at once: a slow checkpoint
(a big repository, a busy disk) never delays a prompt. One task takes the checkpoints, one at a
time, in order. The queue is bounded by merging: turns that end while a checkpoint runs are
taken together by the next one (waiting longer would not separate them — their files are in
the same working tree), so at most one checkpoint runs and one waits.

Titles: a turn that finished gives its request as the title; a cancelled or failed one
"interrupted: <request>". The titles of turns whose files are not in a checkpoint yet are kept
in the store (:data:`PENDING_KEY`, the running turn counting as interrupted), so the files of a
turn cut by a session close or an agent restart become an "interrupted: …" checkpoint when
the project opens next, instead of being attributed to the next turn.

The ids of the turns a checkpoint took travel with their titles (not across a restart): its
``trace_event`` is stored under the last of them (:func:`.transcript.save_turn_checkpoint`), so
a reopened project shows that turn's "View changes" as the live chat did — on the newest turn
of a merged checkpoint, whose diff is the checkpoint's (the earlier turns' files are in it too,
so a button on each would show the same diff under several requests).

A checkpoint that fails or times out is cleaned up at once (partial packs, locks; see
:mod:`._git_scripts`), logged, told to the editor (``error`` ``checkpoint_failed`` or
``history_full``, once per session and code), and its turns are carried into the next one.

After every checkpoint (and after :meth:`CheckpointQueue.prepare`, which catches up on
commits an earlier snapshot missed) the new commits are copied out of the sandbox as a
snapshot (:mod:`.snapshots`), still under the queue's lock. A snapshot that fails is logged
and told to the editor once (``snapshot_failed``); the next one carries its commits.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio
from amicable_protocol.messages import ErrorData, MessageType, TraceEvent

from amicable_agent.errors import CheckpointError, SnapshotError, TurnRunning

from .checkpoints import INTERRUPTED_PREFIX, Checkpoint, CheckpointPolicy, Checkpoints, format_bytes
from .transcript import save_turn_checkpoint

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from amicable_protocol.messages import ServerData

    from amicable_agent.loop.api import RuntimeClient
    from amicable_agent.store import Store

    from .snapshots import Snapshots

log = logging.getLogger(__name__)

#: Store state key: titles of turns whose files are not in a checkpoint yet.
PENDING_KEY = "checkpoints_pending"
#: Deadline of one checkpoint in the background (``git gc`` included).
CHECKPOINT_TIMEOUT_S = 120.0
#: Deadline of the cleanup after a cut checkpoint (shielded when the session closes).
RECOVER_TIMEOUT_S = 15.0
#: ``tool_name`` of the ``trace_event`` announcing a new checkpoint.
CHECKPOINT_TRACE_TOOL = "checkpoint"
#: Titles remembered for one merged checkpoint (its subject is capped anyway).
MAX_TITLES = 10
#: Codes not worth an ``error`` to the editor (the History panel says so itself).
_QUIET_CODES = frozenset({"git_unavailable"})
#: A single request longer than this gets a written subject (when a writer is configured).
SUBJECT_MIN_REWRITE = 72
#: Deadline of one snapshot in the background.
SNAPSHOT_TIMEOUT_S = 300.0


def merged_title(titles: Sequence[str]) -> str:
    """One subject for the turns ``titles`` (oldest first) taken in one checkpoint."""
    if len(titles) <= 1:
        return titles[0] if titles else "Update the app"
    return "; ".join(titles)


def _bounded(titles: list[str]) -> list[str]:
    return titles[-MAX_TITLES:]


class CheckpointQueue:
    """The checkpoints of one session: a bounded queue served by :meth:`serve`.

    Args:
        session_id: the session (== project) id; the pending titles are stored under it.
        store: where the pending titles are kept.
        runtime: returns the session's runtime client (None before provisioning).
        send: broadcasts a message to the session's sockets.
        policy: size limits of checkpoints.
        timeout_s: deadline of one checkpoint.
        snapshots: copies each checkpoint out of the sandbox (None: no snapshots).
        snapshot_timeout_s: deadline of one snapshot.
        subject: writes a commit subject for the requests of a checkpoint whose title would
            be long or merged (the small model; None: the requests are the subject).
    """

    def __init__(
        self,
        session_id: str,
        store: Store,
        runtime: Callable[[], RuntimeClient | None],
        send: Callable[[MessageType, ServerData], Awaitable[None]],
        policy: CheckpointPolicy,
        *,
        timeout_s: float = CHECKPOINT_TIMEOUT_S,
        snapshots: Snapshots | None = None,
        snapshot_timeout_s: float = SNAPSHOT_TIMEOUT_S,
        subject: Callable[[Sequence[str]], Awaitable[str | None]] | None = None,
    ) -> None:
        self._session_id = session_id
        self._subject = subject
        self._snapshots = snapshots
        self._snapshot_timeout_s = snapshot_timeout_s
        self._snapshot_due = False
        self._store = store
        self._runtime = runtime
        self._send = send
        self._policy = policy
        self._timeout_s = timeout_s
        self._waiting: list[str] = []  # finished turns (and carried ones), oldest first
        self._taking: list[str] = []  # the turns of the checkpoint being taken
        self._waiting_ids: list[str] = []  # ids of the recorded turns among _waiting
        self._taking_ids: list[str] = []  # ... and among _taking
        self._turn: str | None = None  # the running turn
        self._due = False  # a checkpoint should run (carried turns alone do not make one)
        self._wake = trio.Event()
        self._idle = trio.Event()
        self._git = trio.Lock()  # held while a checkpoint runs, and by a restore
        self._save_lock = trio.Lock()
        self._reported: set[str] = set()
        self.ready = False

    # --- the turn worker's side ---------------------------------------------------------

    async def turn_started(self, title: str) -> None:
        """A turn asked for ``title`` starts: until it is checkpointed it counts as
        interrupted in the store."""
        self._turn = title
        await self._save()

    async def turn_finished(
        self, title: str, *, interrupted: bool, turn_id: str | None = None
    ) -> None:
        """The turn ended (after its ``update_completed``): queue its checkpoint. Waits only
        for the store write, never for the checkpoint. ``turn_id``: the turn's stored record
        (None: it has none), which the checkpoint is remembered under."""
        self._turn = None
        self._waiting = _bounded([*self._waiting, _titled(title, interrupted)])
        if turn_id is not None:
            self._waiting_ids = _bounded([*self._waiting_ids, turn_id])
        self._due = True
        self._wake.set()
        await self._save()

    def snapshot_soon(self) -> None:
        """Take a snapshot in the background (a restore made a checkpoint of its own)."""
        if self._snapshots is not None:
            self._snapshot_due = True
            self._wake.set()

    @property
    def busy(self) -> bool:
        """A checkpoint or a snapshot is running or due."""
        return self._due or self._snapshot_due or self._git.locked()

    # --- the worker ---------------------------------------------------------------------

    async def prepare(self) -> bool:
        """Make sure the repository and its baseline exist, after committing what an earlier
        session left unfinished as "interrupted: …". Returns whether it worked (``ready``).

        Cancellation: as :meth:`serve`: what the cut git command left is cleaned up.
        """
        left = await self._load()
        try:
            async with self._git:
                checkpoints = self._checkpoints()
                if checkpoints is None:
                    return False
                if left:
                    self._waiting = _bounded([*left, *self._waiting])
                    ok = await self._take(checkpoints, "left by an earlier session")
                else:
                    ok = await self._attempt(checkpoints, None)
                if ok:
                    await self._snapshot()
        finally:
            self._poke()
        self.ready = ok
        return ok

    async def serve(self) -> None:
        """Take due checkpoints until cancelled.

        Cancellation: a checkpoint being taken is cut; the runtime kills its git, and a
        shielded, bounded cleanup removes the partial pack and locks it left. Its turns stay
        pending in the store for the next session.
        """
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            try:
                async with self._git:
                    if self._due:
                        self._due = False
                        checkpoints = self._checkpoints()
                        if checkpoints is not None:
                            await self._take(checkpoints, "turn")
                    if self._snapshot_due:
                        await self._snapshot()
            finally:
                self._poke()

    async def _take(self, checkpoints: Checkpoints, why: str) -> bool:
        self._taking, self._waiting = self._waiting, []
        self._taking_ids, self._waiting_ids = self._waiting_ids, []
        ok = await self._attempt(checkpoints, merged_title(self._taking) if self._taking else None)
        if ok:
            self._taking = []
            await self._save()
        else:
            log.info("checkpoint (%s) of session %s carried to the next", why, self._session_id)
            self._waiting = _bounded([*self._taking, *self._waiting])
            self._waiting_ids = _bounded([*self._taking_ids, *self._waiting_ids])
            self._taking = []
        self._taking_ids = []
        return ok

    async def _attempt(self, checkpoints: Checkpoints, title: str | None) -> bool:
        """One bounded checkpoint (``title`` None: only the baseline). Never raises but
        ``Cancelled``."""
        session_id = self._session_id
        try:
            made: Checkpoint | None = None
            with trio.fail_after(self._timeout_s):
                if title is None:
                    await checkpoints.ensure()
                else:
                    made = await checkpoints.create(title, subject=self._writer(title))
        except CheckpointError as exc:
            log.warning(
                "checkpoint of session %s failed (%s): %s", session_id, exc.code, exc.detail
            )
            await self._recover(checkpoints)
            await self._report(exc.code, exc.detail)
            return False
        except trio.TooSlowError:
            log.warning(
                "checkpoint of session %s did not finish in %.0f s", session_id, self._timeout_s
            )
            await self._recover(checkpoints)
            await self._report(
                "checkpoint_failed",
                f"Saving a checkpoint took longer than {self._timeout_s:.0f} s and was stopped; "
                "these changes will be part of the next checkpoint.",
            )
            return False
        except Exception as exc:  # best effort: a checkpoint never takes the session down
            log.warning("checkpoint of session %s failed: %r", session_id, exc)
            await self._recover(checkpoints)
            return False
        except BaseException:  # only to clean up after git: always re-raised
            await self._recover(checkpoints)
            raise
        if made is not None:
            await self._announce(made)
            await self._snapshot()
        return True

    def _writer(self, title: str) -> Callable[[], Awaitable[str | None]] | None:
        """Asks :attr:`_subject` for a subject when ``title`` would make a poor one (several
        requests, or one long or multi-line request); keeps the "interrupted: " mark."""
        write, requests = self._subject, list(self._taking)
        if write is None or not requests:
            return None
        if len(requests) == 1 and len(title) <= SUBJECT_MIN_REWRITE and "\n" not in title:
            return None
        interrupted = requests[-1].startswith(INTERRUPTED_PREFIX)

        async def subject() -> str | None:
            plain = [r.removeprefix(INTERRUPTED_PREFIX) for r in requests]
            written = await write(plain)
            if written and interrupted:
                return INTERRUPTED_PREFIX + written
            return written

        return subject

    async def _snapshot(self) -> None:
        """Copy the new commits out of the sandbox (bounded; never raises but
        ``Cancelled``). Called with the lock held."""
        self._snapshot_due = False
        runtime = self._runtime()
        if self._snapshots is None or runtime is None:
            return
        try:
            with trio.fail_after(self._snapshot_timeout_s):
                await self._snapshots.take(self._session_id, runtime)
        except SnapshotError as exc:
            log.warning(
                "snapshot of session %s failed (%s): %s", self._session_id, exc.code, exc.detail
            )
            await self._report_snapshot(exc.detail or exc.code)
        except trio.TooSlowError:
            log.warning("snapshot of session %s did not finish in time", self._session_id)
            await self._report_snapshot("it took too long")
        except Exception as exc:  # best effort: a snapshot never takes the session down
            log.warning("snapshot of session %s failed: %r", self._session_id, exc)

    async def _report_snapshot(self, why: str) -> None:
        if "snapshot_failed" in self._reported:
            return
        self._reported.add("snapshot_failed")
        detail = (
            f"This project's latest changes could not be saved outside the sandbox ({why}); "
            "they are in its checkpoints and will be saved with the next one."
        )
        await self._send(MessageType.ERROR, ErrorData(error="snapshot_failed", detail=detail))

    async def _recover(self, checkpoints: Checkpoints) -> None:
        # Shielded: the partial pack of a cut ``git add`` is as big as the file it hashed.
        with trio.CancelScope(shield=True), trio.move_on_after(RECOVER_TIMEOUT_S):
            try:
                await checkpoints.recover()
            except Exception as exc:
                log.warning("cleanup after a checkpoint of %s failed: %s", self._session_id, exc)

    async def _announce(self, made: Checkpoint) -> None:
        text = f"Checkpoint saved: {made.title}"
        if made.skipped:
            left = ", ".join(f"{s.path} ({format_bytes(s.bytes)})" for s in made.skipped[:5])
            more = f" and {len(made.skipped) - 5} more" if len(made.skipped) > 5 else ""
            text += f". Left out as too big: {left}{more}."
        event = TraceEvent(
            phase="post_tool_use",
            tool_name=CHECKPOINT_TRACE_TOOL,
            output={
                "sha": made.sha,
                "title": made.title,
                "files_changed": made.files_changed,
                "skipped": [{"path": s.path, "bytes": s.bytes} for s in made.skipped],
            },
            text=text,
        )
        if self._taking_ids:  # stored first: a tab reloaded on the announce finds it
            await save_turn_checkpoint(self._store, self._session_id, self._taking_ids[-1], event)
        await self._send(MessageType.TRACE_EVENT, event)

    async def _report(self, code: str, detail: str) -> None:
        if code in self._reported or code in _QUIET_CODES:
            return
        self._reported.add(code)
        error = code if code == "history_full" else "checkpoint_failed"
        await self._send(MessageType.ERROR, ErrorData(error=error, detail=detail))

    def _checkpoints(self) -> Checkpoints | None:
        runtime = self._runtime()
        if runtime is None:
            return None
        snapshots = self._snapshots
        return Checkpoints(
            runtime, policy=self._policy, timeout_s=self._timeout_s,
            after_commit=snapshots.preparer(self._session_id) if snapshots else None,
        )  # fmt: skip

    # --- a restore's side ---------------------------------------------------------------

    @asynccontextmanager
    async def hold(self, deadline: float) -> AsyncIterator[None]:
        """Wait (until ``deadline``) for the due checkpoints, then keep new ones from
        starting for the duration of the block (a restore).

        Raises:
            TurnRunning: the checkpoints did not finish in time.
        """
        held = False
        with trio.move_on_at(deadline):
            while not held:
                while self.busy:
                    await self._idle.wait()
                await self._git.acquire()
                held = not self._due  # a turn ended meanwhile: its checkpoint goes first
                if not held:
                    self._git.release()
        if not held:
            raise TurnRunning("the last checkpoint is still being saved")
        try:
            yield
        finally:
            self._git.release()
            self._poke()

    def _poke(self) -> None:
        self._idle.set()
        self._idle = trio.Event()

    # --- the store ----------------------------------------------------------------------

    def _pending(self) -> list[str]:
        running = [_titled(self._turn, True)] if self._turn is not None else []
        return [*self._taking, *self._waiting, *running]

    async def _save(self) -> None:
        """Store the pending titles (best effort: a store failure never breaks a turn)."""
        async with self._save_lock:
            value = self._pending() or None
            try:
                with trio.move_on_after(10):
                    await self._store.save_state(self._session_id, PENDING_KEY, value)
            except Exception as exc:
                log.warning("could not store pending checkpoints of %s: %s", self._session_id, exc)

    async def _load(self) -> list[str]:
        try:
            with trio.move_on_after(10):
                value = await self._store.load_state(self._session_id, PENDING_KEY)
                if isinstance(value, list):
                    return [str(v) for v in value][-MAX_TITLES:]
        except Exception as exc:
            log.warning("could not load pending checkpoints of %s: %s", self._session_id, exc)
        return []


def _titled(title: str, interrupted: bool) -> str:
    if interrupted and not title.startswith(INTERRUPTED_PREFIX):
        return INTERRUPTED_PREFIX + title
    return title
