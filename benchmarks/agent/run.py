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
import cProfile
import json
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from amicable_agent.loop.engine import Engine
from amicable_agent.loop.llm import LlmClient
from amicable_agent.loop.qa import run_qa
from amicable_agent.loop.settings import LoopSettings
from amicable_protocol.messages import MessageType, ProjectInfo, UserData
from amicable_protocol.runtime import ExecResult
from amicable_testing import MemorySpend
from amicable_testing.workspace_runtime import WorkspaceRuntime

REPO = Path(__file__).resolve().parents[2]
#: The fake API and the WebSocket clients run from this light module in their own
#: processes (importing run.py would load the anthropic SDK there too).
CHILDREN = Path(__file__).with_name("children.py")
_host: contextvars.ContextVar[BenchHost] = contextvars.ContextVar("host")
#: LoopSettings overrides from the command line (``--partial-interval``); empty = defaults.
_overrides: dict[str, Any] = {}


class RemoteLikeRuntime(WorkspaceRuntime):
    """The in-process runtime, except that commands are not run here.

    In the product every session's commands (the checkpoint's git, QA) run in its own
    sandbox, reached over HTTP; the in-process runtime would run them as children of the
    agent process, all 50 sessions in one directory, and charge their process management to
    the agent. The streaming phase is about the agent's own work, so an exec answers at once
    as a remote sandbox would (exit 0, no output): the checkpoint steps still happen, their
    git work does not.
    """

    async def exec(self, command: str, **kwargs: Any) -> ExecResult:
        await trio.lowlevel.checkpoint()
        return ExecResult(exit_code=0, stdout="", stderr="", truncated=False,
                          timed_out=False, duration_ms=0)  # fmt: skip


class Store(MemorySpend):
    """A minimal in-memory ConversationStore (usage kept in memory, as the store would)."""

    def __init__(self) -> None:
        super().__init__()
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
    """Stamps each parsed text delta for the current session (either provider: the stamp
    is taken when the provider hands the grown text to the loop, right after parsing)."""

    async def stream_message(self, *, on_text: Any, **kwargs: Any) -> Any:
        host = _host.get()

        async def stamped(text: str) -> None:
            host.last_delta = time.perf_counter()
            host.deltas += 1
            await on_text(text)

        return await super().stream_message(on_text=stamped, **kwargs)


