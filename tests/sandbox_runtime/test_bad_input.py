"""Bad input to the runtime: JSON bodies that are not strict JSON, paths and commands over
their limits, commands that cannot start. Every answer is an ``ErrorBody`` with its own
code and a 4xx status (``exec_failed`` 500), never a crash reported as a generic 500.

The malformed-body matrix reads the routes that take a JSON body from the route table and
the quart app, and sends each body through the raw lane and through hypercorn."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio_websocket
from amicable_protocol import MAX_COMMAND_BYTES
from amicable_sandbox_runtime.app import create_app
from amicable_sandbox_runtime.config import RuntimeConfig
from amicable_sandbox_runtime.fastpath import FastRoutes
from amicable_sandbox_runtime.files import Files
from amicable_sandbox_runtime.paths import Jail
from amicable_sandbox_runtime.supervisor import PreviewSupervisor

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Runtime

TOKEN = b"test-token-0123456789"
AUTH_HEADERS = [(b"Authorization", b"Bearer " + TOKEN)]
#: Every POST route that takes a JSON body -> a body it accepts.
BODIES: dict[str, dict[str, Any]] = {
    "/v1/exec": {"command": "echo ran > ran.txt"},
    "/v1/fs/move": {"from": "/a.txt", "to": "/moved.txt"},
    "/v1/fs/mkdir": {"path": "/made"},
    "/v1/fs/edit": {"path": "/a.txt", "old_string": "a", "new_string": "b"},
    "/v1/fs/glob": {"pattern": "*.txt", "path": "/"},
    "/v1/fs/grep": {"pattern": "a", "path": "/"},
}
VIA = {"lane": b"", "hypercorn": b"Expect: 100-continue\r\n"}


def malformed(body: dict[str, Any]) -> dict[str, bytes]:
    """Bodies that are not strict JSON, each otherwise shaped like ``body``."""
    text = json.dumps(body)
    return {
        "nested 100 deep": (text[:-1] + ', "x": ' + "[" * 100 + "]" * 100 + "}").encode(),
        "nested 100,000 deep": b"[" * 100_000,
        "invalid UTF-8": text.encode()[:-1] + b', "x": "\xff"}',
        "lone surrogates": json.dumps(
            {k: "\udcff" if isinstance(v, str) else v for k, v in body.items()}
        ).encode(),
        "NaN": (text[:-1] + ', "x": NaN}').encode(),
        "truncated": text.encode()[:-1],
    }


def test_the_matrix_covers_every_route_that_takes_a_json_body(tmp_path: Path) -> None:
    config = RuntimeConfig(workspace=tmp_path, token="t", preview_cmd=None)
    jail = Jail(tmp_path)
    try:
        files = Files(jail, max_file_bytes=config.max_file_bytes)
        fast = FastRoutes(config, jail, PreviewSupervisor(config), files, trio.CapacityLimiter(1))
        app = create_app(fast)
        found = {r.rule for r in app.url_map.iter_rules() if "POST" in (r.methods or ())}
        for path in ("/healthz", "/readyz", "/v1/preview", "/v1/preview/restart", "/v1/exec"):
            route = fast.route("POST", path)
            if route is not None and route.body:
                found.add(path)
    finally:
        jail.close()
    assert found == set(BODIES)


async def _post(port: int, path: str, body: bytes, via: bytes) -> tuple[int, bytes, bytes]:
    """One POST on a fresh connection: status, content type, body."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + TOKEN + b"\r\nContent-Type: application/json\r\n" + via
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip
        data = b""
        with trio.fail_after(30):
            while True:
                while b"\r\n\r\n" not in data:
                    data += await stream.receive_some(65536)
                if not data.startswith(b"HTTP/1.1 100"):
                    break
                data = data.partition(b"\r\n\r\n")[2]
            head, _, payload = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
            while len(payload) < int(headers[b"content-length"]):
                payload += await stream.receive_some(65536)
    return int(lines[0].split(b" ")[1]), headers.get(b"content-type", b""), payload


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


async def test_malformed_json_bodies_are_400_and_change_nothing(runtime: Runtime) -> None:
    (runtime.workspace / "a.txt").write_text("a")
    before = _snapshot(runtime.workspace)
    wrong = []
    for path, body in BODIES.items():
        for name, raw in malformed(body).items():
            for how, via in VIA.items():
                status, kind, payload = await _post(runtime.port, path, raw, via)
                try:
                    error = json.loads(payload)
                    assert (status, kind, set(error)) == (
                        400,
                        b"application/json",
                        {"error", "detail"},
                    )
                    assert error["error"] == "invalid_request"
                except (AssertionError, ValueError):
                    wrong.append((path, name, how, status, payload[:80]))
    assert wrong == []
    assert _snapshot(runtime.workspace) == before


async def test_a_malformed_first_exec_frame_is_an_error_frame(runtime: Runtime) -> None:
    for name, raw in malformed(BODIES["/v1/exec"]).items():
        url = f"ws://127.0.0.1:{runtime.port}/v1/exec/stream"
        with trio.fail_after(30):
            async with trio_websocket.open_websocket_url(url, extra_headers=AUTH_HEADERS) as ws:
                await ws.send_message(raw)
                error = json.loads(await ws.get_message())
        assert error["error"] == "invalid_request", name
    assert not (runtime.workspace / "ran.txt").exists()


LONG_NAME = "a" * 256
LONG_PATH = "/".join(["d" * 200] * 21)


