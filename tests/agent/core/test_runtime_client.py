"""HttpRuntimeClient over the lean transport: token, keep-alive, error mapping, deadlines.

A scripted HTTP/1.1 server on loopback (port 0, in this Trio run) answers each request with
the next scripted action, so failures (resets, stalls, stale keep-alive connections) are
exact; one test runs the real sandbox runtime.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sys
import tarfile
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, aclosing, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import pytest
import trio
from amicable_agent.errors import RuntimeClientError
from amicable_agent.sandboxes.exec_stream import open_exec_stream
from amicable_agent.sandboxes.runtime_client import ResponseLimits, open_runtime_client
from amicable_protocol import ExecExit, ExecOutput, ExecRequest
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

TOKEN = "runtime-client-test-token"
Action = Callable[[trio.SocketStream], Awaitable[bool]]  # True: keep the connection open
EXIT = {"exit_code": 0, "stdout": "hi\n", "stderr": "", "truncated": False, "timed_out": False}
EXIT["duration_ms"] = 3
PREVIEW = {"state": "running", "pid": None, "restarts": 0, "max_restarts": 5}
PREVIEW.update({"last_exit_code": None, "port": 5173, "ready": True})


def reply(status: int, body: bytes, *, content_type: str = "application/json") -> Action:
    async def act(stream: trio.SocketStream) -> bool:
        head = (
            f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        await stream.send_all(head + body)
        return True

    return act


def reply_json(status: int, obj: object) -> Action:
    return reply(status, json.dumps(obj).encode())


def reply_then_close(status: int, obj: object) -> Action:
    inner = reply_json(status, obj)

    async def act(stream: trio.SocketStream) -> bool:
        await inner(stream)
        return False

    return act


async def stall(stream: trio.SocketStream) -> bool:
    await trio.sleep_forever()
    return False  # pragma: no cover


async def cut_body(stream: trio.SocketStream) -> bool:
    """A head promising 100 bytes, 5 of them, then a reset."""
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
    return False


async def stall_mid_body(stream: trio.SocketStream) -> bool:
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
    await trio.sleep_forever()
    return False  # pragma: no cover


@attrs.define
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    conn: int


@attrs.define
class Script:
    """The scripted server: ``actions`` are consumed one per request, in order."""

    port: int
    actions: list[Action] = attrs.Factory(list)
    seen: list[Seen] = attrs.Factory(list)
    connections: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _read_request(stream: trio.SocketStream, buf: bytearray) -> tuple[str, bytes] | None:
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buf += data
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end]).decode()
    del buf[: end + 4]
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(buf) < length:
        buf += await stream.receive_some(65536)
    body = bytes(buf[:length])
    del buf[:length]
    return head, body


@pytest.fixture
async def script(nursery: trio.Nursery) -> Script:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    state = Script(port=listeners[0].socket.getsockname()[1])

    async def handle(stream: trio.SocketStream) -> None:
        state.connections += 1
        conn = state.connections
        buf = bytearray()
        async with stream:
            while True:
                try:
                    got = await _read_request(stream, buf)
                except trio.BrokenResourceError:
                    return
                if got is None:
                    return
                head, body = got
                lines = head.split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                state.seen.append(Seen(method, target, headers, body, conn))
                try:
                    if not await state.actions.pop(0)(stream):
                        return
                except trio.BrokenResourceError:
                    return  # the client hung up mid-answer (e.g. it refused a big body)

    await nursery.start(trio.serve_listeners, handle, listeners)
    return state


async def test_bearer_token_body_and_keep_alive(script: Script) -> None:
    script.actions = [reply_json(200, EXIT), reply_json(200, EXIT)]
    script.actions.append(reply(200, b"content", content_type="application/octet-stream"))
    async with open_runtime_client(script.url, TOKEN) as client:
        first = await client.exec("echo hi", cwd="/src", timeout_s=5)
        second = await client.exec("echo hi")
        content, _ = await client.read_file("/a dir/x.ts")
    assert (first.exit_code, first.stdout, second.stdout) == (0, "hi\n", "hi\n")
    assert content == b"content"
    assert script.connections == 1  # one keep-alive connection for all three requests
    assert [s.conn for s in script.seen] == [1, 1, 1]
    sent = script.seen[0]
    assert (sent.method, sent.target) == ("POST", "/v1/exec")
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(sent.body)["command"] == "echo hi"
    assert json.loads(sent.body)["cwd"] == "/src"
    assert script.seen[2].target == "/v1/files/a%20dir/x.ts"


async def test_a_capped_read_refuses_a_body_over_the_cap(script: Script) -> None:
    # A sandbox is untrusted: a capped read stops at the cap whatever the answer claims.
    big = b"x" * 300_000
    script.actions = [
        reply(200, b"small", content_type="application/octet-stream"),
        reply(200, big, content_type="application/octet-stream"),
        reply_json(404, {"error": "not_found", "detail": "/nope"}),
        reply(200, b"again", content_type="application/octet-stream"),
    ]
    async with open_runtime_client(script.url, TOKEN) as client:
        assert (await client.read_file("/a", max_bytes=5))[0] == b"small"
        with pytest.raises(RuntimeClientError) as too_big:
            await client.read_file("/b", max_bytes=100_000)
        with pytest.raises(RuntimeClientError) as missing:
            await client.read_file("/nope", max_bytes=10)
        assert (await client.read_file("/c", max_bytes=5))[0] == b"again"
    assert (too_big.value.status, too_big.value.code) == (413, "too_large")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert script.seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert script.connections == 2  # the refused body's connection was dropped, not reused


async def test_no_token_no_authorization_header(script: Script) -> None:
    script.actions = [reply_json(200, PREVIEW)]
    async with open_runtime_client(script.url, None) as client:
        ready, body = await client.readyz()
    assert (ready, body) == (True, PREVIEW)
    assert "authorization" not in script.seen[0].headers


async def test_error_bodies_map_to_runtime_client_error(script: Script) -> None:
    script.actions = [
        reply_json(409, {"error": "conflict", "detail": "sha mismatch"}),
        reply(500, b"boom", content_type="text/plain"),
        reply(200, b"not json"),
        reply_json(503, {"ready": False}),
    ]
    async with open_runtime_client(script.url, TOKEN) as client:
        with pytest.raises(RuntimeClientError) as conflict:
            await client.write_file("a.txt", b"x", if_match="abc")
        with pytest.raises(RuntimeClientError) as plain:
            await client.mkdir("d")
        with pytest.raises(RuntimeClientError) as invalid:
            await client.preview_status()
        ready, body = await client.readyz()
    assert (conflict.value.status, conflict.value.code) == (409, "conflict")
    assert conflict.value.detail == "sha mismatch"
    assert script.seen[0].headers["if-match"] == "abc"
    assert (plain.value.status, plain.value.code, plain.value.detail) == (500, "http_error", "boom")
    assert (invalid.value.status, invalid.value.code) == (200, "invalid_response")
    assert (ready, body) == (False, {"ready": False})
    assert script.connections == 1


async def test_server_closing_an_idle_connection_is_not_an_error(script: Script) -> None:
    script.actions = [reply_then_close(200, PREVIEW), reply_json(200, {"x": 1})]
    async with open_runtime_client(script.url, TOKEN) as client:
        await client.preview_status()
        await trio.testing.wait_all_tasks_blocked()  # the server has closed its end
        ready, body = await client.readyz()
    assert (ready, body) == (True, {"x": 1})
    assert script.connections == 2


async def test_connection_refused_is_unreachable() -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    async with open_runtime_client(f"http://127.0.0.1:{port}", TOKEN) as client:
        with pytest.raises(RuntimeClientError) as exc:
            await client.exec("true")
        with pytest.raises(RuntimeClientError) as ready:
            await client.readyz()
    assert (exc.value.status, exc.value.code) == (0, "unreachable")
    assert exc.value.detail.startswith("ConnectError: ")
    assert (ready.value.code, ready.value.detail) == ("unreachable", "ConnectError")


async def test_reset_mid_body_is_unreachable_and_the_next_request_reconnects(
    script: Script,
) -> None:
    script.actions = [cut_body, reply_json(200, PREVIEW)]
    async with open_runtime_client(script.url, TOKEN) as client:
        with pytest.raises(RuntimeClientError) as exc:
            await client.preview_status()
        await client.preview_status()
    assert (exc.value.status, exc.value.code) == (0, "unreachable")
    assert "RemoteProtocolError" in exc.value.detail
    assert script.connections == 2


async def test_deadlines(script: Script, autojump_clock: trio.testing.MockClock) -> None:
    script.actions = [stall, stall, reply_json(200, PREVIEW)]
    async with open_runtime_client(script.url, TOKEN, timeout_s=7) as client:
        start = trio.current_time()
        with pytest.raises(RuntimeClientError) as plain:
            await client.preview_status()
        assert trio.current_time() - start == pytest.approx(7)
        start = trio.current_time()
        with pytest.raises(RuntimeClientError) as ex:
            await client.exec("sleep 100", timeout_s=50)
        assert trio.current_time() - start == pytest.approx(80)  # exec timeout + slack
        await client.preview_status()  # a fresh connection: the stalled ones were closed
    assert (plain.value.status, plain.value.code) == (0, "timeout")
    assert plain.value.detail == "GET /v1/preview took over 7s"
    assert ex.value.detail == "POST /v1/exec took over 80.0s"
    assert script.connections == 3


@pytest.mark.parametrize("action", [stall, stall_mid_body])
async def test_cancelled_request_closes_its_connection(script: Script, action: Action) -> None:
    script.actions = [action, reply_json(200, PREVIEW)]
    async with open_runtime_client(script.url, TOKEN) as client:
        with trio.move_on_after(1) as scope:
            await client.exec("sleep 100")
        assert scope.cancelled_caught
        status = await client.preview_status()
    assert status.state == "running"
    assert script.connections == 2  # the cancelled request's connection was not reused


async def test_query_parameters_and_path_prefix(script: Script) -> None:
    script.actions = [reply_json(200, {"path": "/a b&c", "entries": []}), reply(200, b"")]
    async with open_runtime_client(script.url + "/sandbox/", TOKEN) as client:
        await client.tree("/a b&c", depth=2, include_hidden=True)
        await client.delete("x y", recursive=True)
    assert script.seen[0].target == "/sandbox/v1/fs/tree?path=%2Fa+b%26c&depth=2&include_hidden=1"
    assert (script.seen[1].method, script.seen[1].target) == (
        "DELETE",
        "/sandbox/v1/files/x%20y?recursive=1",
    )


@pytest.fixture
async def real_runtime_url(tmp_path: Path) -> AsyncIterator[str]:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    ready = tmp_path / "ready.json"
    exe = str(Path(sys.executable).parent / "amicable-sandbox-runtime")
    env = {**os.environ, "AMICABLE_RUNTIME_TOKEN": TOKEN, "AMICABLE_RUNTIME_HOST": "127.0.0.1"}
    argv = [exe, "--no-preview", "--port", "0", "--ready-file", str(ready)]
    proc = await trio.lowlevel.open_process(
        [*argv, "--workspace", str(workspace)], env=env, start_new_session=True
    )
    try:
        with trio.fail_after(30):
            while not ready.exists():
                await trio.sleep(0.05)
        yield f"http://127.0.0.1:{json.loads(ready.read_text())['port']}"
    finally:
        with trio.CancelScope(shield=True):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def test_real_runtime_round_trip(real_runtime_url: str) -> None:
    async with open_runtime_client(real_runtime_url, TOKEN) as client:
        written = await client.write_file("src/a.txt", b"one\n")
        content, sha = await client.read_file("src/a.txt")
        result = await client.exec("cat src/a.txt; echo err >&2; exit 3")
        big = await client.exec("head -c 150000 /dev/zero | tr '\\0' x")
        ready, _ = await client.readyz()
        with pytest.raises(RuntimeClientError) as missing:
            await client.read_file("nope.txt")
    async with open_runtime_client(real_runtime_url, "wrong") as bad:
        with pytest.raises(RuntimeClientError) as unauthorized:
            await bad.exec("true")
    assert (content, sha) == (b"one\n", written.sha256)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "one\n", "err\n")
    assert len(big.stdout) == 150000  # a body larger than one receive
    assert ready
    assert missing.value.status == 404
    assert unauthorized.value.status == 401


async def close_without_reply(stream: trio.SocketStream) -> bool:
    """Read the request, then hang up (a runtime that died while handling it)."""
    await trio.lowlevel.checkpoint()
    return False


async def test_a_post_is_never_sent_twice_but_a_get_is_retried(script: Script) -> None:
    # On a reused connection that breaks after the request went out, the server may have
    # acted on it: an exec must not run twice; a read is safe to send again.
    script.actions = [
        reply_json(200, PREVIEW), close_without_reply,  # exec on the reused connection
        reply_json(200, PREVIEW), close_without_reply, reply_json(200, PREVIEW),  # a GET
    ]  # fmt: skip
    async with open_runtime_client(script.url, TOKEN) as client:
        await client.preview_status()
        with pytest.raises(RuntimeClientError) as exc:
            await client.exec("touch once")
        await client.preview_status()
        await client.preview_status()  # reused connection, hung up, sent again
    assert exc.value.code == "unreachable"
    assert [s.method for s in script.seen] == ["GET", "POST", "GET", "GET", "GET"]
    assert sum(s.target == "/v1/exec" for s in script.seen) == 1


async def test_real_runtime_archive_streams_zip_and_tar(real_runtime_url: str) -> None:
    big = os.urandom(700_000)  # several chunks
    async with open_runtime_client(real_runtime_url, TOKEN) as client:
        await client.write_file("src/App.tsx", b"app\n")
        await client.write_file("assets/big.bin", big)
        await client.write_file(".env", b"SECRET=1\n")
        archives: dict[str, bytes] = {}
        for fmt in ("zip", "tar.gz"):
            async with aclosing(client.archive(fmt)) as chunks:
                parts = [chunk async for chunk in chunks]
            assert len(parts) > 1
            archives[fmt] = b"".join(parts)
        # leaving a stream early closes it; the client keeps working
        async with aclosing(client.archive("zip")) as chunks:
            await anext(chunks)
        assert (await client.read_file("src/App.tsx"))[0] == b"app\n"
        with pytest.raises(RuntimeClientError) as bad:
            async with aclosing(client.archive("rar")) as chunks:
                await anext(chunks)
    assert (bad.value.status, bad.value.code) == (400, "invalid_request")
    with zipfile.ZipFile(io.BytesIO(archives["zip"])) as zf:
        assert zf.read("src/App.tsx") == b"app\n"
        assert zf.read("assets/big.bin") == big
        assert ".env" not in zf.namelist()
    with tarfile.open(fileobj=io.BytesIO(archives["tar.gz"]), mode="r:gz") as tar:
        assert tar.extractfile("assets/big.bin").read() == big  # type: ignore[union-attr]


# --- /v1/exec/stream against the real runtime ------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


async def _wait_dead(pid: int) -> None:
    with trio.fail_after(10):
        while _alive(pid):  # another process's death: nothing to wait on but polling
            await trio.sleep(0.02)


async def test_exec_stream_yields_output_in_order_then_the_exit(real_runtime_url: str) -> None:
    command = "for i in 1 2 3; do echo line$i; sleep 0.05; done; echo err >&2; exit 4"
    async with (
        open_runtime_client(real_runtime_url, TOKEN) as client,
        client.open_exec_stream(command) as items,
    ):
        got = [item async for item in items]
        with pytest.raises(StopAsyncIteration):  # nothing after the exit
            await anext(items)
    assert isinstance(got[-1], ExecExit)
    assert (got[-1].exit_code, got[-1].timed_out) == (4, False)
    outputs = [i for i in got[:-1] if isinstance(i, ExecOutput)]
    assert len(outputs) == len(got) - 1
    assert len(outputs) >= 3  # streamed as it happened, not collected
    stdout = "".join(i.data for i in outputs if i.stream == "stdout")
    assert stdout == "line1\nline2\nline3\n"
    assert "".join(i.data for i in outputs if i.stream == "stderr") == "err\n"


async def test_leaving_the_exec_stream_early_kills_the_command(
    real_runtime_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ws" / "sleeper.pid"
    async with open_runtime_client(real_runtime_url, TOKEN) as client:
        async with client.open_exec_stream("echo $$ > sleeper.pid; echo started; sleep 300") as s:
            async for item in s:
                if isinstance(item, ExecOutput) and "started" in item.data:
                    break
        await _wait_dead(int(marker.read_text()))
        # Cancelled while waiting for output: the same.
        with trio.move_on_after(0.5):
            async with client.open_exec_stream("echo $$ > sleeper.pid; exec sleep 300") as s:
                async for _item in s:
                    pass
        await _wait_dead(int(marker.read_text()))
        assert (await client.exec("echo still fine")).stdout == "still fine\n"


async def _drain(stream: AbstractAsyncContextManager[AsyncIterator[object]]) -> list[object]:
    async with stream as items:
        return [item async for item in items]


async def test_exec_stream_errors_are_runtime_client_errors(
    real_runtime_url: str, tmp_path: Path
) -> None:
    async with open_runtime_client(real_runtime_url, "wrong") as bad:
        with pytest.raises(RuntimeClientError) as refused:
            await _drain(bad.open_exec_stream("touch pwned"))
    # The runtime accepts the upgrade, then answers with an error frame and closes (1008).
    assert (refused.value.status, refused.value.code) == (400, "unauthorized")
    assert not (tmp_path / "ws" / "pwned").exists()
    async with open_runtime_client(real_runtime_url, TOKEN) as client:
        with pytest.raises(RuntimeClientError) as bad_cwd:
            await _drain(client.open_exec_stream("true", cwd="/no/such/dir"))
    assert bad_cwd.value.status == 400
    assert bad_cwd.value.code
    # The whole stream's deadline (here 0.3 s; the exec's own timeout plus slack in use).
    request = ExecRequest("echo $$ > slow.pid; sleep 30", None, None, None)
    with pytest.raises(RuntimeClientError) as slow:
        await _drain(open_exec_stream(urlsplit(real_runtime_url), TOKEN, request, 0.3))
    assert slow.value.code == "timeout"
    await _wait_dead(int((tmp_path / "ws" / "slow.pid").read_text()))
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    async with open_runtime_client(f"http://127.0.0.1:{closed}", TOKEN) as nowhere:
        with pytest.raises(RuntimeClientError) as unreachable:
            await _drain(nowhere.open_exec_stream("true"))
    assert (unreachable.value.status, unreachable.value.code) == (0, "unreachable")


async def test_an_error_in_the_block_is_not_wrapped_in_a_group(real_runtime_url: str) -> None:
    async with open_runtime_client(real_runtime_url, TOKEN) as client:
        with pytest.raises(KeyError, match="mine"):
            async with client.open_exec_stream("sleep 30"):
                raise KeyError("mine")


# --- a compromised runtime cannot make the agent read without end -----------------------


async def endless_chunked(stream: trio.SocketStream) -> bool:
    """A 200 whose chunked body never ends."""
    await stream.send_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while True:
            await stream.send_all(chunk)
    return False


async def huge_length(stream: trio.SocketStream) -> bool:
    """A head declaring a terabyte (a client that trusted it would try to hold it)."""
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000000\r\n\r\nxx")
    return False


async def test_answers_are_capped(script: Script) -> None:
    script.actions = [endless_chunked, huge_length, endless_chunked, reply_json(200, PREVIEW)]
    limits = ResponseLimits(response_bytes=1024 * 1024, archive_bytes=2 * 1024 * 1024)
    async with open_runtime_client(script.url, TOKEN, limits=limits) as client:
        for _ in range(2):
            with pytest.raises(RuntimeClientError) as big:
                await client.read_file("/big.bin")
            assert big.value.code == "too_large"
        with pytest.raises(RuntimeClientError) as archive:
            await drain(client.archive())
        assert archive.value.code == "too_large"
        assert (await client.preview_status()).ready, "the client keeps working"


async def test_exec_stream_messages_are_capped(nursery: trio.Nursery) -> None:
    async def flood(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()  # the ExecRequest
        with suppress(ConnectionClosed):
            await ws.send_message("x" * (5 * 1024 * 1024))

    server = await nursery.start(serve_websocket, flood, "127.0.0.1", 0, None)
    url = f"http://127.0.0.1:{server.port}"
    async with open_runtime_client(url, TOKEN) as client:
        with pytest.raises(RuntimeClientError) as big:
            await _drain(client.open_exec_stream("yes"))
    assert big.value.code == "too_large"


async def drain(items: Any) -> None:
    async with aclosing(items) as opened:
        async for _ in opened:
            pass
