"""Supervision of the workspace's dev server (``AMICABLE_PREVIEW_CMD``).

The command runs through ``sh -c`` in its own process group in the workspace. When it exits
it is restarted after an exponential backoff. Restarts come out of a budget of
``max_restarts`` per :data:`RESTART_WINDOW_S` that refills over time (a token bucket,
:class:`RestartBudget`): a crash loop runs it dry and the state is ``exhausted`` until a
restart has refilled (or one is asked for), while a long-lived sandbox whose dev server
crashes now and then never does. Its merged stdout/stderr is kept in a ring buffer (and
appended to ``AMICABLE_PREVIEW_LOG_PATH`` when set). Readiness is a TCP connect to the
preview port, probed while the process runs.
"""

from __future__ import annotations

import collections
import math
import os
from typing import TYPE_CHECKING

import trio

from .procs import kill_group, wait_exitable
from .spawn import spawn_dev_server, workspace_incomplete

if TYPE_CHECKING:
    import subprocess

    # the protocol (cattrs) is imported on first use: the supervisor spawns the dev server
    # before the runtime imports its HTTP stack, and that spawn should not wait for imports
    from amicable_protocol.runtime import PreviewLogs, PreviewState, PreviewStatus

    from .config import RuntimeConfig

#: ``max_restarts`` restarts per this many seconds (the budget refills continuously).
RESTART_WINDOW_S = 3600.0
#: A run this long resets the backoff (the crash was not a crash loop).
_STABLE_RUN_S = 30.0
_DRAIN_TIMEOUT_S = 2.0
_PROBE_TIMEOUT_S = 1.0
#: Output wakes the readiness probe early (Vite prints its banner once it listens); this
#: bounds how often a chatty dev server can make it probe.
_MIN_PROBE_GAP_S = 0.02
#: How long the first start of an ``npm`` command waits for the workspace to be complete.
_WORKSPACE_WAIT_S = 60.0
_WORKSPACE_POLL_S = 0.05


def probe_host(listen_host: str) -> str:
    """The address to probe for a server listening on ``listen_host``."""
    if listen_host in ("", "0.0.0.0", "*"):
        return "127.0.0.1"
    if listen_host == "::":
        return "::1"
    return listen_host


def backoff_s(failures: int, initial_s: float, max_s: float) -> float:
    """Delay before the next restart after ``failures`` consecutive quick exits."""
    return float(min(initial_s * 2 ** min(failures, 32), max_s))


class RestartBudget:
    """``capacity`` restarts per ``window_s``, refilling continuously (a token bucket).

    Pure bookkeeping: every method takes the current time (``trio.current_time()``).
    """

    def __init__(self, capacity: int, window_s: float, now: float = 0.0) -> None:
        self.capacity = max(0, capacity)
        self._rate = self.capacity / window_s if window_s > 0 else math.inf
        self._tokens = float(self.capacity)
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self._rate)
        self._at = max(self._at, now)

    def available(self, now: float) -> bool:
        """A restart may happen now."""
        self._refill(now)
        return self._tokens >= 1

    def take(self, now: float) -> bool:
        """Spend one restart; False (nothing spent) when none is left."""
        if not self.available(now):
            return False
        self._tokens -= 1
        return True

    def used(self, now: float) -> int:
        """Restarts counted against the budget now (``restarts`` of the status)."""
        self._refill(now)
        return math.ceil(self.capacity - self._tokens - 1e-9)

    def wait_s(self, now: float) -> float:
        """How long until a restart is available again (0 when one is)."""
        self._refill(now)
        if self._tokens >= 1:
            return 0.0
        if self.capacity == 0 or self._rate == 0:
            return math.inf
        return (1 - self._tokens) / self._rate

    def reset(self, now: float) -> None:
        """Full again (an explicit restart)."""
        self._tokens = float(self.capacity)
        self._at = now


