"""The raw HTTP/1.1 lane in front of hypercorn: framing, keep-alive, hand-over, limits.

Requests are written on raw sockets. The lane writes reason phrases (``HTTP/1.1 200 OK``)
where hypercorn (h11) writes none (``HTTP/1.1 200 ``), which tells the tests who answered.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import pytest
import trio
from amicable_sandbox_runtime import httplane
from amicable_sandbox_runtime.config import RuntimeConfig
from amicable_sandbox_runtime.server import serve
from amicable_testing.processes import wait_for_exit, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Runtime, StartRuntime

TOKEN = b"test-token-0123456789"
PHRASE_413 = HTTPStatus(413).phrase.encode()  # its name changed between Python versions


def request(
    method: str,
    target: str,
    body: bytes = b"",
    *,
    headers: tuple[bytes, ...] = (),
    version: bytes = b"1.1",
    auth: bool = True,
    length: bool = True,
) -> bytes:
    """One request with Host, the bearer token and Content-Length (unless told otherwise)."""
    lines = [f"{method} {target} HTTP/".encode() + version, b"Host: 127.0.0.1"]
    if auth:
        lines.append(b"Authorization: Bearer " + TOKEN)
    if length and (body or method in ("PUT", "POST")):
        lines.append(b"Content-Length: %d" % len(body))
    lines += headers
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class RawClient:
    """A connection to the runtime that reads responses one at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        """Wrap a connected stream."""
        self.stream = stream
        self.buf = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        chunk = await self.stream.receive_some(65536)
        self.buf += chunk
        return bool(chunk)

    async def response(self) -> tuple[bytes, dict[bytes, bytes], bytes]:
        """(status line, lower-cased headers, body) of the next response."""
        while b"\r\n\r\n" not in self.buf:
            if not await self._fill():
                raise EOFError(self.buf)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        if status.startswith(b"HTTP/1.1 1"):  # 100 Continue
            return await self.response()
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        size = int(headers[b"content-length"])
        while len(self.buf) < size:
            if not await self._fill():
                raise EOFError(self.buf)
        body, self.buf = self.buf[:size], self.buf[size:]
        return status, headers, body

    async def closed_by_server(self) -> bool:
        """Whether the server closed the connection (nothing more arrives before EOF)."""
        return not self.buf and not await self._fill()

    async def aclose(self) -> None:
        await self.stream.aclose()


