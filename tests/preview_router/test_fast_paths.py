"""Edge cases of the router's hot-path shortcuts (keep-alive reuse, bodies that come with
the head, waiting for the next request), each checked against real loopback servers."""

from __future__ import annotations

import hashlib

import pytest
import trio
import trio.testing
from amicable_preview_router import http1
from amicable_preview_router.errors import BadRequest, UpstreamProtocolError
from amicable_preview_router.http1 import (
    build_upstream_request,
    connection_tokens,
    parse_request_head,
)
from amicable_preview_router.server import serve
from amicable_protocol.preview import PreviewResolution

from .conftest import BASE, H11Upstream, RouterUnderTest, make_config, raw_exchange

APP = f"app.{BASE}"


def _responses(out: bytes) -> list[tuple[int, bytes]]:
    """Split a stream of Content-Length framed responses into (status code, body)."""
    found = []
    while out:
        head, _, rest = out.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        found.append((int(head.split(b" ", 2)[1]), rest[:length]))
        out = rest[length:]
    return found


async def test_host_change_on_a_keep_alive_connection_is_resolved_and_validated_again(
    nursery: trio.Nursery, router: RouterUnderTest
) -> None:
    other = H11Upstream()
    await nursery.start(other.serve)
    router.resolver.answers[f"other.{BASE}"] = PreviewResolution(
        "other", f"http://127.0.0.1:{other.port}"
    )
    requests = [
        f"GET /first HTTP/1.1\r\nHost: {APP}\r\n\r\n",
        f"GET /second HTTP/1.1\r\nHost: other.{BASE}\r\n\r\n",
        f"GET /third HTTP/1.1\r\nHost: nosuch.{BASE}\r\n\r\n",
        f"GET /fourth HTTP/1.1\r\nHost: a.app.{BASE}\r\n\r\n",
        f"GET /fifth HTTP/1.1\r\nHost: {APP}\r\nConnection: close\r\n\r\n",
    ]
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    out = b""
    async with stream:
        for request in requests:  # one at a time, each on the same connection
            await stream.send_all(request.encode())
            with trio.fail_after(10):
                while (
                    out.count(b"HTTP/1.1 ") < requests.index(request) + 1
                    or not (_responses(out)[-1][1])
                ):
                    out += await stream.receive_some(65536)
    statuses = [status for status, _ in _responses(out)]
    assert statuses == [200, 200, 404, 404, 200]
    assert [r["target"] for r in router.upstream.requests] == ["/first", "/fifth"]
    assert [r["target"] for r in other.requests] == ["/second"]
    # The invalid host (two labels) never reached the resolver; the unknown one did.
    assert f"nosuch.{BASE}" in router.resolver.calls
    assert not any(call.startswith("a.app.") for call in router.resolver.calls)


async def test_small_body_sent_with_the_head_then_the_next_request(
    router: RouterUnderTest,
) -> None:
    body = b"hello"
    data = (
        f"POST /upload HTTP/1.1\r\nHost: {APP}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
        + f"GET /after HTTP/1.1\r\nHost: {APP}\r\nConnection: close\r\n\r\n".encode()
    )
    out = await raw_exchange(router.port, data)
    responses = _responses(out)
    assert [status for status, _ in responses] == [200, 200]
    assert responses[0][1] == f"5 {hashlib.sha256(body).hexdigest()}".encode()
    assert responses[1][1] == b"hello from upstream"
    assert [r["target"] for r in router.upstream.requests] == ["/upload", "/after"]


async def test_body_arriving_after_the_head_is_still_relayed(router: RouterUnderTest) -> None:
    body = b"x" * 1000
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    async with stream:
        await stream.send_all(
            f"POST /upload HTTP/1.1\r\nHost: {APP}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n{body[:10].decode()}".encode()
        )
        await trio.testing.wait_all_tasks_blocked()
        await stream.send_all(body[10:])
        out = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                out += chunk
    assert _responses(out)[0][1] == f"1000 {hashlib.sha256(body).hexdigest()}".encode()


