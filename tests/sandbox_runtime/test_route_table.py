"""The route table of ``fastpath.py`` answers every method on its paths, as quart did when it
had copies of these routes: ``HEAD`` like ``GET`` without the body, ``OPTIONS`` with
``Allow``, 405 for the rest (after the token check), ``DELETE /v1/files`` left to quart.

Each request goes once through the raw lane and once through hypercorn and the ASGI entry
(``Expect: 100-continue`` makes the lane hand the request over)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import trio

if TYPE_CHECKING:
    from conftest import Runtime

TOKEN = b"test-token-0123456789"
VIA = {"lane": (), "hypercorn": (b"Expect: 100-continue",)}
Response = tuple[int, dict[bytes, bytes], bytes]


def _request(method: str, target: str, extra: tuple[bytes, ...], auth: bool = True) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", *extra]
    if auth:
        lines.append(b"Authorization: Bearer " + TOKEN)
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _exchange(port: int, *requests: tuple[str, bytes]) -> list[Response]:
    """Send the requests pipelined on one connection; their responses, read by their
    ``content-length`` (none for ``HEAD``), then nothing more may have arrived."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buf = b""
    out: list[Response] = []
    with trio.fail_after(30):
        await stream.send_all(b"".join(data for _, data in requests))
        for method, _ in requests:
            while True:
                while b"\r\n\r\n" not in buf:
                    buf += await stream.receive_some(65536)
                head, _, buf = buf.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 1"):  # skip 100 Continue
                    break
            status, *lines = head.split(b"\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            size = 0 if method == "HEAD" else int(headers[b"content-length"])
            while len(buf) < size:
                buf += await stream.receive_some(65536)
            headers.pop(b"date", None)
            out.append((int(status.split(b" ")[1]), headers, buf[:size]))
            buf = buf[size:]
    assert buf == b""  # e.g. no body after a HEAD answer
    await stream.aclose()
    return out


@pytest.mark.parametrize("via", sorted(VIA))
@pytest.mark.parametrize(
    "target", ["/healthz", "/readyz", "/v1/preview", "/v1/files/a.txt", "/v1/files/missing"]
)
async def test_head_is_get_without_the_body(runtime: Runtime, via: str, target: str) -> None:
    (runtime.workspace / "a.txt").write_bytes(b"hello")
    extra = VIA[via]
    head, get, after = await _exchange(
        runtime.port,
        ("HEAD", _request("HEAD", target, extra)),
        ("GET", _request("GET", target, extra)),
        ("GET", _request("GET", "/healthz", ())),  # the connection is still in step
    )
    assert head[:2] == get[:2]
    assert int(head[1][b"content-length"]) == len(get[2]) > 0
    assert after[0] == 200


@pytest.mark.parametrize("via", sorted(VIA))
async def test_options_lists_the_methods_of_the_path(runtime: Runtime, via: str) -> None:
    extra = VIA[via]
    answers = await _exchange(
        runtime.port,
        ("OPTIONS", _request("OPTIONS", "/healthz", extra, auth=False)),
        ("OPTIONS", _request("OPTIONS", "/v1/exec", extra)),
        ("OPTIONS", _request("OPTIONS", "/v1/files/src/a.txt", extra)),
        ("OPTIONS", _request("OPTIONS", "/v1/preview/restart", extra, auth=False)),
    )
    allowed = [set(headers.get(b"allow", b"").split(b", ")) for _, headers, _ in answers]
    assert [status for status, _, _ in answers] == [200, 200, 200, 401]
    assert allowed[:3] == [
        {b"GET", b"HEAD", b"OPTIONS"},
        {b"OPTIONS", b"POST"},
        {b"DELETE", b"GET", b"HEAD", b"OPTIONS", b"PUT"},  # DELETE is quart's
    ]
    assert answers[0][1][b"content-type"] == b"text/html; charset=utf-8"


@pytest.mark.parametrize("via", sorted(VIA))
async def test_other_methods_are_405_after_the_token_check(runtime: Runtime, via: str) -> None:
    extra = VIA[via]
    answers = await _exchange(
        runtime.port,
        ("POST", _request("POST", "/healthz", (*extra, b"Content-Length: 0"), auth=False)),
        ("GET", _request("GET", "/v1/exec", extra, auth=False)),
        ("GET", _request("GET", "/v1/exec", extra)),
        ("HEAD", _request("HEAD", "/v1/preview/restart", extra)),
        ("PATCH", _request("PATCH", "/v1/files/a.txt", (*extra, b"Content-Length: 0"))),
    )
    assert [status for status, _, _ in answers] == [405, 401, 405, 405, 405]
    for status, _, body in answers:
        if body and status == 405:
            assert json.loads(body) == {
                "error": "method_not_allowed",
                "detail": "The method is not allowed for the requested URL.",
            }


async def test_delete_of_a_file_is_quarts(runtime: Runtime) -> None:
    (runtime.workspace / "a.txt").write_bytes(b"x")
    resp = await runtime.client.delete("/v1/files/a.txt")
    assert (resp.status_code, resp.json()) == (200, {"path": "/a.txt"})
    assert not (runtime.workspace / "a.txt").exists()
