"""Every /v1 route requires the bearer token; health routes do not; no token, no start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
import trio_websocket
from amicable_sandbox_runtime.config import RuntimeConfig, load_config
from amicable_sandbox_runtime.errors import ConfigError

AUTH_HEADERS = [(b"Authorization", b"Bearer test-token-0123456789")]

if TYPE_CHECKING:
    from conftest import Runtime

ROUTES = [
    ("GET", "/v1/files/a.txt", None),
    ("PUT", "/v1/files/a.txt", b"x"),
    ("DELETE", "/v1/files/a.txt", None),
    ("POST", "/v1/fs/move", b'{"from": "a", "to": "b"}'),
    ("POST", "/v1/fs/mkdir", b'{"path": "d"}'),
    ("POST", "/v1/fs/edit", b'{"path": "a", "old_string": "x", "new_string": "y"}'),
    ("GET", "/v1/fs/tree", None),
    ("POST", "/v1/fs/glob", b'{"pattern": "*"}'),
    ("POST", "/v1/fs/grep", b'{"pattern": "x"}'),
    ("GET", "/v1/archive", None),
    ("POST", "/v1/exec", b'{"command": "touch pwned"}'),
    ("GET", "/v1/preview", None),
    ("POST", "/v1/preview/restart", None),
    ("GET", "/v1/preview/logs", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_v1_routes_reject_missing_or_wrong_token(
    runtime: Runtime, method: str, path: str, body: bytes | None
) -> None:
    async with httpx.AsyncClient(base_url=runtime.url) as anon:
        for auth in (None, "Bearer wrong-token", "test-token-0123456789", "Basic x", "Bearer"):
            headers = {"Authorization": auth} if auth else {}
            resp = await anon.request(method, path, content=body, headers=headers)
            assert resp.status_code == 401, auth
            assert resp.json()["error"] == "unauthorized"
    assert not (runtime.workspace / "pwned").exists()
    assert not (runtime.workspace / "a.txt").exists()


async def test_token_opens_the_routes(runtime: Runtime) -> None:
    resp = await runtime.client.put("/v1/files/a.txt", content=b"hello")
    assert resp.status_code == 200
    assert (runtime.workspace / "a.txt").read_bytes() == b"hello"


async def test_health_needs_no_token(runtime: Runtime) -> None:
    async with httpx.AsyncClient(base_url=runtime.url) as anon:
        assert (await anon.get("/healthz")).status_code == 200
        assert (await anon.get("/readyz")).status_code == 200  # no dev server configured


@pytest.mark.parametrize("auth", [None, "Bearer nope"])
async def test_exec_stream_rejects_missing_token(runtime: Runtime, auth: str | None) -> None:
    headers = [(b"Authorization", auth.encode())] if auth else []
    with trio.fail_after(20):
        # own the TCP stream: trio-websocket leaks its socket when the peer closes first
        stream = await trio.open_tcp_stream("127.0.0.1", runtime.port)
        try:
            async with trio.open_nursery() as nursery:
                ws = await trio_websocket.wrap_client_stream(
                    nursery, stream, "127.0.0.1", "/v1/exec/stream", extra_headers=headers
                )
                await ws.send_message('{"command": "touch pwned"}')
                error = json.loads(await ws.get_message())
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.get_message()
                await ws.aclose()
        finally:
            await stream.aclose()
    assert error["error"] == "unauthorized"
    assert closed.value.reason.code == 1008
    assert not (runtime.workspace / "pwned").exists()


UPGRADE = (
    b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n"
)


@pytest.mark.parametrize(
    ("path", "auth"),
    [
        (b"/v1/exec/stream", b""),
        (b"/nope", b""),
        (b"/v1/exec/stream", b"Authorization: Bearer x\r\n"),
    ],
)
async def test_bytes_during_websocket_handshake_do_not_stop_the_server(
    runtime: Runtime, path: bytes, auth: bytes
) -> None:
    # hypercorn 0.18 raises out of the connection on this input; the runtime must survive it.
    for _ in range(3):
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream("127.0.0.1", runtime.port)
            await stream.send_all(UPGRADE % (path, auth) + b"early bytes")
            await stream.receive_some(4096)
            await stream.aclose()
    assert (await runtime.client.get("/healthz")).status_code == 200
    assert (await runtime.client.put("/v1/files/still-up.txt", content=b"ok")).status_code == 200


async def test_exec_stream_accepts_token(runtime: Runtime) -> None:
    url = f"ws://127.0.0.1:{runtime.port}/v1/exec/stream"
    with trio.fail_after(20):
        async with trio_websocket.open_websocket_url(url, extra_headers=list(AUTH_HEADERS)) as ws:
            await ws.send_message('{"command": "echo hi"}')
            first = json.loads(await ws.get_message())
    assert first == {"stream": "stdout", "data": "hi\n"}


def test_no_token_refuses_to_start(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="insecure-no-auth"):
        load_config({"AMICABLE_WORKSPACE": "/tmp"})
    assert load_config({}, insecure_no_auth=True).token is None
    with pytest.raises(ConfigError):
        RuntimeConfig(workspace=tmp_path, token="")  # type: ignore[arg-type]


def test_token_from_file(tmp_path: object) -> None:
    from pathlib import Path

    token_file = Path(str(tmp_path)) / "token"
    token_file.write_text("s3cret\n")
    config = load_config({"AMICABLE_RUNTIME_TOKEN_FILE": str(token_file)})
    assert config.token == "s3cret"
    assert "s3cret" not in repr(config)


def test_cli_refuses_without_token(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMICABLE_RUNTIME_TOKEN")}
    env["AMICABLE_WORKSPACE"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "amicable_sandbox_runtime", "--no-preview", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0
    assert "insecure-no-auth" in proc.stderr


async def test_unknown_paths_need_the_token_too(runtime: Runtime) -> None:
    async with httpx.AsyncClient(base_url=runtime.url) as anon:
        for path in ("/v1", "/nope", "//v1/files/a", "/V1/files/a"):
            resp = await anon.get(path)
            assert resp.status_code == 401, path
    assert (await runtime.client.get("/nope")).status_code == 404