async def test_small_body_on_a_pooled_connection_the_upstream_closed_is_not_replayed(
    router: RouterUnderTest,
) -> None:
    first = await raw_exchange(
        router.port, f"GET / HTTP/1.1\r\nHost: {APP}\r\nConnection: close\r\n\r\n".encode()
    )
    assert first.startswith(b"HTTP/1.1 200")
    await router.upstream.close_all()  # the pooled connection dies under the router
    await trio.testing.wait_all_tasks_blocked()
    out = await raw_exchange(
        router.port,
        f"POST /upload HTTP/1.1\r\nHost: {APP}\r\nContent-Length: 2\r\n"
        f"Connection: close\r\n\r\nhi".encode(),
    )
    # The upstream may have acted on a request it then dropped: a body is never replayed on
    # a fresh connection (as nginx without non_idempotent retries); the client gets a 502.
    assert out.split(b" ", 2)[1] == b"502"
    assert router.upstream.connections == 1
    assert "/upload" not in [r["target"] for r in router.upstream.requests]


async def test_keep_alive_client_that_sends_before_reading_is_served(
    router: RouterUnderTest,
) -> None:
    # The router waits for readability before reading a follow-up request; a request that
    # is already waiting in the socket must be seen at once.
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    async with stream:
        await stream.send_all(f"GET /one HTTP/1.1\r\nHost: {APP}\r\n\r\n".encode())
        out = b""
        with trio.fail_after(10):
            while b"hello from upstream" not in out:
                out += await stream.receive_some(65536)
            await stream.send_all(f"GET /two HTTP/1.1\r\nHost: {APP}\r\n\r\n".encode())
            await stream.send_all(
                f"GET /three HTTP/1.1\r\nHost: {APP}\r\nConnection: close\r\n\r\n".encode()
            )
            while chunk := await stream.receive_some(65536):
                out += chunk
    assert out.count(b"hello from upstream") == 3


def test_request_field_blocks_are_reused_only_for_identical_valid_bytes() -> None:
    block = f"\r\nHost: {APP}\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nAccept: */*"
    first = parse_request_head(f"GET /a HTTP/1.1{block}".encode())
    second = parse_request_head(f"POST /b HTTP/1.0{block}".encode())
    assert (second.method, second.target, second.version) == (b"POST", b"/b", b"HTTP/1.0")
    assert second.framing(b"host") == first.framing(b"host") == [APP.encode()]
    for head in (first, second):
        out = build_upstream_request(
            head,
            connection_tokens(head),
            client_ip=b"10.0.0.1",
            proto=b"http",
            trusted=False,
            websocket=False,
        )
        assert b"X-Drop" not in out
        assert b"Accept: */*" in out
        assert out.startswith(head.method + b" " + head.target + b" " + head.version + b"\r\n")
    # A block that differs by one byte is parsed (and validated) on its own.
    with pytest.raises(BadRequest):
        parse_request_head(f"GET /a HTTP/1.1{block}\r\nBad Header: x".encode())
    other = parse_request_head(f"GET /a HTTP/1.1\r\nHost: other.{BASE}".encode())
    assert other.framing(b"host") == [f"other.{BASE}".encode()]


def test_request_field_cache_stays_bounded() -> None:
    for i in range(2000):
        parse_request_head(f"GET / HTTP/1.1\r\nHost: {APP}\r\nX-N: {i}".encode())
    assert len(http1._REQUEST_FIELDS) <= http1._CACHE_ENTRIES_MAX
    parse_request_head(b"GET / HTTP/1.1\r\nX: " + b"y" * 10_000)
    assert all(len(k) <= http1._CACHE_BLOCK_MAX for k in http1._REQUEST_FIELDS)


