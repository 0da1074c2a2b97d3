"""Child processes on a leash: they die with the agent, however the agent ends.

Every long-lived child of the agent (the preview router, each sandbox's bubblewrap or
runtime, pasta) is started here:

- with ``PR_SET_PDEATHSIG`` = SIGKILL, so a ``kill -9`` of the agent takes them along.
  The kernel sends that signal when the *thread* that forked the child ends, and Trio forks
  from worker threads that idle out after seconds — so the fork happens on one thread that
  lives as long as the agent (:class:`_Spawner`), never on a Trio worker;
- in a session of its own (a process group to kill as a whole);
- recorded in a run directory (``<data dir>/run/<pid>.json``: the child's pid and start
  time, and the agent's), removed again once the child is reaped. An agent that starts on
  the same data directory calls :func:`sweep_run_dir` before it binds anything: a child a
  dead agent left running (one started without the leash, or a leash that could not hold)
  is killed with its group. The start times keep a reused pid from being mistaken for one.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import trio

from .errors import RunDirInUse

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_LIBC: Any = None


def _prctl() -> Any:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC.prctl


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22),
    or None when there is no such (live, non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class _Spawner:
    """One daemon thread that forks every leashed child (see the module docstring)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        thread = threading.Thread(target=self._run, name="amicable-leash", daemon=True)
        thread.start()

    def _run(self) -> None:
        while True:
            self._jobs.get()()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)


_SPAWNER: _Spawner | None = None
_SPAWNER_LOCK = threading.Lock()


def _spawner() -> _Spawner:
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None:
            _SPAWNER = _Spawner()
        return _SPAWNER


class LeashedProcess:
    """A running leashed child: ``pid``, ``returncode``, :meth:`wait`, :meth:`send_signal`."""

    def __init__(self, popen: subprocess.Popen[bytes], record: Path | None) -> None:
        self._popen = popen
        self._record = record
        self.pid = popen.pid
        self.returncode: int | None = None

    async def wait(self) -> int:
        """Wait until the child exits (it is reaped, its run record removed)."""
        if self.returncode is None:
            try:
                pidfd = os.pidfd_open(self.pid)
            except OSError:
                pidfd = None
            try:
                while self._popen.poll() is None:
                    if pidfd is None:
                        await trio.sleep(0.05)
                    else:
                        await trio.lowlevel.wait_readable(pidfd)
            finally:
                if pidfd is not None:
                    os.close(pidfd)
            self.returncode = self._popen.returncode
            if self._record is not None:
                with suppress(OSError):
                    self._record.unlink()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal the child (not its group); a child already gone is fine."""
        if self.returncode is None:
            with suppress(ProcessLookupError):
                self._popen.send_signal(sig)


async def _spawn(argv: Sequence[str], options: dict[str, Any]) -> subprocess.Popen[bytes]:
    prctl = _prctl()
    agent = os.getpid()

    def leash() -> None:  # in the child, between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != agent:  # the agent died before the leash was on
            os._exit(1)

    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    box: dict[str, Any] = {}

    def job() -> None:
        try:
            box["popen"] = subprocess.Popen(
                list(argv), preexec_fn=leash, start_new_session=True, **options
            )
        except Exception as exc:  # handed to the waiting task
            box["error"] = exc
        with suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    _spawner().submit(job)
    with trio.CancelScope(shield=True):  # a child that started must be owned by someone
        await done.wait()
    if "error" in box:
        raise box["error"]
    popen: subprocess.Popen[bytes] = box["popen"]
    return popen


def _write_record(record_dir: Path, pid: int, argv: Sequence[str]) -> Path:
    record_dir.mkdir(parents=True, exist_ok=True)
    path = record_dir / f"{pid}.json"
    body = {
        "pid": pid,
        "start": start_ticks(pid),
        "owner": os.getpid(),
        "owner_start": start_ticks(os.getpid()),
        "argv0": str(argv[0]),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)
    return path


async def _kill_now(process: LeashedProcess) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_leashed(
    argv: Sequence[str],
    *,
    deliver_cancel: Callable[[LeashedProcess], Awaitable[None]] = _kill_now,
    record_dir: Path | None = None,
    task_status: trio.TaskStatus[LeashedProcess] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> int:
    """Run ``argv`` on the leash until it exits; ``started(process)`` once it runs.

    Args:
        deliver_cancel: how to stop it when cancelled (default: SIGKILL its group).
        record_dir: where its run record goes (None: not recorded).
        options: :class:`subprocess.Popen` keywords (``env``, ``cwd``, ``stdin``,
            ``stdout``, ``stderr``, ``pass_fds``).

    Returns:
        The exit status.

    Cancellation: ``deliver_cancel(process)`` runs shielded, then the group is SIGKILLed
    if the child is still there, and the child is reaped before Cancelled propagates.
    """
    popen = await _spawn(argv, options)
    record = None
    if record_dir is not None:
        try:
            record = await trio.to_thread.run_sync(_write_record, record_dir, popen.pid, argv)
        except OSError as exc:
            log.warning("cannot record child %d in %s: %s", popen.pid, record_dir, exc)
    process = LeashedProcess(popen, record)
    try:
        task_status.started(process)
        return await process.wait()
    finally:
        if process.returncode is None:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(30):
                    await deliver_cancel(process)
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


def sweep_run_dir(record_dir: Path) -> int:
    """Kill (with their groups) the recorded children of agents that are gone; returns how
    many were still running. Call it before starting anything: records of this process are
    its own live children and are left alone.

    Raises:
        RunDirInUse: a live agent (not this process) owns children recorded here.
    """
    if not record_dir.is_dir():
        return 0
    killed = 0
    for path in record_dir.glob("*.json"):
        try:
            rec = json.loads(path.read_text())
            pid, start = int(rec["pid"]), rec["start"]
            owner, owner_start = int(rec["owner"]), rec["owner_start"]
        except (OSError, ValueError, KeyError, TypeError):
            with suppress(OSError):
                path.unlink()
            continue
        if owner == os.getpid():
            continue  # this agent's own live children
        if owner_start is not None and start_ticks(owner) == owner_start:
            raise RunDirInUse(
                f"another amicable (pid {owner}) is running on this data directory; stop it "
                "first or use another --data-dir / AMICABLE_DATA_DIR"
            )
        if start is not None and start_ticks(pid) == start:
            log.warning("stopping %s (pid %d) that an earlier run left behind", rec["argv0"], pid)
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            killed += 1
            _wait_gone(pid, start)
        with suppress(OSError):
            path.unlink()
    return killed


def _wait_gone(pid: int, start: int) -> None:
    """Block up to 5 s until ``pid`` (started at ``start``) is dead, so its ports are free."""
    for _ in range(500):
        if start_ticks(pid) != start:
            return
        time.sleep(0.01)