async def fake_process(
    deltas: int, interval_s: float, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the fake API in a child process (its CPU is not the agent's); started(url)."""
    provider = str(_overrides.get("provider", "anthropic"))
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(CHILDREN), "serve-fake", "--deltas", str(deltas),
         "--interval", str(interval_s), "--provider", provider],
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


async def bench_streaming(sessions: int, deltas: int, interval_s: float) -> None:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(fake_process, deltas, interval_s)
        settings = LoopSettings(api_key="bench", base_url=url, qa_enabled=False, **_overrides)
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


_sid: contextvars.ContextVar[str] = contextvars.ContextVar("sid")
_stamps: dict[tuple[str, int], float] = {}


class StampLlm(LlmClient):
    """Stamps each parsed text delta by (session, cumulative text length), when the
    provider hands the grown text to the loop (the same point for both providers)."""

    async def stream_message(self, *, on_text: Any, **kwargs: Any) -> Any:
        sid = _sid.get()

        async def stamped(text: str) -> None:
            _stamps[(sid, len(text))] = time.perf_counter()
            await on_text(text)

        return await super().stream_message(on_text=stamped, **kwargs)


_sent: dict[tuple[str, int], float] = {}


class _StampingHost:
    """Wraps the session: stamps each agent_partial as it leaves the engine."""

    def __init__(self, host: Any) -> None:
        self._host = host

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    async def send(self, type: MessageType, data: Any, *, msg_id: str | None = None) -> None:
        if type is MessageType.AGENT_PARTIAL:
            _sent[(self._host.session_id, len(data.text))] = time.perf_counter()
        await self._host.send(type, data, msg_id=msg_id)


_written: list[tuple[str | bytes, float]] = []  # frame text, or a whole WebSocket frame


class _StampingSocket:
    """Wraps the server's WebSocket: stamps each frame once the agent has written it to
    the kernel (parsed after the run, so the stamping costs the agent nothing)."""

    def __init__(self, socket: Any) -> None:
        self._socket = socket

    async def receive(self) -> str | bytes:
        return await self._socket.receive()  # type: ignore[no-any-return]

    async def send(self, data: str | bytes) -> None:
        await self._socket.send(data)
        _written.append((str(data), time.perf_counter()))

    async def send_frames(self, frames: list[bytes]) -> None:
        await self._socket.send_frames(frames)
        _written.extend((frame, time.perf_counter()) for frame in frames)

    def write_now(self, frame: bytes) -> int:
        written: int = self._socket.write_now(frame)
        if written == len(frame):
            _written.append((frame, time.perf_counter()))
        return written

    async def close(self, code: int, reason: str = "") -> None:
        await self._socket.close(code, reason)


def _frame_text(frame: bytes) -> str:
    """The payload of one unmasked server text frame (after the run, off the clock)."""
    if len(frame) < 2 or frame[0] != 0x81:
        return ""  # the rest of a frame whose start went out earlier
    size = frame[1] & 0x7F
    start = 2 if size < 126 else 4 if size == 126 else 10
    return frame[start:].decode(errors="replace")


def _stamp_sockets() -> None:
    """Route the agent's WebSocket route through :class:`_StampingSocket`."""
    from amicable_agent.http import app, ws

    async def serve_socket(manager: Any, socket: Any, **kwargs: Any) -> None:
        stamping = _StampingSocket(socket)
        if not hasattr(socket, "send_frames"):  # quart's socket: the one-frame path
            stamping.send_frames = None  # type: ignore[assignment,method-assign]
            stamping.write_now = None  # type: ignore[assignment,method-assign]
        await ws.serve_socket(manager, stamping, **kwargs)  # queue size, caller, access

    app.serve_socket = serve_socket  # type: ignore[assignment]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[max(0, int(len(values) * q) - 1)] * 1000


class StampEngine(Engine):
    """Makes the session id visible to :class:`StampLlm` (same task)."""

    async def _stream(self, host: Any, *args: Any) -> Any:
        _sid.set(host.session_id)
        return await super()._stream(_StampingHost(host), *args)


async def bench_websocket(
    sessions: int,
    deltas: int,
    interval_s: float,
    client: str,
    profile: str | None,
    client_procs: int = 1,
) -> tuple[float, float]:
    """Latency from delta parsed by the agent to agent_partial received by a WS client.

    Returns (p50, p99) in ms. ``profile``: write a cProfile of the agent process (the
    streaming phase only) to this path.
    """
    from contextlib import asynccontextmanager

    from amicable_agent.config import AgentConfig
    from amicable_agent.server import serve
    from amicable_testing import FakeSandboxBackend

    latencies: list[float] = []
    arrived: list[float] = []
    engine_part: list[float] = []
    agent_part: list[float] = []
    _stamps.clear()
    _sent.clear()
    _written.clear()
    _stamp_sockets()
    profiler = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory() as tmp:

        @asynccontextmanager
        async def runtime_factory(handle: Any) -> Any:
            yield RemoteLikeRuntime(Path(tmp))

        async with trio.open_nursery() as nursery:
            url = await nursery.start(fake_process, deltas, interval_s)
            settings = LoopSettings(api_key="bench", base_url=url, qa_enabled=False, **_overrides)
            engine = StampEngine(settings, llm=StampLlm(settings))
            config = AgentConfig(host="127.0.0.1", port=0, internal_port=0,
                                 data_dir=Path(tmp) / "data",
                                 preview_base_domain="preview.localhost")  # fmt: skip
            ports = await nursery.start(
                lambda task_status: serve(
                    config, backend=FakeSandboxBackend(), engine=engine,
                    runtime_factory=runtime_factory, task_status=task_status,
                )
            )  # fmt: skip

            # The clients run in another process (their CPU is not the agent's);
            # perf_counter is CLOCK_MONOTONIC, comparable across processes on Linux.
            wall0, cpu0 = time.perf_counter(), time.process_time()
            usage0 = resource.getrusage(resource.RUSAGE_SELF)
            if profiler is not None:
                profiler.enable()
            # ``client_procs`` processes share the sessions: like browsers, which each read
            # their own socket, rather than one process draining 50 sockets that all receive
            # a frame in the same millisecond (the fake API ticks every session at once).
            outputs: list[bytes] = []

            async def clients(count: int) -> None:
                done = await trio.run_process(
                    [sys.executable, str(CHILDREN), "ws-clients", f"ws://127.0.0.1:{ports.public}/",
                     "--sessions", str(count), "--client", client],
                    capture_stdout=True, start_new_session=True,
                )  # fmt: skip
                outputs.append(done.stdout)

            with trio.fail_after(600):
                async with trio.open_nursery() as spawn:
                    for i in range(client_procs):
                        spawn.start_soon(clients, len(range(i, sessions, client_procs)))
            if profiler is not None:
                profiler.disable()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            preempted = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - usage0.ru_nivcsw
            written: dict[tuple[str, int], float] = {}
            for data, at in _written:
                frame = _frame_text(data) if isinstance(data, bytes) else data
                if '"type":"agent_partial"' in frame:
                    msg = json.loads(frame)
                    written[(msg["session_id"], len(msg["data"]["text"]))] = at
            for line in b"".join(outputs).decode().splitlines():
                sid, length, received, *rest = json.loads(line)
                stamp = _stamps.get((sid, length))
                sent = _sent.get((sid, length))
                if stamp is not None:
                    latencies.append(received - stamp)
                if stamp is not None and rest and rest[0] is not None:
                    arrived.append(rest[0] - stamp)
                if stamp is not None and sent is not None:
                    engine_part.append(sent - stamp)
                if stamp is not None and (sid, length) in written:
                    agent_part.append(written[(sid, length)] - stamp)
            await engine.aclose()
            nursery.cancel_scope.cancel()
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    interval = LoopSettings(**_overrides).partial_interval_s
    print(f"websocket ({client} client, {client_procs} client processes): "
          f"{sessions} sessions x {deltas} deltas every "
          f"{interval_s * 1000:.0f} ms through the agent server, partials >= "
          f"{interval * 1000:.0f} ms apart; wall {wall:.2f} s, {len(latencies)} partials, "
          f"agent CPU {cpu:.2f} s = {cpu / (sessions * deltas) * 1000:.3f} s per 1,000 deltas "
          f"({cpu / wall * 100:.0f}% of one core), preempted {preempted / wall:.0f}/s by the OS, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"  agent receive -> client receive: p50 {p50:.3f} ms, p99 {p99:.3f} ms "
          "(target p99 <= 5 ms)")  # fmt: skip
    if arrived:
        print(f"  agent receive -> bytes in the client's socket (kernel stamp): "
              f"p50 {_pct(arrived, 0.5):.3f} ms, p99 {_pct(arrived, 0.99):.3f} ms")  # fmt: skip
    engine_part.sort()
    e50 = statistics.median(engine_part) * 1000
    e99 = engine_part[int(len(engine_part) * 0.99) - 1] * 1000
    print(f"  of which engine (delta parsed -> session.send): p50 {e50:.3f} ms, p99 {e99:.3f} ms")
    print(f"  agent side (delta parsed -> socket send returned, a scheduler pass after the write): "
          f"p50 {_pct(agent_part, 0.5):.3f} ms, p99 {_pct(agent_part, 0.99):.3f} ms")  # fmt: skip
    if profiler is not None and profile:
        profiler.dump_stats(profile)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    return p50, p99


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
    parser.add_argument(
        "--skip-engine",
        action="store_true",
        help="skip the engine-only streaming part (WebSocket part only)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="WebSocket runs; prints the medians of their p50/p99"
    )
    parser.add_argument(
        "--client",
        choices=("raw", "trio-websocket"),
        default="raw",
        help="WebSocket client (raw: stamps bytes on arrival)",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=5,
        help="client processes sharing the sessions (editors read their own sockets; "
        "1: one process reads all of them, which adds its own queueing)",
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="cProfile the agent during the (first) WebSocket run"
    )
    parser.add_argument(
        "--provider",
        choices=("anthropic", "openai"),
        default="anthropic",
        help="the model API the fake speaks and the agent calls (Messages or Chat Completions)",
    )
    parser.add_argument(
        "--partial-interval",
        type=float,
        help="LoopSettings.partial_interval_s (default: the product default)",
    )
    args = parser.parse_args()
    if args.partial_interval is not None:
        _overrides["partial_interval_s"] = args.partial_interval
    if args.provider == "openai":
        _overrides.update(provider="openai", model="gpt-4.1")
    if not args.skip_streaming:
        if not args.skip_engine:
            trio.run(bench_streaming, args.sessions, args.deltas, args.interval)
        runs = [
            trio.run(bench_websocket, args.sessions, args.deltas, args.interval, args.client,
                     args.profile if i == 0 else None, args.client_procs)
            for i in range(args.repeat)
        ]  # fmt: skip
        if args.repeat > 1:
            p50s, p99s = sorted(r[0] for r in runs), sorted(r[1] for r in runs)
            print(f"websocket over {args.repeat} runs: median p50 {statistics.median(p50s):.3f} ms, "
                  f"median p99 {statistics.median(p99s):.3f} ms (p99s: "
                  + ", ".join(f"{x:.1f}" for x in p99s) + ")")  # fmt: skip
    if not args.skip_qa:
        trio.run(bench_qa, args.qa_rounds)
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
