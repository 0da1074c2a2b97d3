"""Exec: results, timeout kills the group, truncation, streaming order, disconnect, concurrency."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio_websocket
from amicable_testing.processes import wait_for_exit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager

    from conftest import Runtime, StartRuntime

AUTH_HEADERS = [(b"Authorization", b"Bearer test-token-0123456789")]


async def run(runtime: Runtime, **body: Any) -> dict[str, Any]:
    resp = await runtime.client.post("/v1/exec", json=body)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def test_exec_result(runtime: Runtime) -> None:
    (runtime.workspace / "sub").mkdir()
    result = await run(
        runtime,
        command='echo "out $FOO"; echo err >&2; pwd; exit 3',
        cwd="/sub",
        env={"FOO": "bar"},
    )
    assert result["exit_code"] == 3
    assert result["stdout"] == f"out bar\n{runtime.workspace.resolve() / 'sub'}\n"
    assert result["stderr"] == "err\n"
    assert result["truncated"] is False
    assert result["timed_out"] is False
    assert result["duration_ms"] >= 0


async def test_exec_runs_through_a_shell_in_the_workspace(runtime: Runtime) -> None:
    result = await run(runtime, command="echo a | tr a b > f.txt && cat f.txt")
    assert result["stdout"] == "b\n"
    assert (runtime.workspace / "f.txt").read_text() == "b\n"


async def test_exec_rejects_bad_bodies(runtime: Runtime) -> None:
    resp = await runtime.client.post("/v1/exec", json={"cmd": "true"})
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")
    resp = await runtime.client.post("/v1/exec", json={"command": "true", "timeout_s": 0})
    assert resp.json()["error"] == "invalid_request"


async def test_timeout_kills_grandchildren(runtime: Runtime) -> None:
    # a background grandchild and a nested shell's child, both in the command's group
    command = (
        "sleep 1000 & echo $! > bg.pid; "
        "sh -c 'sleep 1000 & echo $! > nested.pid; wait' & "
        "echo started; wait"
    )
    result = await run(runtime, command=command, timeout_s=1)
    assert result["exit_code"] == 124
    assert result["timed_out"] is True
    assert result["stdout"] == "started\n"
    assert "timed out" in result["stderr"]
    pids = [int((runtime.workspace / f).read_text()) for f in ("bg.pid", "nested.pid")]
    await wait_for_exit(*pids)


async def test_background_jobs_do_not_outlive_the_command(runtime: Runtime) -> None:
    result = await run(runtime, command="sleep 1000 & echo $! > bg.pid; echo done")
    assert (result["exit_code"], result["stdout"]) == (0, "done\n")
    pid = int((runtime.workspace / "bg.pid").read_text())
    await wait_for_exit(pid)


async def test_truncation(start_runtime: StartRuntime) -> None:
    runtime = await start_runtime(exec_max_output_chars=1000)
    result = await run(runtime, command="yes x | head -c 100000; yes e | head -c 5000 >&2")
    assert result["truncated"] is True
    assert result["stdout"].startswith("x\nx\n")
    assert result["stdout"].endswith("\n<output truncated>")
    assert len(result["stdout"]) == 1000 + len("\n<output truncated>")
    assert len(result["stderr"]) == 1000 + len("\n<output truncated>")
    result = await run(runtime, command="printf 'ä%.0s' $(seq 900)")
    assert result["truncated"] is False
    assert result["stdout"] == "ä" * 900


async def test_fifty_concurrent_execs(runtime: Runtime) -> None:
    results: dict[int, dict[str, Any]] = {}

    async def one(i: int) -> None:
        results[i] = await run(runtime, command=f"echo start-{i}; sleep 0.5; echo end-{i}")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(one, i)
    assert len(results) == 50
    for i, result in results.items():
        assert (result["exit_code"], result["stdout"]) == (0, f"start-{i}\nend-{i}\n")


def open_stream(
    runtime: Runtime,
) -> AbstractAsyncContextManager[trio_websocket.WebSocketConnection]:
    url = f"ws://127.0.0.1:{runtime.port}/v1/exec/stream"
    return trio_websocket.open_websocket_url(url, extra_headers=AUTH_HEADERS)


async def frames(ws: trio_websocket.WebSocketConnection) -> AsyncIterator[dict[str, Any]]:
    while True:
        frame = json.loads(await ws.get_message())
        yield frame
        if "exit_code" in frame:
            return


async def test_streaming_order(runtime: Runtime) -> None:
    # the command waits for a file the test creates only after seeing the first line:
    # this completes only if output is streamed while the command is still running
    command = (
        "echo first; echo warn >&2; while [ ! -f go ]; do sleep 0.02; done; echo second; exit 7"
    )
    seen: list[tuple[str, str]] = []
    with trio.fail_after(30):
        async with open_stream(runtime) as ws:
            await ws.send_message(json.dumps({"command": command}))
            async for frame in frames(ws):
                if "exit_code" in frame:
                    exit_frame = frame
                    continue  # the last frame: frames() ends here
                seen.append((frame["stream"], frame["data"]))
                if frame["data"] == "first\n":
                    (runtime.workspace / "go").touch()
    stdout = [d for s, d in seen if s == "stdout"]
    assert "".join(stdout) == "first\nsecond\n"
    assert ("stderr", "warn\n") in seen
    assert exit_frame["exit_code"] == 7
    assert exit_frame["timed_out"] is False


async def test_stream_timeout(runtime: Runtime) -> None:
    with trio.fail_after(30):
        async with open_stream(runtime) as ws:
            await ws.send_message(json.dumps({"command": "sleep 100", "timeout_s": 0.5}))
            last = [f async for f in frames(ws)][-1]
    assert (last["exit_code"], last["timed_out"]) == (124, True)


async def test_stream_bad_first_frame(runtime: Runtime) -> None:
    with trio.fail_after(30):
        async with open_stream(runtime) as ws:
            await ws.send_message("not json")
            error = json.loads(await ws.get_message())
    assert error["error"] == "invalid_request"


@pytest.mark.parametrize("how", ["close", "drop"])
async def test_client_disconnect_kills_the_command(runtime: Runtime, how: str) -> None:
    command = "sleep 1000 & echo $! > child.pid; echo started; wait"
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream("127.0.0.1", runtime.port)
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, "127.0.0.1", "/v1/exec/stream", extra_headers=AUTH_HEADERS
            )
            await ws.send_message(json.dumps({"command": command}))
            assert json.loads(await ws.get_message())["data"] == "started\n"
            if how == "close":
                await ws.aclose()
            await stream.aclose()  # "drop": the TCP connection just goes away
            nursery.cancel_scope.cancel()
    await wait_for_exit(int((runtime.workspace / "child.pid").read_text()))


async def test_runtime_token_is_not_passed_to_commands(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMICABLE_RUNTIME_TOKEN", "env-secret-token")
    monkeypatch.setenv("AMICABLE_RUNTIME_TOKEN_FILE", "/run/secret-token-file")
    monkeypatch.setenv("SOME_VISIBLE_SETTING", "visible")
    result = await run(runtime, command="env")
    assert "SOME_VISIBLE_SETTING=visible" in result["stdout"]
    assert "env-secret-token" not in result["stdout"]
    assert "AMICABLE_RUNTIME_TOKEN" not in result["stdout"]