Connect = Callable[[int], Awaitable["RawClient"]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Factory of raw connections, all closed at teardown."""
    clients: list[RawClient] = []

    async def open_one(port: int) -> RawClient:
        clients.append(RawClient(await trio.open_tcp_stream("127.0.0.1", port)))
        return clients[-1]

    yield open_one
    for client in clients:
        await client.aclose()


@pytest.fixture
async def small(start_runtime: StartRuntime) -> Runtime:
    """A runtime with a 100-byte body limit."""
    return await start_runtime(max_file_bytes=100)


async def test_pipelined_requests_on_one_connection(connect: Connect, runtime: Runtime) -> None:
    client = await connect(runtime.port)
    with trio.fail_after(30):
        await client.send(
            request("PUT", "/v1/files/src/a.txt", b"hello")
            + request("GET", "/v1/files/src/a.txt")
            + request("POST", "/v1/exec", b'{"command": "cat src/a.txt; echo"}')
            + request("GET", "/healthz", auth=False)
            + request("GET", "/readyz", auth=False)
            + request("GET", "/v1/files/missing.txt")
        )
        status, _, body = await client.response()
        assert status == b"HTTP/1.1 200 OK"
        put = json.loads(body)
        assert (put["path"], put["size"]) == ("/src/a.txt", 5)
        status, headers, body = await client.response()
        assert (status, body) == (b"HTTP/1.1 200 OK", b"hello")
        assert headers[b"x-content-sha256"] == put["sha256"].encode()
        assert headers[b"content-type"] == b"application/octet-stream"
        status, headers, body = await client.response()
        assert status == b"HTTP/1.1 200 OK"
        assert headers[b"content-type"] == b"application/json"
        assert json.loads(body)["stdout"] == "hello\n"
        assert (await client.response())[2] == b'{"status":"ok"}'
        assert (await client.response())[0] == b"HTTP/1.1 200 OK"
        status, _, body = await client.response()
        assert (status, json.loads(body)["error"]) == (b"HTTP/1.1 404 Not Found", "not_found")


async def test_head_and_body_split_over_many_small_sends(
    connect: Connect, runtime: Runtime
) -> None:
    client = await connect(runtime.port)
    data = request("PUT", "/v1/files/split.txt", b"0123456789" * 5) + request(
        "GET", "/v1/files/split.txt"
    )
    with trio.fail_after(30):
        for i in range(len(data)):
            await client.send(data[i : i + 1])
        status, _, body = await client.response()
        assert (status, json.loads(body)["size"]) == (b"HTTP/1.1 200 OK", 50)
        assert (await client.response())[2] == b"0123456789" * 5


async def test_hand_over_to_hypercorn_after_lane_requests(
    connect: Connect, runtime: Runtime
) -> None:
    client = await connect(runtime.port)
    with trio.fail_after(30):
        await client.send(request("PUT", "/v1/files/d/x.txt", b"x"))
        assert (await client.response())[0] == b"HTTP/1.1 200 OK"
        # the tree route is quart's: the rest of the connection goes to hypercorn
        await client.send(request("GET", "/v1/fs/tree?path=/d") + request("GET", "/healthz"))
        status, _, body = await client.response()
        assert status == b"HTTP/1.1 200 "
        assert [e["path"] for e in json.loads(body)["entries"]] == ["/d/x.txt"]
        status, _, body = await client.response()
        assert (status, body) == (b"HTTP/1.1 200 ", b'{"status":"ok"}')


@pytest.mark.parametrize(
    ("method", "target", "extra"),
    [
        ("GET", "/v1/files/missing.txt", b"Expect: 100-continue"),
        ("PUT", "/v1/files/d", b"Transfer-Encoding: chunked"),
        ("POST", "/v1/exec", b"Transfer-Encoding: chunked"),
        ("GET", "/v1/preview", b"Connection: keep-alive, Upgrade"),
    ],
)
async def test_lane_answers_like_hypercorn(
    connect: Connect, runtime: Runtime, method: str, target: str, extra: bytes
) -> None:
    """The same request through the lane and (forced by one header) through hypercorn."""
    (runtime.workspace / "d").mkdir()
    body = b'{"command": "exit 3", "cwd": "nope"}' if method == "POST" else b"x"
    answers = []
    for headers in ((), (extra,)):
        client = await connect(runtime.port)
        with trio.fail_after(30):
            if b"chunked" in extra and headers:
                chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
                await client.send(request(method, target, chunked, headers=headers, length=False))
            else:
                plain = body if method != "GET" else b""
                await client.send(request(method, target, plain, headers=headers))
            status, got_headers, got = await client.response()
        del got_headers[b"date"]
        answers.append((status.rsplit(b" ", 1)[0] if headers else status, got_headers, got))
    (lane_status, lane_headers, lane_body), (h_status, h_headers, h_body) = answers
    assert lane_status.startswith(h_status + b" ")  # only the reason phrase differs
    assert (lane_headers, lane_body) == (h_headers, h_body)
    assert lane_status.split(b" ")[1] in (b"200", b"400", b"404")


async def test_websocket_after_lane_requests_on_one_connection(
    connect: Connect, runtime: Runtime
) -> None:
    client = await connect(runtime.port)
    with trio.fail_after(30):
        await client.send(request("GET", "/healthz"))
        assert (await client.response())[0] == b"HTTP/1.1 200 OK"
        await client.send(
            request(
                "GET",
                "/v1/exec/stream",
                headers=(
                    b"Upgrade: websocket",
                    b"Connection: Upgrade",
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    b"Sec-WebSocket-Version: 13",
                ),
            )
        )
        while b"\r\n\r\n" not in client.buf:
            assert await client._fill()
        assert client.buf.startswith(b"HTTP/1.1 101 ")


async def test_malformed_head_is_400_and_the_server_keeps_serving(
    connect: Connect, runtime: Runtime
) -> None:
    for bad in (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n\r\n",  # no Host
        b"PUT /v1/files/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ):
        client = await connect(runtime.port)
        with trio.fail_after(30):
            await client.send(bad)
            status, headers, _ = await client.response()
            assert status == b"HTTP/1.1 400 ", bad
            assert headers[b"connection"] == b"close"
            assert await client.closed_by_server()
    assert (await runtime.client.get("/healthz")).status_code == 200
    assert not (runtime.workspace / "a").exists()


async def test_bare_lf_heads_are_hypercorns(connect: Connect, runtime: Runtime) -> None:
    client = await connect(runtime.port)
    with trio.fail_after(30):
        await client.send(b"GET /healthz HTTP/1.1\nHost: x\n\n")
        status, _, body = await client.response()
    assert (status, body) == (b"HTTP/1.1 200 ", b'{"status":"ok"}')


async def test_oversized_head_is_431(connect: Connect, runtime: Runtime) -> None:
    client = await connect(runtime.port)
    with trio.fail_after(30):
        await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000)
        status, _, _ = await client.response()
        assert status == b"HTTP/1.1 431 "
    assert (await runtime.client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("target", ["/v1/files/big.bin", "/v1/exec"])
async def test_content_length_over_the_limit_is_413_without_reading_the_body(
    connect: Connect, small: Runtime, target: str
) -> None:
    client = await connect(small.port)
    method = "PUT" if "files" in target else "POST"
    with trio.fail_after(30):
        head = request(method, target, headers=(b"Content-Length: 1000000000",), length=False)
        await client.send(head)  # and not one byte of the body
        status, headers, body = await client.response()
        assert (status, json.loads(body)["error"]) == (
            b"HTTP/1.1 413 " + PHRASE_413,
            "too_large",
        )
        assert headers[b"connection"] == b"close"
        assert await client.closed_by_server()
    assert not (small.workspace / "big.bin").exists()


async def test_over_the_limit_with_the_body_already_sent_keeps_the_connection(
    connect: Connect,
    small: Runtime,
) -> None:
    client = await connect(small.port)
    with trio.fail_after(30):
        await client.send(request("PUT", "/v1/files/big.bin", b"x" * 101))
        assert (await client.response())[0] == b"HTTP/1.1 413 " + PHRASE_413
        await client.send(request("PUT", "/v1/files/ok.bin", b"x" * 100))
        assert (await client.response())[0] == b"HTTP/1.1 200 OK"


async def test_unauthorized_before_the_body(connect: Connect, small: Runtime) -> None:
    client = await connect(small.port)
    with trio.fail_after(30):
        await client.send(request("GET", "/v1/files/x", auth=False))
        status, _, body = await client.response()
        assert (status, json.loads(body)["error"]) == (b"HTTP/1.1 401 Unauthorized", "unauthorized")
        # a 401 that leaves a body unread (even one over the limit) ends the connection
        head = request(
            "POST", "/v1/exec", auth=False, headers=(b"Content-Length: 5000",), length=False
        )
        await client.send(head)
        status, headers, _ = await client.response()
        assert (status, headers[b"connection"]) == (b"HTTP/1.1 401 Unauthorized", b"close")
        assert await client.closed_by_server()


async def test_slow_body_is_408(
    connect: Connect, autojump_clock: trio.abc.Clock, runtime: Runtime
) -> None:
    client = await connect(runtime.port)
    with trio.fail_after(600):
        await client.send(request("PUT", "/v1/files/slow.txt", b"0123456789")[:-7])
        status, headers, body = await client.response()
        assert status == b"HTTP/1.1 408 Request Timeout"
        assert json.loads(body)["error"] == "http_error"
        assert headers[b"connection"] == b"close"
        assert await client.closed_by_server()
    assert not (runtime.workspace / "slow.txt").exists()


async def test_idle_connection_is_closed_after_the_keep_alive_timeout(
    connect: Connect, autojump_clock: trio.abc.Clock, runtime: Runtime
) -> None:
    client = await connect(runtime.port)
    with trio.fail_after(600):
        await client.send(request("GET", "/healthz"))
        assert (await client.response())[0] == b"HTTP/1.1 200 OK"
        start = trio.current_time()
        assert await client.closed_by_server()
        assert trio.current_time() - start >= 5.0  # hypercorn's keep_alive_timeout


@pytest.mark.parametrize("framing", ["lane", "hypercorn"])
async def test_client_closing_during_an_exec_kills_its_group(
    runtime: Runtime, framing: str
) -> None:
    body = json.dumps({"command": "sleep 1000 & echo $! > child.pid; wait"}).encode()
    if framing == "lane":
        data = request("POST", "/v1/exec", body)
    else:  # a chunked body: the request goes to hypercorn and the ASGI route
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        headers = (b"Transfer-Encoding: chunked",)
        data = request("POST", "/v1/exec", chunked, headers=headers, length=False)
    pid_file = runtime.workspace / "child.pid"

    async def command_started() -> bool:
        return pid_file.exists() and bool(pid_file.read_text().strip())

    with trio.fail_after(30):
        stream = await trio.open_tcp_stream("127.0.0.1", runtime.port)
        await stream.send_all(data)
        await wait_until(command_started)
        await stream.aclose()
    await wait_for_exit(int(pid_file.read_text()))


async def test_http_10_is_answered_then_closed(connect: Connect, runtime: Runtime) -> None:
    client = await connect(runtime.port)
    with trio.fail_after(30):
        await client.send(
            request("GET", "/healthz", version=b"1.0", headers=(b"Connection: keep-alive",))
            + request("GET", "/healthz")
        )
        status, headers, _ = await client.response()
        assert (status, headers[b"connection"]) == (b"HTTP/1.1 200 OK", b"close")
        assert await client.closed_by_server()


async def test_connection_close_is_honoured(connect: Connect, runtime: Runtime) -> None:
    client = await connect(runtime.port)
    with trio.fail_after(30):
        await client.send(
            request("POST", "/v1/exec", b'{"command": "true"}', headers=(b"Connection: close",))
            + request("GET", "/healthz")
        )
        status, headers, body = await client.response()
        assert (status, headers[b"connection"]) == (b"HTTP/1.1 200 OK", b"close")
        assert json.loads(body)["exit_code"] == 0
        assert await client.closed_by_server()


async def test_a_failing_connection_ends_only_itself(
    connect: Connect, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = httplane.HttpLane._parse

    def parse(self: Any, buf: bytes, end: int) -> Any:
        if b"boom" in buf:
            raise RuntimeError("boom")
        return original(self, buf, end)

    monkeypatch.setattr(httplane.HttpLane, "_parse", parse)
    client = await connect(runtime.port)
    with trio.fail_after(30):
        await client.send(request("GET", "/healthz", headers=(b"X-Boom: boom",)))
        assert await client.closed_by_server()
    assert (await runtime.client.get("/healthz")).status_code == 200


async def test_cancelling_the_server_kills_a_running_lane_exec(
    connect: Connect, tmp_path: Path
) -> None:
    config = RuntimeConfig(
        workspace=tmp_path, token=TOKEN.decode(), host="127.0.0.1", port=0, preview_cmd=None
    )
    body = json.dumps({"command": "sleep 1000 & echo $! > child.pid; wait"}).encode()
    pid_file = tmp_path / "child.pid"

    async def command_started() -> bool:
        return pid_file.exists() and bool(pid_file.read_text().strip())

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, config)
            client = await connect(port)
            await client.send(request("POST", "/v1/exec", body))
            await wait_until(command_started)
            nursery.cancel_scope.cancel()
    await wait_for_exit(int(pid_file.read_text()))


async def test_chunked_bodies_keep_the_asgi_limits(connect: Connect, small: Runtime) -> None:
    """Chunked bodies go to hypercorn; the ASGI fast route still answers 413 past the limit."""
    client = await connect(small.port)
    chunk = b"x" * 60
    with trio.fail_after(30):
        await client.send(
            request(
                "PUT",
                "/v1/files/big.bin",
                b"3c\r\n%s\r\n3c\r\n%s\r\n0\r\n\r\n" % (chunk, chunk),
                headers=(b"Transfer-Encoding: chunked",),
                length=False,
            )
        )
        status, _, body = await client.response()
    assert (status, json.loads(body)["error"]) == (b"HTTP/1.1 413 ", "too_large")
    assert not (small.workspace / "big.bin").exists()


async def test_chunked_slow_body_is_408_on_the_asgi_route(
    connect: Connect, autojump_clock: trio.abc.Clock, runtime: Runtime
) -> None:
    client = await connect(runtime.port)
    with trio.fail_after(600):
        await client.send(
            request(
                "PUT",
                "/v1/files/slow.txt",
                b"3\r\nabc\r\n",  # and never the rest
                headers=(b"Transfer-Encoding: chunked",),
                length=False,
            )
        )
        status, _, body = await client.response()
    assert (status, json.loads(body)["error"]) == (b"HTTP/1.1 408 ", "http_error")
    assert not (runtime.workspace / "slow.txt").exists()
