"""One sandbox misbehaving (memory hog, fork bomb, disk filler) while another sandbox's turn
completes: real bubblewrap sandboxes with cgroup limits, the real runtime, the real engine
against the fake model."""

from __future__ import annotations

import contextlib
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.errors import RuntimeClientError
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.local.backend import LocalBackendConfig, open_local_backend
from amicable_agent.sandboxes.local.limits import SandboxLimits
from amicable_agent.sandboxes.runtime_client import open_runtime_client
from amicable_protocol.messages import UserData
from amicable_testing.fake_anthropic import Reply, Text, ToolUse

from .conftest import Host, MemoryStore

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
RUNTIME = str(Path(sys.executable).parent / "amicable-sandbox-runtime")
MIB = 1024**2
LIMITS = SandboxLimits(memory_bytes=1024 * MIB, pids_max=256, cpu_weight=50, disk_bytes=600 * MIB)


def cgroup_file(namespace_pid: int, controller: str, name: str) -> Path | None:
    """A file of the cgroup v1 ``controller`` the sandbox's first process is in (None when
    this machine has no such hierarchy)."""
    for line in Path(f"/proc/{namespace_pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            found = Path("/sys/fs/cgroup", controller) / path.lstrip("/") / name
            return found if found.exists() else None
    return None


async def test_a_fork_bomb_a_memory_hog_and_a_disk_filler_leave_the_others_working(
    tmp_path: Path, fake_llm: Any, make_engine: Any
) -> None:
    config = LocalBackendConfig(
        data_dir=tmp_path,
        runtime_command=(RUNTIME,),
        warm_pool_size=0,
        spare_workspaces=0,
        cache_dir=REPO / ".cache" / "node_modules",
        isolation="bwrap",
        limits=LIMITS,
    )
    async with open_local_backend(config) as backend, AsyncExitStack() as stack:
        assert backend.isolation is not None
        if {"pids", "memory"} & set(backend.isolation.cgroups.missing):
            # a fork bomb under rlimits only is not bounded for root (RLIMIT_NPROC)
            pytest.skip(f"no pids/memory cgroup here: {backend.isolation.cgroups.describe()}")
        clients = {}
        for name in ("bomb", "filler", "worker"):
            handle = await backend.ensure(name, project_id=name, template_id="vite")
            clients[name] = await stack.enter_async_context(
                open_runtime_client(handle.runtime_url, handle.runtime_token)
            )
        bwrap = backend.process_ids(sandbox_id_for("bomb"))[0]
        first = int(Path(f"/proc/{bwrap}/task/{bwrap}/children").read_text().split()[0])

        # memory: the hog is killed inside its own sandbox, the sandbox keeps answering
        hog = await clients["bomb"].exec(
            "node -e 'const a = []; for (;;) a.push(Buffer.alloc(64 << 20, 1))'", timeout_s=300
        )
        assert hog.exit_code == 137, hog.stderr[-500:]
        assert (await clients["bomb"].exec("echo alive")).stdout.strip() == "alive"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_quietly, clients["bomb"], "b() { b | b & }; b; sleep 900")
            pids = cgroup_file(first, "pids", "pids.current")
            if pids is not None:
                with trio.fail_after(300):
                    # the kernel counts the forks its limit refused (pids.events "max"): a
                    # bash bomb's population peaks and dies down as its forks give up, so
                    # the lasting evidence that it hit the limit is that counter
                    while refused_forks(pids.with_name("pids.events")) == 0:
                        await trio.sleep(0.1)

            # 10 GB into one file: RLIMIT_FSIZE stops it at the quota, the watchdog stops
            # the sandbox (maybe while dd still runs: then the exec fails)
            await run_quietly(clients["filler"], "dd if=/dev/zero of=big bs=1M count=10240")
            with trio.fail_after(300):
                while await backend.lookup(sandbox_id_for("filler")) is not None:
                    await trio.sleep(0.1)  # the watchdog's poll
            big = tmp_path / "sandboxes" / sandbox_id_for("filler") / "workspace" / "big"
            assert big.stat().st_size <= LIMITS.disk_bytes

            fake, url = fake_llm
            fake.add(
                Reply([ToolUse("write_file", {"file_path": "/src/Hello.tsx",
                                              "content": "export const hello = 1;\n"}),
                       ToolUse("execute", {"command": "npm run -s typecheck && echo typechecked"})]),
                Reply([Text("Done.")]),
            )  # fmt: skip
            host = Host(runtime=clients["worker"], store=MemoryStore())
            with trio.fail_after(600):
                await make_engine(url).run_user_turn(host, UserData(session_id="s", text="go"))
            results = fake.view(1)["messages"][-1]["content"]
            assert [r["is_error"] for r in results] == [False, False], results
            assert "typechecked" in results[1]["content"]
            assert host.types()[-1] == "update_completed"
            if pids is not None:
                assert int(pids.read_text()) <= LIMITS.pids_max
            nursery.cancel_scope.cancel()
        stats = backend.statistics()
        assert stats["running"] == 2, "the bomb's and the worker's sandboxes still run"


def refused_forks(events: Path) -> int:
    """How many forks the sandbox's pids limit refused so far."""
    for line in events.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "max":
            return int(value)
    return 0


async def run_quietly(runtime: Any, command: str) -> None:
    """Run a command meant to misbehave; its sandbox may be stopped under it."""
    with contextlib.suppress(RuntimeClientError):
        await runtime.exec(command, timeout_s=900)