@pytest.mark.parametrize("path", [LONG_NAME, "src/" + "é" * 128, LONG_PATH])
async def test_paths_over_the_limits_are_path_too_long(runtime: Runtime, path: str) -> None:
    c = runtime.client
    (runtime.workspace / "a.txt").write_text("a")
    before = _snapshot(runtime.workspace)
    answers = {
        "get": await c.get(f"/v1/files/{path}"),
        "put": await c.put(f"/v1/files/{path}", content=b"x"),
        "delete": await c.delete(f"/v1/files/{path}"),
        "mkdir": await c.post("/v1/fs/mkdir", json={"path": path}),
        "move": await c.post("/v1/fs/move", json={"from": "/a.txt", "to": path}),
        "edit": await c.post(
            "/v1/fs/edit", json={"path": path, "old_string": "a", "new_string": "b"}
        ),
        "tree": await c.get("/v1/fs/tree", params={"path": path}),
        "glob": await c.post("/v1/fs/glob", json={"pattern": "*", "path": path}),
        "exec cwd": await c.post("/v1/exec", json={"command": "true", "cwd": path}),
    }
    wrong = {
        what: (a.status_code, a.text[:100])
        for what, a in answers.items()
        if (a.status_code, a.json().get("error")) != (400, "path_too_long")
    }
    assert wrong == {}
    assert _snapshot(runtime.workspace) == before


async def test_a_name_of_255_bytes_works(runtime: Runtime) -> None:
    name = "b" * 251 + ".txt"
    assert (await runtime.client.put(f"/v1/files/{name}", content=b"x")).status_code == 200
    assert (runtime.workspace / name).read_bytes() == b"x"


def _heredoc(size: int) -> tuple[str, str]:
    """A command that writes ``size`` bytes of text to ``big.txt``, and that text."""
    line = "0123456789abcdef" * 4 + "\n"
    text = line * (size // len(line))
    return f"cat > big.txt <<'EOF'\n{text}EOF\nwc -c < big.txt", text


@pytest.mark.parametrize("size", [200 * 1024, MAX_COMMAND_BYTES - 100])
async def test_a_long_command_runs(runtime: Runtime, size: int) -> None:
    command, text = _heredoc(size)
    resp = await runtime.client.post("/v1/exec", json={"command": command})
    assert resp.status_code == 200, resp.text[:300]
    result = resp.json()
    assert (result["exit_code"], result["stderr"]) == (0, "")
    assert result["stdout"].strip() == str(len(text))
    assert (runtime.workspace / "big.txt").read_text() == text


async def test_a_long_command_streams(runtime: Runtime) -> None:
    command, text = _heredoc(200 * 1024)
    url = f"ws://127.0.0.1:{runtime.port}/v1/exec/stream"
    with trio.fail_after(30):
        async with trio_websocket.open_websocket_url(url, extra_headers=AUTH_HEADERS) as ws:
            await ws.send_message(json.dumps({"command": command + "; echo $0; cat"}))
            got = []
            while "exit_code" not in (frame := json.loads(await ws.get_message())):
                got.append(frame["data"])
    assert frame["exit_code"] == 0
    # the script is not the command's stdin: cat reads nothing
    assert "".join(got).split() == [str(len(text)), "/bin/sh"]


async def test_a_long_plain_word_list_runs(runtime: Runtime) -> None:
    # as ``sh -c <command>`` it would be one argument of 150 kB: over Linux's 128 kB limit
    command = "echo " + "ab " * 50_000
    resp = await runtime.client.post("/v1/exec", json={"command": command})
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["stdout"] == " ".join(["ab"] * 50_000) + "\n"


async def test_a_command_over_1_mib_is_command_too_long(runtime: Runtime) -> None:
    command = "true " + "x" * MAX_COMMAND_BYTES
    resp = await runtime.client.post("/v1/exec", json={"command": command})
    assert (resp.status_code, resp.json()["error"]) == (413, "command_too_long")
    assert str(MAX_COMMAND_BYTES) in resp.json()["detail"]
    url = f"ws://127.0.0.1:{runtime.port}/v1/exec/stream"
    with trio.fail_after(30):
        async with trio_websocket.open_websocket_url(
            url, extra_headers=AUTH_HEADERS, max_message_size=1 << 24
        ) as ws:
            await ws.send_message(json.dumps({"command": command}))
            error = json.loads(await ws.get_message())
    assert error["error"] == "command_too_long"


async def test_a_nul_byte_in_a_command_is_invalid_request(runtime: Runtime) -> None:
    resp = await runtime.client.post("/v1/exec", json={"command": "echo a\u0000b"})
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")


async def test_a_command_that_cannot_start_is_exec_failed(runtime: Runtime) -> None:
    # one environment string over Linux's 128 kB limit: execve fails with E2BIG
    body = {"command": "echo never", "env": {"BIG": "x" * 200_000}}
    resp = await runtime.client.post("/v1/exec", json=body)
    error = resp.json()
    assert (resp.status_code, error["error"]) == (500, "exec_failed")
    assert "Argument list too long" in error["detail"]
    url = f"ws://127.0.0.1:{runtime.port}/v1/exec/stream"
    with trio.fail_after(30):
        async with trio_websocket.open_websocket_url(url, extra_headers=AUTH_HEADERS) as ws:
            await ws.send_message(json.dumps(body))
            error = json.loads(await ws.get_message())
    assert error["error"] == "exec_failed"
