"""Running shell commands in the workspace: own process group, timeout, output caps.

Each command runs as ``sh -c <command>`` (or, when that would only split it into words,
exec'd directly with the same result: ``plaincmd.py``) in a new session (so its process group id is its
pid). When the shell exits, when the timeout fires, or when the caller is cancelled (client
disconnect), the *whole group* is killed with SIGKILL, so background jobs and grandchildren
never outlive the request.

Linux refuses a single argument over 128 KiB (``E2BIG``), so a command over
``_ARGV_COMMAND_BYTES`` reaches the shell on its stdin instead (an anonymous in-memory file)
and is run with stdin from ``/dev/null``, as ``sh -c`` would run it; one over
``MAX_COMMAND_BYTES`` (1 MiB) is refused with ``command_too_long``. A command that cannot be
started is ``exec_failed``, never a crash.
"""

from __future__ import annotations

import codecs
import errno
import os
import signal
import stat
import tempfile
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import trio
from amicable_protocol import MAX_COMMAND_BYTES
from amicable_protocol.runtime import ExecExit, ExecRequest, ExecResult

from .errors import (
    CallerGone,
    CommandTooLong,
    ExecFailed,
    InvalidRequest,
    NotFound,
    PathTooLong,
)
from .plaincmd import plain_argv
from .procs import Child, kill_group
from .spawn import child_env

if TYPE_CHECKING:
    from pathlib import Path

    from .paths import Jail

Stream = Literal["stdout", "stderr"]
OutputCallback = Callable[[Stream, str], Awaitable[None]]
TRUNCATION_MARKER = "\n<output truncated>"
TIMEOUT_EXIT_CODE = 124
#: The shell commands run through, as ``subprocess``'s ``shell=True`` and ``system(3)`` do.
SHELL = "/bin/sh"
#: After the shell exits, how long escaped holders of the pipes may keep them open.
_DRAIN_TIMEOUT_S = 2.0
#: A command still running after this long gets a task watching for its caller to leave.
_WATCH_AFTER_S = 0.05
#: Commands longer than this (UTF-8 bytes) are given to the shell on its stdin, not as an
#: argument (Linux's limit for one argument is 128 KiB).
_ARGV_COMMAND_BYTES = 64 * 1024
#: The shell's script for a command on its stdin: read all of it, then run it with stdin
#: from /dev/null (the command never reads its own text), ``$0`` and the rest as ``sh -c``.
_RUN_STDIN = 'eval "$(command -p cat)" </dev/null'


def resolve_cwd(jail: Jail, cwd: str | None) -> Path:
    """The host directory for an exec's ``cwd`` (workspace-relative; the root when unset).

    A handful of fd-relative syscalls: cheaper inline than a thread hop per exec.

    Raises:
        NotFound: no such directory; InvalidRequest: not a directory; InvalidPath.
    """
    with jail.locate(cwd or "/") as loc:
        rel = loc.rel
        if loc.name:
            try:
                st = os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound(f"cwd does not exist: {rel}") from None
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidRequest(f"cwd is not a directory: {rel}")
    return jail.host_path(rel)


class _Capture:
    """Decodes one output stream incrementally and enforces the per-stream cap."""

    def __init__(self, name: Stream, limit: int, on_output: OutputCallback) -> None:
        self.name: Stream = name
        self.limit = limit
        self.on_output = on_output
        self.used = 0
        self.truncated = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    async def feed(self, data: bytes | memoryview, *, final: bool = False) -> None:
        if self.truncated:
            return  # the rest is dropped: not even decoded
        text = self._decoder.decode(data, final)
        if not text:
            return
        room = self.limit - self.used
        if len(text) > room:
            text = text[:room] + TRUNCATION_MARKER
            self.truncated = True
        self.used += len(text)
        await self.on_output(self.name, text)


async def run_command(
    request: ExecRequest,
    *,
    cwd: Path,
    default_timeout_s: float,
    max_output_chars: int,
    on_output: OutputCallback,
    watch: Callable[[], Awaitable[None]] | None = None,
) -> ExecExit:
    """Run ``request.command`` and report output chunks through ``on_output`` as they arrive.

    Args:
        cwd: host directory to run in (already confined by the caller).
        default_timeout_s: used when the request has no ``timeout_s``.
        max_output_chars: cap per stream; the excess is dropped after a truncation marker.
        on_output: awaited for every decoded chunk, in arrival order per stream.
        watch: returns when the caller has gone away (e.g. the HTTP client disconnected);
            started only once the command has run for ``_WATCH_AFTER_S`` (most are over by
            then, and a watcher task costs more than such a command's own bookkeeping).

    Returns:
        The exit frame; ``exit_code`` is 124 on timeout, ``128 + n`` when killed by signal n.

    Raises:
        CallerGone: ``watch`` returned; the group was killed and reaped.

    Cancellation:
        The process group is killed (SIGKILL) and reaped, shielded, before re-raising.
    """
    timeout = request.timeout_s if request.timeout_s is not None else default_timeout_s
    if not timeout > 0:
        raise InvalidRequest("timeout_s must be positive")
    _check(request)
    env = child_env(request.env)
    started = trio.current_time()
    child = _spawn(request.command, cwd, env)
    captures = {
        1: _Capture("stdout", max_output_chars, on_output),
        2: _Capture("stderr", max_output_chars, on_output),
    }

    async def forward(stream: int, data: memoryview) -> None:
        await captures[stream].feed(data, final=not data)

    deadline = started + timeout
    try:
        if watch is None:
            await child.pump(forward, deadline, drain_s=_DRAIN_TIMEOUT_S)
        else:
            watch_from = min(deadline, started + _WATCH_AFTER_S)
            await child.pump(forward, watch_from, drain_s=_DRAIN_TIMEOUT_S)
            if not child.done:
                await _pump_watched(child, forward, deadline, watch)
        timed_out = not child.exited
        if timed_out:
            kill_group(child.pid)
            drain_until = trio.current_time() + _DRAIN_TIMEOUT_S
            await child.pump(forward, drain_until, drain_s=_DRAIN_TIMEOUT_S)
            await captures[2].feed(f"\nCommand timed out after {timeout:g}s".encode())
    finally:
        await child.aclose()
    code = child.returncode if child.returncode is not None else -signal.SIGKILL
    if timed_out:
        code = TIMEOUT_EXIT_CODE
    elif code < 0:
        code = 128 - code
    return ExecExit(
        exit_code=code,
        timed_out=timed_out,
        duration_ms=int((trio.current_time() - started) * 1000),
        truncated=captures[1].truncated or captures[2].truncated,
    )


