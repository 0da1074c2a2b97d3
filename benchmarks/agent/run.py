"""Agent-loop benchmark: streaming overhead at N concurrent sessions, and QA parallelism.

Usage::

    .venv/bin/python benchmarks/agent/run.py              # 50 sessions + QA on the template
    .venv/bin/python benchmarks/agent/run.py --skip-qa    # streaming part only

Streaming: a fake Messages API (separate process, so its CPU is not counted) streams every
session a reply of ``--deltas`` text deltas at a fixed rate; all sessions run a turn at once
through the real engine. Printed: the added latency per ``agent_partial`` (delta event parsed
by the agent -> message handed to the session for broadcast, p50/p99) and agent CPU seconds
per 1,000 streamed deltas. The WebSocket hop is the session layer's and is not included.

QA: the bundled Vite template (node_modules via ``amicable-sandbox-runtime init-workspace``,
cached under .cache/node_modules) is checked with the real QA commands sequentially and in
parallel; printed: both times and the ratio (target <= 0.7).
"""

from __future__ import annotations

import argparse
import contextvars
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from amicable_agent.llm import LlmClient
from amicable_agent.loop_config import LoopSettings
from amicable_agent.qa import run_qa
from amicable_agent.testing.fake_anthropic import FakeAnthropic, Reply, Text
from amicable_agent.testing.workspace_runtime import WorkspaceRuntime
from amicable_agent.turns import Engine
from amicable_protocol.messages import MessageType, ProjectInfo, UserData

REPO = Path(__file__).resolve().parents[2]
_host: contextvars.ContextVar[BenchHost] = contextvars.ContextVar("host")


class Store:
    """A minimal in-memory ConversationStore."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], Any] = {}

    async def load_conversation(self, project_id: str) -> list[dict[str, Any]]:
        await trio.lowlevel.checkpoint()
        return list(self.data.get((project_id, "conv"), []))

    async def save_conversation(self, project_id: str, messages: list[dict[str, Any]]) -> None:
        await trio.lowlevel.checkpoint()
        self.data[(project_id, "conv")] = list(messages)

    async def append_chat(self, project_id: str, role: str, text: str) -> None:
        await trio.lowlevel.checkpoint()

    async def load_state(self, project_id: str, key: str) -> Any:
        await trio.lowlevel.checkpoint()
        return self.data.get((project_id, key))

    async def save_state(self, project_id: str, key: str, value: Any) -> None:
        await trio.lowlevel.checkpoint()
        self.data[(project_id, key)] = value


class BenchHost:
    """A SessionHost that measures delta-received -> partial-sent latency."""

    def __init__(self, index: int, runtime: WorkspaceRuntime) -> None:
        self.session_id = f"bench-{index}"
        self.project = ProjectInfo(f"p{index}", "Bench", f"bench-{index}", "vite")
        self.permission_mode = "default"
        self.thinking_level = "none"
        self.runtime = runtime
        self.store = Store()
        self.last_delta = 0.0
        self.deltas = 0
        self.latencies: list[float] = []

    async def send(self, type: MessageType, data: Any, *, msg_id: str | None = None) -> None:
        if type is MessageType.AGENT_PARTIAL:
            self.latencies.append(time.perf_counter() - self.last_delta)
        await trio.lowlevel.checkpoint()


class TimedLlm(LlmClient):
    """Stamps each parsed text delta for the current session."""

    async def _on_event(self, event: Any, *args: Any) -> None:
        if event.type == "content_block_delta":
            host = _host.get()
            host.last_delta = time.perf_counter()
            host.deltas += 1
        await super()._on_event(event, *args)


async def serve_fake(deltas: int, interval_s: float) -> None:
    """Run the fake API (child process mode); prints its base URL on stdout."""
    text = "abcd" * deltas
    fake = FakeAnthropic(responder=lambda body: Reply([Text(text, chunk=4)], delay_s=interval_s))
    async with trio.open_nursery() as nursery:
        url = await nursery.start(fake.serve)
        print(url, flush=True)


async def bench_streaming(sessions: int, deltas: int, interval_s: float) -> None:
    async with trio.open_nursery() as nursery:

        async def fake_process(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            proc = await trio.lowlevel.open_process(
                [sys.executable, __file__, "--serve-fake", "--deltas", str(deltas),
                 "--interval", str(interval_s)],
                stdout=-1, start_new_session=True,
            )  # fmt: skip
            try:
                assert proc.stdout is not None
                line = await proc.stdout.receive_some(200)
                task_status.started(line.decode().strip())
                await trio.sleep_forever()
            finally:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()

        url = await nursery.start(fake_process)
        settings = LoopSettings(api_key="bench", base_url=url, qa_enabled=False)
        engine = Engine(settings, llm=TimedLlm(settings))
        with tempfile.TemporaryDirectory() as tmp:
            hosts = [BenchHost(i, WorkspaceRuntime(Path(tmp))) for i in range(sessions)]

            async def run(host: BenchHost) -> None:
                _host.set(host)
                await engine.run_user_turn(host, UserData(session_id=host.session_id, text="go"))

            cpu0, wall0 = time.process_time(), time.perf_counter()
            async with trio.open_nursery() as turns:
                for host in hosts:
                    turns.start_soon(run, host)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        await engine.aclose()
        nursery.cancel_scope.cancel()
    latencies = sorted(x for h in hosts for x in h.latencies)
    total = sum(h.deltas for h in hosts)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"streaming: {sessions} sessions x {deltas} deltas every {interval_s * 1000:.0f} ms; "
          f"wall {wall:.2f} s")  # fmt: skip
    print(f"  agent_partial added latency: p50 {p50:.3f} ms, p99 {p99:.3f} ms (target p99 <= 5 ms)")
    print(f"  agent CPU: {cpu / total * 1000:.3f} s per 1,000 deltas ({total} deltas, {cpu:.2f} s)")


async def bench_qa(rounds: int) -> None:
    cache = REPO / ".cache" / "node_modules"
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        print("qa: preparing the template workspace (npm ci on first run, then cached)...")
        await trio.run_process(
            [str(Path(sys.executable).parent / "amicable-sandbox-runtime"), "init-workspace",
             str(ws), "--cache-dir", str(cache)],
            stdout=-3, start_new_session=True,
        )  # fmt: skip
        runtime = WorkspaceRuntime(ws)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for parallel in (False, True):
                settings = LoopSettings(qa_parallel=parallel)
                start = time.perf_counter()
                outcome = await run_qa(runtime, settings)
                times[parallel].append(time.perf_counter() - start)
                summary = ", ".join(f"{c.command} -> {c.exit_code} ({c.duration_ms} ms)"
                                    for c in outcome.checks)  # fmt: skip
                print(f"  {'parallel  ' if parallel else 'sequential'}: {summary}")
    seq, par = statistics.median(times[False]), statistics.median(times[True])
    print(f"qa: sequential {seq:.2f} s, parallel {par:.2f} s, ratio {par / seq:.2f} "
          "(target <= 0.7)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--deltas", type=int, default=200, help="text deltas per reply")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between deltas")
    parser.add_argument("--qa-rounds", type=int, default=2)
    parser.add_argument("--skip-qa", action="store_true")
    parser.add_argument("--skip-streaming", action="store_true")
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        trio.run(serve_fake, args.deltas, args.interval)
        return
    if not args.skip_streaming:
        trio.run(bench_streaming, args.sessions, args.deltas, args.interval)
    if not args.skip_qa:
        trio.run(bench_qa, args.qa_rounds)
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
