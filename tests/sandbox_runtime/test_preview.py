"""Dev-server supervision: readiness, crash -> restart -> ready again, restart bound, logs."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from amicable_sandbox_runtime.config import load_config
from amicable_testing.processes import free_port, process_alive, wait_for_exit, wait_until

if TYPE_CHECKING:
    from conftest import Runtime, StartRuntime

# A stand-in dev server: prints a line, then serves HTTP on the preview port.
SERVER = f"echo dev server booting; exec {shlex.quote(sys.executable)} -m http.server --bind 127.0.0.1 $AMICABLE_PREVIEW_PORT"


async def preview(runtime: Runtime) -> dict[str, Any]:
    body: dict[str, Any] = (await runtime.client.get("/v1/preview")).json()
    return body


async def wait_ready(runtime: Runtime) -> None:
    async def ready() -> bool:
        return (await runtime.client.get("/readyz")).status_code == 200

    await wait_until(ready, 30)


async def test_crash_restart_and_readyz_recovers(start_runtime: StartRuntime) -> None:
    port = free_port()
    runtime = await start_runtime(
        preview_cmd=SERVER,
        preview_port=port,
        preview_host="127.0.0.1",
        preview_backoff_initial_s=0.05,
        preview_probe_interval_s=0.05,
    )
    await wait_ready(runtime)
    first = await preview(runtime)
    assert (first["state"], first["ready"], first["restarts"], first["port"]) == (
        "running",
        True,
        0,
        port,
    )
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200

    os.kill(first["pid"], signal.SIGKILL)  # the dev server crashes

    async def restarted() -> bool:
        status = await preview(runtime)
        return status["restarts"] == 1 and status["pid"] not in (None, first["pid"])

    await wait_until(restarted)
    await wait_ready(runtime)
    after = await preview(runtime)
    assert after["last_exit_code"] == 128 + signal.SIGKILL
    assert after["ready"] is True
    logs = (await runtime.client.get("/v1/preview/logs", params={"tail": 50})).json()["lines"]
    assert logs.count("dev server booting") == 2
    assert any("exited with code 137" in line for line in logs)


async def test_readyz_is_503_until_the_server_answers(start_runtime: StartRuntime) -> None:
    port = free_port()
    runtime = await start_runtime(
        preview_cmd=f"while [ ! -f go ]; do sleep 0.02; done; {SERVER}",
        preview_port=port,
        preview_host="127.0.0.1",
        preview_probe_interval_s=0.05,
    )
    resp = await runtime.client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["state"] == "starting"
    assert resp.json()["ready"] is False
    (runtime.workspace / "go").touch()
    await wait_ready(runtime)


async def test_restart_limit_then_explicit_restart(start_runtime: StartRuntime) -> None:
    runtime = await start_runtime(
        preview_cmd="echo crashing; exit 3",
        preview_port=free_port(),
        preview_max_restarts=2,
        preview_backoff_initial_s=0.01,
        preview_backoff_max_s=0.02,
    )

    async def exhausted() -> bool:
        return (await preview(runtime))["state"] == "exhausted"

    await wait_until(exhausted)
    status = await preview(runtime)
    assert (status["restarts"], status["last_exit_code"], status["pid"]) == (2, 3, None)
    lines = (await runtime.client.get("/v1/preview/logs")).json()["lines"]
    assert lines.count("crashing") == 3  # the first run plus two restarts
    assert (await runtime.client.get("/readyz")).status_code == 503
    # tail bounds the answer
    assert len((await runtime.client.get("/v1/preview/logs?tail=2")).json()["lines"]) == 2

    await runtime.client.post("/v1/preview/restart")

    async def ran_again() -> bool:
        lines = (await runtime.client.get("/v1/preview/logs")).json()["lines"]
        return lines.count("crashing") > 3

    await wait_until(ran_again)


async def test_restart_endpoint_replaces_the_process_group(start_runtime: StartRuntime) -> None:
    port = free_port()
    runtime = await start_runtime(
        preview_cmd=f"sleep 1000 & echo $! > helper.pid; {SERVER}",
        preview_port=port,
        preview_host="127.0.0.1",
        preview_probe_interval_s=0.05,
    )
    await wait_ready(runtime)
    old = await preview(runtime)
    helper = int((runtime.workspace / "helper.pid").read_text())
    assert process_alive(helper)
    resp = await runtime.client.post("/v1/preview/restart")
    assert resp.status_code == 200
    await wait_for_exit(old["pid"], helper)  # the whole old group is gone

    async def new_pid() -> bool:
        return (await preview(runtime))["pid"] not in (None, old["pid"])

    await wait_until(new_pid)
    await wait_ready(runtime)
    assert (await preview(runtime))["restarts"] == 0  # asked for, not a crash


async def test_shutdown_kills_the_dev_server(tmp_path: Any) -> None:
    from amicable_sandbox_runtime.config import RuntimeConfig
    from amicable_sandbox_runtime.server import serve

    port = free_port()
    config = RuntimeConfig(
        workspace=tmp_path,
        token="t",
        host="127.0.0.1",
        port=0,
        preview_cmd=f"sleep 1000 & echo $! > helper.pid; {SERVER}",
        preview_port=port,
        preview_host="127.0.0.1",
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, config)
        await wait_until(lambda: _exists(tmp_path / "helper.pid"))
        helper = int((tmp_path / "helper.pid").read_text())
        nursery.cancel_scope.cancel()
    await wait_for_exit(helper)


async def _exists(path: Any) -> bool:
    return bool(path.exists()) and bool(path.read_text().strip())


def test_default_preview_command_uses_host_and_port() -> None:
    env = {
        "AMICABLE_RUNTIME_TOKEN": "t",
        "AMICABLE_PREVIEW_PORT": "3100",
        "AMICABLE_PREVIEW_HOST": "127.0.0.1",
    }
    config = load_config(env)
    assert config.preview_cmd == "npm run dev -- --host 127.0.0.1 --port 3100"
    assert load_config({**env, "AMICABLE_PREVIEW_CMD": ""}).preview_cmd is None
    assert load_config(env, no_preview=True).preview_cmd is None


def test_backoff_doubles_up_to_the_cap() -> None:
    from amicable_sandbox_runtime.supervisor import backoff_s

    assert [backoff_s(n, 0.5, 10.0) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert backoff_s(10_000, 0.5, 10.0) == 10.0


async def test_exhaustion_on_virtual_time(tmp_path: Any, autojump_clock: Any) -> None:
    """The supervisor waits out its backoffs (virtual time) and stops at the bound."""
    from amicable_sandbox_runtime.config import RuntimeConfig
    from amicable_sandbox_runtime.supervisor import PreviewSupervisor

    config = RuntimeConfig(
        workspace=tmp_path,
        token="t",
        preview_cmd="exit 3",
        preview_port=free_port(),
        preview_max_restarts=4,
        preview_backoff_initial_s=5.0,
        preview_backoff_max_s=60.0,
    )
    supervisor = PreviewSupervisor(config)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(supervisor.run)
        status = await supervisor.wait_state("exhausted")
        elapsed = trio.current_time() - start
        assert supervisor.status().state == "exhausted"  # it stays there
        supervisor.request_restart()
        await supervisor.wait_state("starting", "backoff")
        nursery.cancel_scope.cancel()
    assert (status.restarts, status.last_exit_code, status.pid, status.ready) == (4, 3, None, False)
    assert elapsed >= 4 * 5.0  # four restarts, each after at least the initial backoff


def test_restart_budget_refills_over_time() -> None:
    from amicable_sandbox_runtime.supervisor import RestartBudget

    budget = RestartBudget(3, window_s=300.0)
    assert [budget.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert budget.used(0.0) == 3
    assert budget.wait_s(0.0) == pytest.approx(100.0)  # one restart back per 300 s / 3
    assert not budget.take(99.0)
    assert budget.take(100.0)
    # A dev server that crashes every two minutes, for days, never runs it dry.
    assert all(budget.take(100.0 + 120.0 * i) for i in range(1, 5000))
    assert budget.used(10.0**7) == 0  # quiet for long: full again
    empty = RestartBudget(0, window_s=300.0)
    assert (empty.take(0.0), empty.wait_s(0.0)) == (False, float("inf"))


async def test_exhausted_is_not_forever(tmp_path: Any, autojump_clock: Any) -> None:
    """A crash loop runs the budget dry; once a restart has refilled, it tries again."""
    from amicable_sandbox_runtime.config import RuntimeConfig
    from amicable_sandbox_runtime.supervisor import RESTART_WINDOW_S, PreviewSupervisor

    # The dev server is a real process: jump the clock only when everything has been idle
    # for a moment of real time (not while it runs), and keep the probe loop quiet.
    autojump_clock.autojump_threshold = 0.2
    config = RuntimeConfig(
        workspace=tmp_path,
        token="t",
        preview_cmd="exit 3",
        preview_port=free_port(),
        preview_max_restarts=3,
        preview_backoff_initial_s=1.0,
        preview_backoff_max_s=1.0,
        preview_probe_interval_s=10_000.0,
    )
    refill_s = RESTART_WINDOW_S / 3
    supervisor = PreviewSupervisor(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        with trio.fail_after(refill_s / 2):
            status = await supervisor.wait_state("exhausted")
        assert status.restarts == 3
        exhausted_at = trio.current_time()
        with trio.fail_after(refill_s * 2):  # before: exhausted until an explicit restart
            await supervisor.wait_state("backoff", "starting")
        assert trio.current_time() - exhausted_at >= refill_s - 10
        with trio.fail_after(refill_s / 2):  # still a crash loop: dry again at once
            await supervisor.wait_state("exhausted")
        nursery.cancel_scope.cancel()
    assert "restart limit reached (3 per 3600 s)" in "\n".join(supervisor.logs().lines)
