"""The exec process layer directly: fds and children are always released, pidfd-less mode."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
import trio
from amicable_protocol.runtime import ExecRequest, ExecResult
from amicable_sandbox_runtime import execs, procs
from amicable_sandbox_runtime.errors import CallerGone, ExecFailed
from amicable_testing.processes import wait_for_exit

if TYPE_CHECKING:
    from pathlib import Path


async def run(cwd: Path, command: str, **fields: object) -> tuple[ExecResult, str, str]:
    result = await execs.run_collected(
        ExecRequest(command=command, **fields),  # type: ignore[arg-type]
        cwd=cwd,
        default_timeout_s=60,
        max_output_chars=10_000,
    )
    return result, result.stdout, result.stderr


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@pytest.fixture(params=["pidfd", "thread"])
def exit_watch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of noticing the exit: a pidfd, or a thread when pidfds are unavailable."""
    if request.param == "thread":
        monkeypatch.setattr(procs, "_pidfd_usable", False)
    return str(request.param)


async def test_exit_status_output_and_reaping(tmp_path: Path, exit_watch: str) -> None:
    before = open_fds()
    result, out, err = await run(tmp_path, "echo $$; echo oops >&2; exit 5")
    assert (result.exit_code, err, result.timed_out) == (5, "oops\n", False)
    assert_reaped(int(out))
    result, out, _ = await run(tmp_path, "echo $$; kill -9 $$")
    assert result.exit_code == 128 + 9
    assert_reaped(int(out))
    assert open_fds() == before


async def test_background_job_is_killed_and_reaped(tmp_path: Path, exit_watch: str) -> None:
    before = open_fds()
    result, out, _ = await run(tmp_path, "sleep 1000 & echo $!; echo done")
    assert result.exit_code == 0
    await wait_for_exit(int(out.split()[0]))
    assert open_fds() == before


async def test_timeout_kills_and_reaps(tmp_path: Path, exit_watch: str) -> None:
    before = open_fds()
    result, out, err = await run(tmp_path, "echo $$; sleep 1000", timeout_s=0.3)
    assert (result.exit_code, result.timed_out) == (124, True)
    assert err.endswith("Command timed out after 0.3s")
    assert_reaped(int(out))
    assert open_fds() == before


async def test_cancellation_kills_and_reaps(tmp_path: Path, exit_watch: str) -> None:
    before = open_fds()
    pid_file = tmp_path / "pid"
    with trio.move_on_after(0.5):  # a deadline on the caller, like a client disconnect
        await run(tmp_path, f"echo $$ > {pid_file}; sleep 1000")
    assert_reaped(int(pid_file.read_text()))
    assert open_fds() == before


async def test_output_held_open_outside_the_group_is_cut_after_the_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # setsid moves the sleeper out of the command's group: it keeps stdout open after the
    # shell exits and survives the group kill, so the runtime stops waiting after the drain
    monkeypatch.setattr(execs, "_DRAIN_TIMEOUT_S", 0.3)
    command = (
        "setsid sh -c 'echo $$ > escaped.pid; exec sleep 1000' & "
        "while [ ! -s escaped.pid ]; do sleep 0.01; done; echo hi"
    )
    try:
        with trio.fail_after(30):
            result, out, _ = await run(tmp_path, command)
        assert (result.exit_code, out) == (0, "hi\n")
    finally:
        os.kill(int((tmp_path / "escaped.pid").read_text()), 9)


async def test_spawn_failure_leaves_nothing_open(tmp_path: Path) -> None:
    before = open_fds()
    with pytest.raises(ExecFailed, match="No such file or directory"):
        await run(tmp_path / "gone", "true")
    assert open_fds() == before


async def test_a_caller_that_left_before_the_watcher_started_is_noticed(tmp_path: Path) -> None:
    # the watcher starts after _WATCH_AFTER_S; a caller already gone then ends the command
    before = open_fds()
    pid_file = tmp_path / "pid"

    async def already_gone() -> None:
        return

    with trio.fail_after(30), pytest.raises(CallerGone):
        await execs.run_collected(
            ExecRequest(command=f"echo $$ > {pid_file}; exec sleep 1000"),
            cwd=tmp_path,
            default_timeout_s=600,
            max_output_chars=100,
            watch=already_gone,
        )
    assert_reaped(int(pid_file.read_text()))
    assert open_fds() == before


async def test_quick_commands_do_not_start_the_watcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def watch() -> None:
        nonlocal calls
        calls += 1
        await trio.sleep_forever()

    monkeypatch.setattr(execs, "_WATCH_AFTER_S", 30.0)  # "quick", even on a loaded machine
    result = await execs.run_collected(
        ExecRequest(command="true"),
        cwd=tmp_path,
        default_timeout_s=600,
        max_output_chars=100,
        watch=watch,
    )
    assert (result.exit_code, calls) == (0, 0)
    monkeypatch.setattr(execs, "_WATCH_AFTER_S", 0.05)
    result = await execs.run_collected(
        ExecRequest(command="sleep 0.3; echo done"),
        cwd=tmp_path,
        default_timeout_s=600,
        max_output_chars=100,
        watch=watch,
    )
    assert (result.exit_code, result.stdout, calls) == (0, "done\n", 1)