async def _pump_watched(
    child: Child,
    forward: Callable[[int, memoryview], Awaitable[None]],
    deadline: float,
    watch: Callable[[], Awaitable[None]],
) -> None:
    """``child.pump`` while ``watch`` runs alongside; raises CallerGone when it returns."""
    gone = False
    async with trio.open_nursery() as nursery:

        async def watcher() -> None:
            nonlocal gone
            await watch()
            gone = True
            nursery.cancel_scope.cancel()

        nursery.start_soon(watcher)
        await child.pump(forward, deadline, drain_s=_DRAIN_TIMEOUT_S)
        nursery.cancel_scope.cancel()
    if gone:
        raise CallerGone("the caller went away; the command was killed")


def _check(request: ExecRequest) -> None:
    """Refuse what cannot become a process: too long, or a NUL byte (argv and environment
    strings end at one).

    Raises:
        CommandTooLong: over ``MAX_COMMAND_BYTES``.
        InvalidRequest: a NUL byte in the command or the environment, ``=`` in a name.
    """
    command = request.command
    if _longer_than(command, MAX_COMMAND_BYTES):
        size = len(command.encode("utf-8", "surrogatepass"))
        raise CommandTooLong(f"the command has {size} bytes; at most {MAX_COMMAND_BYTES} are "
                             "allowed (write a script file and run it instead)")  # fmt: skip
    if "\x00" in command:
        raise InvalidRequest("the command contains a NUL byte")
    for name, value in (request.env or {}).items():
        if not name or "=" in name or "\x00" in name or "\x00" in value:
            raise InvalidRequest(f"invalid environment variable {name[:40]!r}")


def _longer_than(text: str, limit: int) -> bool:
    """Whether ``text`` has more than ``limit`` bytes in UTF-8 (encoded only when it may)."""
    return len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit


def _spawn(command: str, cwd: Path, env: dict[str, str]) -> Child:
    """Start ``command``: exec'd directly when it is a plain word list, else via the shell
    (on its stdin when it is too long to be an argument).

    Raises:
        ExecFailed: the process could not be started (``fork``/``exec`` failed).
        PathTooLong: the working directory's path is too long for the kernel.
    """
    try:
        if _longer_than(command, _ARGV_COMMAND_BYTES):
            return _spawn_from_stdin(command, cwd, env)
        plain = plain_argv(command, str(cwd), env)
        if plain is not None:
            program, argv = plain
            try:
                return Child(argv, cwd, env, executable=program)
            except OSError:
                pass  # e.g. a script without "#!": the shell runs it (nothing ran yet)
        return Child([SHELL, "-c", command], cwd, env)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise PathTooLong("the working directory's path is too long") from None
        raise ExecFailed(f"could not start the command: {exc.strerror or exc}") from None


def _spawn_from_stdin(command: str, cwd: Path, env: dict[str, str]) -> Child:
    fd = _anonymous_file()
    try:
        data = memoryview(command.encode("utf-8", "surrogatepass"))
        while data:
            data = data[os.write(fd, data) :]
        os.lseek(fd, 0, os.SEEK_SET)
        return Child([SHELL, "-c", _RUN_STDIN], cwd, env, stdin=fd)
    finally:
        os.close(fd)


def _anonymous_file() -> int:
    """A file descriptor of a new file with no name (memfd; else an unlinked temp file)."""
    try:
        return os.memfd_create("amicable-command", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # no memfd (an old kernel, a strict seccomp profile)
        fd, name = tempfile.mkstemp(prefix="amicable-command-")
        os.unlink(name)
        return fd


async def run_collected(
    request: ExecRequest,
    *,
    cwd: Path,
    default_timeout_s: float,
    max_output_chars: int,
    watch: Callable[[], Awaitable[None]] | None = None,
) -> ExecResult:
    """Run a command and collect its output (``POST /v1/exec``); see :func:`run_command`."""
    chunks: dict[Stream, list[str]] = {"stdout": [], "stderr": []}

    async def collect(stream: Stream, data: str) -> None:
        chunks[stream].append(data)

    done = await run_command(
        request,
        cwd=cwd,
        default_timeout_s=default_timeout_s,
        max_output_chars=max_output_chars,
        on_output=collect,
        watch=watch,
    )
    return ExecResult(
        exit_code=done.exit_code,
        stdout="".join(chunks["stdout"]),
        stderr="".join(chunks["stderr"]),
        truncated=done.truncated,
        timed_out=done.timed_out,
        duration_ms=done.duration_ms,
    )