class _DevServer:
    """A dev server spawned with :mod:`subprocess` (``spawn.py``), with the parts of
    :class:`trio.Process` the supervisor uses (its pipe is moved to a trio stream)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        self._popen = popen
        self.pid = popen.pid
        self.stdout = trio.lowlevel.FdStream(os.dup(popen.stdout.fileno()))
        popen.stdout.close()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        """Wait for the exit and reap (as :meth:`trio.Process.wait`)."""
        if self._popen.poll() is None:
            await wait_exitable(self.pid)
        return self._popen.wait()


class PreviewSupervisor:
    """Keeps the dev server running; owns its process group.

    Use ``await nursery.start(supervisor.run)``; status and logs are sync snapshots.

    Args:
        config: the runtime config (command, port, restart budget, backoff, log path).
        restart_window_s: the budget's window: ``config.preview_max_restarts`` restarts per
            this many seconds.
        spawned: the dev server already started by :func:`~.spawn.spawn_early` (before trio
            was imported): adopted as the first run instead of spawning one.
    """

    def __init__(
        self,
        config: RuntimeConfig,
        *,
        restart_window_s: float = RESTART_WINDOW_S,
        spawned: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.config = config
        self._spawned = spawned if config.preview_cmd is not None else None
        self.state: PreviewState = "stopped" if config.preview_cmd is None else "starting"
        self.pid: int | None = None
        self._budget = RestartBudget(config.preview_max_restarts, restart_window_s)
        self._window_s = restart_window_s
        self.last_exit_code: int | None = None
        self.ready = False
        self._lines: collections.deque[str] = collections.deque(maxlen=config.preview_log_lines)
        self._partial = b""
        self._restart = trio.Event()
        self._changed = trio.Event()
        self._output = trio.Event()

    def _set_state(self, state: PreviewState) -> None:
        if state != self.state:
            self.state = state
            self._changed.set()
            self._changed = trio.Event()

    async def wait_state(self, *states: PreviewState) -> PreviewStatus:
        """Wait until the supervisor is in one of ``states``; returns that status."""
        while self.state not in states:
            await self._changed.wait()
        return self.status()

    @property
    def restarts(self) -> int:
        """Restarts after a crash counted against the budget right now."""
        return self._budget.used(trio.current_time())

    @property
    def enabled(self) -> bool:
        """Whether a dev-server command is configured."""
        return self.config.preview_cmd is not None

    def status(self) -> PreviewStatus:
        """An immutable snapshot for ``GET /v1/preview`` and ``/readyz``."""
        from amicable_protocol.runtime import PreviewStatus

        return PreviewStatus(
            state=self.state,
            pid=self.pid,
            restarts=self.restarts,
            max_restarts=self.config.preview_max_restarts,
            last_exit_code=self.last_exit_code,
            port=self.config.preview_port,
            ready=self.ready,
        )

    def logs(self, tail: int | None = None) -> PreviewLogs:
        """The last ``tail`` output lines (all kept lines when ``None``)."""
        from amicable_protocol.runtime import PreviewLogs

        lines = list(self._lines)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return PreviewLogs(lines=tuple(lines))

    def request_restart(self) -> None:
        """Kill the current process (if any) and start again now, also after ``exhausted``.

        Not ready from here on: a caller polling ``/readyz`` after asking for a restart must
        not see the outgoing process's readiness.
        """
        if self.enabled:
            self._restart.set()
            self.ready = False
            self._set_state("starting")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise until cancelled; ``started()`` once the first process is spawned.

        Cancellation:
            The dev server's process group is killed and reaped (shielded) before returning.
        """
        if not self.enabled:
            task_status.started()
            await trio.sleep_forever()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._probe_loop)
            if self._spawned is None and self._workspace_incomplete():
                task_status.started()
                task_status = trio.TASK_STATUS_IGNORED
                await self._wait_for_workspace()
            failures = 0
            self._budget.reset(trio.current_time())
            while True:
                self._restart = trio.Event()
                began = trio.current_time()
                code = await self._run_once(task_status)
                task_status = trio.TASK_STATUS_IGNORED
                if self._restart.is_set():
                    failures = 0
                    continue
                self.last_exit_code = code
                self._log(f"[amicable] dev server exited with code {code}")
                if trio.current_time() - began >= _STABLE_RUN_S:
                    failures = 0
                exhausted = not self._budget.available(trio.current_time())
                if exhausted and await self._wait_out_exhaustion():
                    failures = 0
                    continue  # a restart was asked for: start at once
                self._set_state("backoff")
                delay = backoff_s(
                    failures,
                    self.config.preview_backoff_initial_s,
                    self.config.preview_backoff_max_s,
                )
                failures += 1
                with trio.move_on_after(delay):
                    await self._restart.wait()
                if not self._restart.is_set():
                    self._budget.take(trio.current_time())

    async def _wait_out_exhaustion(self) -> bool:
        """``exhausted`` until a restart has refilled or one is asked for (then True, with
        the budget full again)."""
        self._set_state("exhausted")
        wait = self._budget.wait_s(trio.current_time())
        self._log(
            f"[amicable] restart limit reached ({self.config.preview_max_restarts} per "
            f"{self._window_s:g} s); next try in {wait:.0f} s, or on an explicit restart"
        )
        with trio.move_on_after(wait):
            await self._restart.wait()
        if self._restart.is_set():
            self._budget.reset(trio.current_time())
            return True
        return False

    def _workspace_incomplete(self) -> bool:
        # the local backend starts init-workspace and the runtime at once (spawn.py)
        return workspace_incomplete(self.config.preview_cmd or "", self.config.workspace)

    async def _wait_for_workspace(self) -> None:
        """Wait (bounded) until ``package.json`` and ``node_modules`` exist, or a restart."""
        self._log("[amicable] waiting for package.json and node_modules before starting")
        with trio.move_on_after(_WORKSPACE_WAIT_S):
            # another process creates them: poll (node_modules appears whole, by rename)
            while self._workspace_incomplete() and not self._restart.is_set():
                with trio.move_on_after(_WORKSPACE_POLL_S):
                    await self._restart.wait()

    async def _run_once(self, task_status: trio.TaskStatus[None]) -> int:
        config = self.config
        assert config.preview_cmd is not None
        self._set_state("starting")
        self.ready = False
        # the first run was spawned before trio was imported (spawn.py); every later one the
        # same way, now
        popen, self._spawned = self._spawned or spawn_dev_server(config), None
        command = str(popen.args[-1]) if isinstance(popen.args, list) else config.preview_cmd
        self._log(f"[amicable] starting: {config.preview_cmd}")
        if command != config.preview_cmd:
            self._log(f"[amicable] (what npm would run, without npm's start-up: {command})")
        proc = _DevServer(popen)
        assert proc.stdout is not None
        self.pid = proc.pid
        task_status.started()
        try:
            pumped = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, proc.stdout, pumped)

                async def restart_requested() -> None:
                    await self._restart.wait()
                    kill_group(proc.pid)

                nursery.start_soon(restart_requested)
                await proc.wait()
                kill_group(proc.pid)  # leftovers of the group (e.g. esbuild) go too
                with trio.move_on_after(_DRAIN_TIMEOUT_S):
                    await pumped.wait()  # keep the last lines (often the crash reason)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                kill_group(proc.pid)
                # no deadline: after SIGKILL the kernel bounds this, and giving up would
                # leave a zombie (and an fd) behind
                await proc.wait()
                await proc.stdout.aclose()
                self.pid = None
                self.ready = False
        code = proc.returncode if proc.returncode is not None else -9
        return 128 - code if code < 0 else code

    async def _pump(self, stream: trio.abc.ReceiveStream, done: trio.Event) -> None:
        log_file = None
        if self.config.preview_log_path is not None:
            log_file = await trio.open_file(self.config.preview_log_path, "ab")
        try:
            while chunk := await stream.receive_some(65536):
                if log_file is not None:
                    await log_file.write(chunk)
                    await log_file.flush()
                self._feed(chunk)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            done.set()
            if log_file is not None:
                with trio.CancelScope(shield=True):
                    await log_file.aclose()

    def _feed(self, chunk: bytes | bytearray) -> None:
        self._output.set()
        data = self._partial + bytes(chunk)
        *complete, self._partial = data.split(b"\n")
        for raw in complete:
            self._lines.append(raw.decode("utf-8", errors="replace").rstrip("\r"))
        if len(self._partial) > 8192:  # a line without end: keep it bounded
            self._lines.append(self._partial.decode("utf-8", errors="replace"))
            self._partial = b""

    def _log(self, line: str) -> None:
        self._lines.append(line)

    async def _probe_loop(self) -> None:
        host = probe_host(self.config.preview_host)
        while True:
            # output during the probe counts as new output for the next round
            self._output = trio.Event()
            pid = self.pid
            if pid is not None:
                ok = await self._probe(host)
                # the answer is stale if the process changed or a restart came meanwhile
                if self.pid == pid and not self._restart.is_set():
                    self.ready = ok
                    if self.state in ("starting", "running"):
                        self._set_state("running" if ok else "starting")
            with trio.move_on_after(self.config.preview_probe_interval_s):
                if self.ready:
                    await trio.sleep_forever()
                # not ready yet: probe again as soon as the dev server says something
                await self._output.wait()
                await trio.sleep(_MIN_PROBE_GAP_S)

    async def _probe(self, host: str) -> bool:
        with trio.move_on_after(_PROBE_TIMEOUT_S):
            try:
                stream = await trio.open_tcp_stream(host, self.config.preview_port)
            except OSError:
                return False
            await stream.aclose()
            return True
        return False
