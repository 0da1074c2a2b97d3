"""The leash (amicable_agent.leash): children that die with the agent, and the start-up sweep
of what an earlier run left. Real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest
import trio
from amicable_agent.errors import RunDirInUse
from amicable_agent.leash import LeashedProcess, run_leashed, start_ticks, sweep_run_dir
from amicable_testing.processes import process_alive, wait_for_exit, wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def trio_workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("Trio thread")]


async def test_a_leashed_child_outlives_idle_trio_worker_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PR_SET_PDEATHSIG fires when the forking *thread* ends; Trio's workers idle out.
    monkeypatch.setattr(trio._core._thread_cache, "IDLE_TIMEOUT", 0.05)
    async with trio.open_nursery() as nursery:
        child: LeashedProcess = await nursery.start(
            partial(run_leashed, SLEEPER, record_dir=tmp_path)
        )
        await trio.to_thread.run_sync(lambda: None)

        async def workers_gone() -> bool:
            return not trio_workers()

        await wait_until(workers_gone)
        with trio.move_on_after(1):  # a parent-death signal would arrive in this window
            await child.wait()
        assert process_alive(child.pid), f"killed ({child.returncode}) with a Trio thread"
        record = json.loads((tmp_path / f"{child.pid}.json").read_text())
        assert record["start"] == start_ticks(child.pid)
        nursery.cancel_scope.cancel()
    assert not process_alive(child.pid)
    assert list(tmp_path.iterdir()) == [], "the record goes with the child"


async def test_a_leashed_child_dies_with_its_agent(tmp_path: Path) -> None:
    # A small "agent": a Trio program that starts a leashed child, then is killed -9.
    program = (
        "import sys, trio\n"
        "from amicable_agent.leash import run_leashed\n"
        "async def main():\n"
        "    async with trio.open_nursery() as n:\n"
        f"        p = await n.start(run_leashed, {SLEEPER!r})\n"
        "        print(p.pid, flush=True)\n"
        "        await trio.sleep(600)\n"
        "trio.run(main)\n"
    )
    agent = await trio.lowlevel.open_process(
        [sys.executable, "-c", program], stdout=subprocess.PIPE
    )
    try:
        assert agent.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                line += await agent.stdout.receive_some()
        child = int(line)
        assert process_alive(child)
        agent.kill()
        await agent.wait()
        await wait_for_exit(child)  # a deadline, not a timing claim
    finally:
        agent.kill()
        await agent.wait()
        await agent.stdout.aclose()


def _record(run: Path, pid: int, start: int | None, owner: int, owner_start: int | None) -> Path:
    run.mkdir(exist_ok=True)
    path = run / f"{pid}.json"
    body = {"pid": pid, "start": start, "owner": owner, "owner_start": owner_start, "argv0": "x"}
    path.write_text(json.dumps(body))
    return path


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_the_sweep_ends_a_dead_agents_child_and_spares_a_reused_pid(tmp_path: Path) -> None:
    run = tmp_path / "run"
    left = subprocess.Popen(SLEEPER, start_new_session=True)
    innocent = subprocess.Popen(SLEEPER, start_new_session=True)
    try:
        dead = _dead_pid()
        _record(run, left.pid, start_ticks(left.pid), dead, 1)
        # The same pid number, but another start time: a reused pid, not our child.
        start = start_ticks(innocent.pid)
        assert start is not None
        _record(run, innocent.pid, start - 1, dead, 1)
        (run / "garbage.json").write_text("{not json")
        assert sweep_run_dir(run) == 1
        left.wait(timeout=10)
        assert process_alive(innocent.pid)
        assert list(run.iterdir()) == []
    finally:
        for p in (left, innocent):
            p.kill()
            p.wait()


def test_the_sweep_refuses_when_another_live_agent_owns_the_run_dir(tmp_path: Path) -> None:
    other = subprocess.Popen(SLEEPER)
    try:
        _record(tmp_path, 999_999, 1, other.pid, start_ticks(other.pid))
        with pytest.raises(RunDirInUse, match=f"pid {other.pid}"):
            sweep_run_dir(tmp_path)
    finally:
        other.kill()
        other.wait()
