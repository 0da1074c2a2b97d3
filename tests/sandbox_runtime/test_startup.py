"""Cold start and the hot path: cheap imports, dev server spawned before the web stack, early
readiness, and the fast routes answering as quart's copies of them did."""

from __future__ import annotations

import json
import sys
import threading
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import pytest
import trio
from amicable_sandbox_runtime import server
from amicable_sandbox_runtime.config import RuntimeConfig
from amicable_sandbox_runtime.spawn import spawn_early
from amicable_sandbox_runtime.supervisor import PreviewSupervisor
from amicable_testing.processes import free_port, wait_for_exit, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Runtime

WEB_STACK = (
    "quart",
    "quart_trio",
    "hypercorn",
    "amicable_frontdoor",
    "werkzeug",
    "cattrs",
    "amicable_protocol",
)


@pytest.mark.parametrize(
    "modules",
    [
        ["amicable_sandbox_runtime"],
        ["amicable_sandbox_runtime.__main__", "amicable_sandbox_runtime.templates"],
        ["amicable_sandbox_runtime.server", "amicable_sandbox_runtime.supervisor"],
    ],
)
async def test_cli_and_serve_entry_do_not_import_the_web_stack(modules: list[str]) -> None:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps([m for m in {WEB_STACK!r} if m in sys.modules]))\n"
    )
    result = await trio.run_process([sys.executable, "-c", code], capture_stdout=True)
    assert json.loads(result.stdout) == []


async def test_package_exports_resolve_lazily() -> None:
    import amicable_sandbox_runtime as pkg

    assert pkg.serve is server.serve
    assert pkg.RuntimeConfig is RuntimeConfig
    with pytest.raises(AttributeError):
        _ = pkg.no_such_name  # type: ignore[attr-defined]


async def test_dev_server_is_spawned_before_the_web_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned_first: list[bool] = []
    build = server._build_front

    def recording_build(config: RuntimeConfig, jail: Any, supervisor: PreviewSupervisor) -> Any:
        spawned_first.append(supervisor.pid is not None)
        return build(config, jail, supervisor)

    monkeypatch.setattr(server, "_build_front", recording_build)
    config = RuntimeConfig(
        workspace=tmp_path,
        token="t",
        host="127.0.0.1",
        port=0,
        preview_cmd="sleep 1000",
        preview_port=free_port(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, config)
        nursery.cancel_scope.cancel()
    assert spawned_first == [True]


async def test_fast_routes_answer_before_quart_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    build = server._build_full_app

    def held_build(fast: Any) -> Any:
        release.wait(60)
        return build(fast)

    monkeypatch.setattr(server, "_build_full_app", held_build)
    config = RuntimeConfig(workspace=tmp_path, token="t", host="127.0.0.1", port=0)
    headers = {"Authorization": "Bearer t"}
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, config)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
            ) as client:
                assert (await client.get("/healthz")).status_code == 200
                assert (await client.get("/readyz")).status_code == 200
                assert (await client.get("/v1/preview")).json()["state"] == "stopped"
                exec_ = await client.post("/v1/exec", json={"command": "echo hi"})
                assert exec_.json()["stdout"] == "hi\n"
                assert (await client.put("/v1/files/a.txt", content=b"x")).status_code == 200
                assert (await client.get("/v1/files/a.txt")).content == b"x"
                tree: list[httpx.Response] = []

                async def list_tree() -> None:
                    tree.append(await client.get("/v1/fs/tree"))

                async with trio.open_nursery() as waiting:
                    waiting.start_soon(list_tree)
                    await trio.sleep(0.2)  # give it the chance to answer early (it must not)
                    assert tree == []
                    release.set()
                assert tree[0].status_code == 200
                assert [e["path"] for e in tree[0].json()["entries"]] == ["/a.txt"]
            nursery.cancel_scope.cancel()
    finally:
        release.set()