def test_response_heads_are_reused_only_for_identical_valid_bytes() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\n"
        b'X-Hop: 1\r\nKeep-Alive: timeout=5\r\nETag: "a"'
    )
    first = http1.parse_response_head(raw)
    again = http1.parse_response_head(bytes(raw))  # equal bytes, another object
    assert again is first
    assert http1.response_body_length(b"GET", first) == 5
    assert http1.response_body_length(b"HEAD", first) == 0  # the memo is for non-HEAD only
    keep = http1.build_client_response(first, close=False)
    close = http1.build_client_response(first, close=True)
    assert keep == b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "a"\r\n\r\n'
    assert (
        close == b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "a"\r\nConnection: close\r\n\r\n'
    )
    assert http1.build_client_response(again, close=False) is keep  # memoised per head
    assert http1.build_client_response(again, close=True) is close
    upgrade = http1.build_client_response(first, close=False, upgrade=True)
    assert upgrade.endswith(b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    # One byte more is a different head; a malformed head is refused every time.
    other = http1.parse_response_head(raw.replace(b"200 OK", b"201 Created"))
    assert other is not first
    assert other.status == 201
    for _ in range(2):
        with pytest.raises(UpstreamProtocolError):
            http1.parse_response_head(raw + b"\r\nBad Header: x")
    for _ in range(2):
        head = http1.parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: x")
        with pytest.raises(UpstreamProtocolError):
            http1.response_body_length(b"GET", head)


def test_response_head_cache_stays_bounded() -> None:
    for i in range(2000):
        http1.parse_response_head(f"HTTP/1.1 200 OK\r\nContent-Length: {i}".encode())
    assert len(http1._RESPONSE_HEADS) <= http1._CACHE_ENTRIES_MAX
    http1.parse_response_head(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 10_000)
    assert all(len(k) <= http1._CACHE_BLOCK_MAX for k in http1._RESPONSE_HEADS)


async def test_a_header_block_is_routed_again_by_a_router_with_another_base_domain(
    nursery: trio.Nursery, router: RouterUnderTest
) -> None:
    # Routing decisions are memoised on the shared field block; a second router in the same
    # process (another base domain) must not reuse the first one's decision.
    other_config = make_config(router.resolver, base_domain="elsewhere.test")
    other_port = await nursery.start(
        lambda task_status: serve(other_config, task_status=task_status)
    )
    request = f"GET /x HTTP/1.1\r\nHost: {APP}\r\nConnection: close\r\n\r\n".encode()
    for _ in range(2):
        assert (await raw_exchange(router.port, request)).startswith(b"HTTP/1.1 200")
        # Under elsewhere.test the same Host is foreign: 404, never proxied.
        assert (await raw_exchange(other_port, request)).startswith(b"HTTP/1.1 404")
    assert [r["target"] for r in router.upstream.requests] == ["/x", "/x"]


async def test_forwarding_headers_follow_each_request_on_a_keep_alive_connection(
    router: RouterUnderTest,
) -> None:
    # The rewritten header block is reused while a connection repeats its block; a request
    # with another block (here another Connection option and header) is rewritten afresh.
    requests = [
        f"GET /1 HTTP/1.1\r\nHost: {APP}\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
        f"GET /2 HTTP/1.1\r\nHost: {APP}\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
        f"GET /3 HTTP/1.1\r\nHost: {APP}\r\nConnection: X-Secret\r\nX-Secret: 1\r\n\r\n",
        f"GET /4 HTTP/1.1\r\nHost: {APP}\r\nX-Kept: yes\r\nConnection: close\r\n\r\n",
    ]
    out = await raw_exchange(router.port, "".join(requests).encode())
    assert [status for status, _ in _responses(out)] == [200, 200, 200, 200]
    seen = router.upstream.requests
    assert [r["target"] for r in seen] == ["/1", "/2", "/3", "/4"]
    for r in seen:
        headers = dict(r["headers"])
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert headers["x-forwarded-host"] == APP
        assert "x-secret" not in headers
    assert dict(seen[3]["headers"])["x-kept"] == "yes"
