"""Soak (``make soak``; not in ``make test``): 20 sessions with the scripted fake model, in
waves under a sandbox cap, while runtimes and dev servers are killed (-9) and model streams
drop at random. At the end every project's files equal its last checkpoint, and after the
agent stops no process of it is left.

Real agent (port 0), real LLM loop, real local backend (isolated as by default), real
runtime, real Vite, real git. Seeded: ``AMICABLE_SOAK_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.auth.config import AuthConfig, Quotas
from amicable_agent.config import AgentConfig
from amicable_agent.loop.engine import Engine
from amicable_agent.loop.llm import LlmClient
from amicable_agent.loop.settings import LoopSettings
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.local.backend import (
    LocalBackend,
    LocalBackendConfig,
    open_local_backend,
)
from amicable_agent.server import serve
from amicable_testing import ws_recv_until, ws_send
from amicable_testing.fake_anthropic import FakeAnthropic, Fault, Reply, Text, ToolUse
from trio_websocket import open_websocket_url

pytestmark = pytest.mark.soak

REPO = Path(__file__).resolve().parents[2]
RUNTIME = str(Path(sys.executable).parent / "amicable-sandbox-runtime")
SESSIONS = 20
WAVE = 5
TURNS = 2
ASK = re.compile(r"write (\S+) (\d+)")


class Chaos:
    """The fake model's answers, with random model drops and runtime kills."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.backend: LocalBackend | None = None
        self.runtime_kills = 0
        self.drops = 0

    def respond(self, body: dict[str, Any]) -> Reply | Fault:
        last = body["messages"][-1]
        content = last["content"]
        if isinstance(content, list) and any(b.get("type") == "tool_result" for b in content):
            return Reply([Text("Done.")])
        text = content if isinstance(content, str) else " ".join(
            b.get("text", "") for b in content if isinstance(b, dict)
        )  # fmt: skip
        match = ASK.search(text)
        if match is None:  # a continuation after a drop, or a summary: plain text
            return Reply([Text("Done.")])
        sid, turn = match.group(1), int(match.group(2))
        reply = Reply([Text("Writing."), ToolUse("write_file", {
            "file_path": "/src/soak.txt", "content": expected(sid, turn),
        })])  # fmt: skip
        if self.rng.random() < 0.25:
            self.kill_runtime(sid)  # the tool call below meets a dead runtime
        if self.rng.random() < 0.25:
            self.drops += 1
            return Fault(drop_after_events=3, reply=reply)
        return reply

    def kill_runtime(self, sid: str) -> None:
        assert self.backend is not None
        pids = self.backend.process_ids(sandbox_id_for(sid))
        if pids:
            with_runtime = [p for p in descendants(pids[0]) if is_runtime(p)]
            if with_runtime:
                os.kill(max(with_runtime), signal.SIGKILL)
                self.runtime_kills += 1


def expected(sid: str, turn: int) -> str:
    return f"{sid} turn {turn}\n"


def _cmd(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def is_runtime(pid: int) -> bool:
    argv = _cmd(pid)
    return bool(argv) and not argv[0].endswith(("bwrap", "sh")) and any(
        a.endswith("amicable-sandbox-runtime") for a in argv[:2]
    )  # fmt: skip


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if stat[0] not in (b"Z", b"X"):
                children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def holders_of(path: Path) -> list[int]:
    """Live processes whose cwd or command line mentions ``path`` (bubblewrap's does)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if "\nState:\tZ" in (entry / "status").read_text():
                continue
            cwd = os.readlink(entry / "cwd")
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(path)) or str(path) in cmd:
            found.append(int(entry.name))
    return found


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


async def one_session(port: int, sid: str, backend: LocalBackend, rng: random.Random) -> None:
    async with open_websocket_url(f"ws://127.0.0.1:{port}/", max_message_size=64 << 20) as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        stages = await ws_recv_until(ws, "init", timeout_s=600)
        assert str(stages[-1].type) == "init", stages[-1]
        for turn in range(1, TURNS + 1):
            if rng.random() < 0.3:  # the dev server dies between turns; its runtime restarts it
                pids = backend.process_ids(sandbox_id_for(sid))
                if len(pids) > 1:
                    kill_quietly(pids[1])
            text = f"write {sid} {turn}"
            await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": text}})
            await ws_recv_until(ws, "update_completed", timeout_s=600)
            while True:  # the checkpoint after the turn (taken in the background)
                msg = (await ws_recv_until(ws, "trace_event", timeout_s=600))[-1]
                if msg.data.tool_name == "checkpoint":
                    break


def kill_quietly(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


async def test_soak_twenty_sessions_with_kills_and_drops(tmp_path: Path) -> None:
    seed = int(os.environ.get("AMICABLE_SOAK_SEED") or random.randrange(1 << 30))
    print(f"AMICABLE_SOAK_SEED={seed}")
    rng = random.Random(seed)
    chaos = Chaos(rng)
    fake = FakeAnthropic(responder=chaos.respond)
    data = tmp_path / "data"
    sids = [str(uuid.uuid4()) for _ in range(SESSIONS)]
    config = AgentConfig(
        host="127.0.0.1", port=0, internal_port=0, data_dir=data,
        preview_base_domain="preview.localhost", preview_public_port=8123,
        auth=AuthConfig(quotas=Quotas(running_sandboxes=WAVE)),
    )  # fmt: skip
    local = LocalBackendConfig(
        data_dir=data, runtime_command=(RUNTIME,), warm_pool_size=0, spare_workspaces=0,
        cache_dir=REPO / ".cache" / "node_modules",
    )  # fmt: skip
    async with trio.open_nursery() as outer:
        llm_url = await outer.start(fake.serve)
        settings = LoopSettings(
            provider="anthropic", model="claude-sonnet-5-5", api_key="sk-ant-test-key-123456",
            base_url=llm_url, llm_retry_base_s=0.01, llm_retry_max_s=0.05,
            partial_interval_s=0.0, qa_enabled=False,
        )  # fmt: skip
        engine = Engine(settings, llm=LlmClient(settings))
        async with open_local_backend(local) as backend:
            chaos.backend = backend
            async with trio.open_nursery() as agent:

                async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                    await serve(config, backend=backend, engine=engine, task_status=task_status)

                ports = await agent.start(run)
                with trio.fail_after(1500):  # a deadline for the whole soak, not a timing
                    for start in range(0, SESSIONS, WAVE):
                        async with trio.open_nursery() as wave:
                            for sid in sids[start : start + WAVE]:
                                wave.start_soon(one_session, int(ports.public), sid, backend, rng)
                agent.cancel_scope.cancel()
        await engine.aclose()
        outer.cancel_scope.cancel()

    print(f"runtime kills {chaos.runtime_kills}, model drops {chaos.drops}")
    assert chaos.runtime_kills > 0
    assert chaos.drops > 0
    for sid in sids:
        workspace = data / "sandboxes" / sandbox_id_for(sid) / "workspace"
        assert git(workspace, "show", "HEAD:src/soak.txt") == expected(sid, TURNS), sid
        assert (workspace / "src" / "soak.txt").read_text() == expected(sid, TURNS)
        assert git(workspace, "status", "--porcelain") == "", sid
    assert holders_of(data) == [], "no process of the agent is left"
    assert list((data / "run").glob("*.json")) == []