async def test_dev_server_output_triggers_the_readiness_probe(tmp_path: Path) -> None:
    # Probing every 1000 s: only the "listening" line can make it ready within the deadline.
    port = free_port()
    listen_then_say_so = (
        f"{sys.executable} -c 'import socket, time; s = socket.socket(); "
        f's.bind(("127.0.0.1", {port})); s.listen(); print("ready", flush=True); '
        "time.sleep(1000)'"
    )
    config = RuntimeConfig(
        workspace=tmp_path,
        insecure_no_auth=True,
        preview_cmd=listen_then_say_so,
        preview_host="127.0.0.1",
        preview_port=port,
        preview_probe_interval_s=1000.0,
    )
    supervisor = PreviewSupervisor(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        with trio.fail_after(30):
            status = await supervisor.wait_state("running")
        assert status.ready
        nursery.cancel_scope.cancel()


async def test_other_methods_on_fast_paths_answer_as_before(runtime: Runtime) -> None:
    assert (await runtime.client.head("/healthz")).status_code == 200
    resp = await runtime.client.post("/healthz")
    assert (resp.status_code, resp.json()["error"]) == (405, "method_not_allowed")
    await runtime.client.put("/v1/files/a.txt", content=b"x")
    assert (await runtime.client.delete("/v1/files/a.txt")).status_code == 200
    resp = await runtime.client.get("/v1/exec")
    assert (resp.status_code, resp.json()["error"]) == (405, "method_not_allowed")


async def test_fast_routes_answer_like_the_app(runtime: Runtime) -> None:
    resp = await runtime.client.get("/v1/files/missing.txt")
    assert (resp.status_code, resp.json()["error"]) == (404, "not_found")
    assert resp.headers["content-type"] == "application/json"
    resp = await runtime.client.post("/v1/exec", content=b"{not json")
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")
    resp = await runtime.client.post("/v1/exec", json={"command": "true", "cwd": "nope"})
    assert (resp.status_code, resp.json()["error"]) == (404, "not_found")
    (runtime.workspace / "d").mkdir()
    resp = await runtime.client.put("/v1/files/d", content=b"x")
    assert (resp.status_code, resp.json()["error"]) == (400, "is_directory")


async def test_exec_body_over_the_limit_is_413(start_runtime: Any) -> None:
    runtime = await start_runtime(max_file_bytes=100)
    resp = await runtime.client.post("/v1/exec", json={"command": "echo " + "x" * 200})
    assert (resp.status_code, resp.json()["error"]) == (413, "too_large")


async def test_client_disconnect_kills_a_collected_exec(runtime: Runtime) -> None:
    body = json.dumps({"command": "sleep 1000 & echo $! > child.pid; wait"}).encode()
    request = (
        b"POST /v1/exec HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token-0123456789\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    pid_file = runtime.workspace / "child.pid"
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream("127.0.0.1", runtime.port)
        await stream.send_all(request)

        async def command_started() -> bool:
            return pid_file.exists() and bool(pid_file.read_text().strip())

        await wait_until(command_started)
        await stream.aclose()
    await wait_for_exit(int(pid_file.read_text()))


async def test_big_files_take_the_thread_path(runtime: Runtime) -> None:
    big = bytes(range(256)) * 1024  # 256 KiB: over the inline limit
    put = await runtime.client.put("/v1/files/big.bin", content=big)
    assert put.json()["size"] == len(big)
    got = await runtime.client.get("/v1/files/big.bin")
    assert got.content == big
    assert got.headers["X-Content-SHA256"] == put.json()["sha256"]


def test_try_write_never_waits_for_the_lock(tmp_path: Path) -> None:
    from amicable_sandbox_runtime.files import Files
    from amicable_sandbox_runtime.paths import Jail

    jail = Jail(tmp_path)
    try:
        files = Files(jail, max_file_bytes=1000)
        with files._write_lock:  # e.g. a recursive delete running in a worker thread
            assert files.try_write("a.txt", b"x") is None
        assert not (tmp_path / "a.txt").exists()
        result = files.try_write("a.txt", b"x")
        assert result is not None
        assert (result.size, (tmp_path / "a.txt").read_bytes()) == (1, b"x")
        assert files.read_small("a.txt", 0) is None
        assert files.read_small("a.txt", 1) == (b"x", result.sha256)
    finally:
        jail.close()


async def test_not_ready_as_soon_as_a_restart_is_asked_for(tmp_path: Path) -> None:
    # the local backend restarts the dev server and then polls /readyz: the outgoing
    # process's readiness must not answer that poll
    port = free_port()
    server_cmd = f"{sys.executable} -m http.server --bind 127.0.0.1 {port}"
    config = RuntimeConfig(
        workspace=tmp_path,
        insecure_no_auth=True,
        preview_cmd=server_cmd,
        preview_host="127.0.0.1",
        preview_port=port,
        preview_probe_interval_s=0.05,
    )
    supervisor = PreviewSupervisor(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        with trio.fail_after(30):
            first = await supervisor.wait_state("running")
            supervisor.request_restart()
            assert not supervisor.status().ready
            second = await supervisor.wait_state("running")
        assert second.ready
        assert second.pid != first.pid
        nursery.cancel_scope.cancel()


def _npm_config(workspace: Path) -> RuntimeConfig:
    return RuntimeConfig(
        workspace=workspace,
        insecure_no_auth=True,
        preview_cmd="npm --version; sleep 1000",  # an npm command that keeps running
        preview_port=free_port(),
    )


async def test_npm_dev_server_waits_for_the_workspace(tmp_path: Path) -> None:
    supervisor = PreviewSupervisor(_npm_config(tmp_path))
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        assert supervisor.pid is None  # empty workspace: init-workspace is still filling it
        (tmp_path / "package.json").write_text("{}")
        await trio.sleep(0.2)  # would be enough to spawn (it must not: no node_modules yet)
        assert supervisor.pid is None
        (tmp_path / "node_modules").mkdir()

        async def spawned() -> bool:
            return supervisor.pid is not None

        await wait_until(spawned)
        nursery.cancel_scope.cancel()


async def test_restart_ends_the_wait_for_the_workspace(tmp_path: Path) -> None:
    supervisor = PreviewSupervisor(_npm_config(tmp_path))
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        assert supervisor.pid is None
        supervisor.request_restart()

        async def spawned() -> bool:
            return supervisor.pid is not None

        await wait_until(spawned)
        nursery.cancel_scope.cancel()


async def test_other_commands_start_at_once_in_an_empty_workspace(tmp_path: Path) -> None:
    config = attrs.evolve(_npm_config(tmp_path), preview_cmd="sleep 1000")
    supervisor = PreviewSupervisor(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        assert supervisor.pid is not None
        nursery.cancel_scope.cancel()


async def test_full_app_waits_for_the_dev_server_unless_a_request_needs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Quart's import would compete with Vite's start for the CPU: it is built once the dev
    # server answers, or at once when a request needs it — never on a timer here.
    monkeypatch.setattr(server, "FULL_APP_DEFER_S", 3600.0)
    built = trio.Event()
    build = server._build_full_app

    def recording_build(fast: Any) -> Any:
        trio.from_thread.run_sync(built.set)  # at the start: the build has begun
        return build(fast)

    monkeypatch.setattr(server, "_build_full_app", recording_build)
    # A dev server that never opens its port.
    config = RuntimeConfig(
        workspace=tmp_path, token="t", host="127.0.0.1", port=0, preview_cmd="sleep 3600"
    )
    headers = {"Authorization": "Bearer t"}
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve, config)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
        ) as client:
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.post("/v1/exec", json={"command": "true"})).status_code == 200
            assert not built.is_set()  # fast routes never need it
            tree = await client.get("/v1/fs/tree")  # this one does: built on demand
            assert tree.status_code == 200
            assert built.is_set()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("command", "files", "waits"),
    [
        # the local backend's wait loop names the agent's own interpreter by absolute path
        (
            'i=0; s=$(/srv/agent/.venv/bin/python -S -c 1) && exec sh -c "$s"',
            ("package.json", "node_modules/"),
            False,
        ),
        ("npm run dev", ("package.json",), True),
        ("npm run dev", ("package.json", "node_modules/"), False),
        (".venv/bin/python -m uvicorn app.main:app --reload", (), True),
        (".venv/bin/python -m uvicorn app.main:app --reload", (".venv/",), False),
    ],
)
def test_the_dev_server_waits_only_for_its_own_workspace(
    tmp_path: Path, command: str, files: tuple[str, ...], waits: bool
) -> None:
    for name in files:
        if name.endswith("/"):
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_text("{}")
    config = RuntimeConfig(workspace=tmp_path, token="t", host="127.0.0.1", port=0,
                           preview_cmd=command)  # fmt: skip
    assert PreviewSupervisor(config)._workspace_incomplete() is waits
    if waits:  # nor is it spawned early (before trio's import): the supervisor waits first
        assert spawn_early(config) is None
