"""Parallel QA runs at most as many checks at once as the sandbox has CPUs, in order."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from amicable_agent.errors import RuntimeClientError
from amicable_agent.loop.qa import run_qa
from amicable_agent.loop.settings import LoopSettings
from amicable_protocol.runtime import ExecResult, GlobResult, TreeResult


class CountingRuntime:
    """Just what QA uses: a tree, no files, ``nproc`` and checks that take a while."""

    def __init__(self, cpus: str | None) -> None:
        self.cpus = cpus
        self.running = 0
        self.most = 0
        self.started: list[str] = []

    async def tree(self, path: str, **_: Any) -> TreeResult:
        await trio.lowlevel.checkpoint()
        return TreeResult(path, ())

    async def glob(self, pattern: str, path: str) -> GlobResult:
        await trio.lowlevel.checkpoint()
        return GlobResult(())

    async def exec(self, command: str, **_: Any) -> ExecResult:
        if command == "nproc":
            await trio.lowlevel.checkpoint()
            if self.cpus is None:
                raise RuntimeClientError(0, "unreachable", "no runtime")
            return ExecResult(0, self.cpus + "\n", "", False, False, 1)
        self.started.append(command)
        self.running += 1
        self.most = max(self.most, self.running)
        await trio.sleep(1 + len(self.started))
        self.running -= 1
        return ExecResult(0, "", "", False, False, 1)


@pytest.mark.parametrize(
    ("cpus", "most"), [("2", 2), ("1", 1), ("8", 3), (None, 3), ("garbage", 3)]
)
async def test_parallel_checks_are_bounded_by_the_sandbox_cpus(
    cpus: str | None, most: int, autojump_clock: trio.testing.MockClock
) -> None:
    runtime = CountingRuntime(cpus)
    commands = ("check-a", "check-b", "check-c")
    settings = LoopSettings(qa_commands=commands, qa_parallel=True)
    outcome = await run_qa(runtime, settings)  # type: ignore[arg-type]
    assert runtime.most == most
    assert runtime.started[: min(most, 3)] == list(commands[: min(most, 3)])
    assert [c.command for c in outcome.checks] == list(commands)
    assert all(c.exit_code == 0 for c in outcome.checks)


async def test_sequential_mode_never_asks_for_the_cpus(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runtime = CountingRuntime("2")
    settings = LoopSettings(qa_commands=("check-a", "check-b"), qa_parallel=False)
    await run_qa(runtime, settings)  # type: ignore[arg-type]
    assert runtime.started == ["check-a", "check-b"]
    assert runtime.most == 1
