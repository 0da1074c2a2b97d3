"""Strict head parsing and body framing (the anti-smuggling rules), without sockets."""

from __future__ import annotations

import pytest
from amicable_preview_router.errors import BadRequest, UpstreamProtocolError
from amicable_preview_router.http1 import (
    CHUNKED,
    UNTIL_CLOSE,
    ChunkedScanner,
    build_client_response,
    build_upstream_request,
    connection_tokens,
    parse_request_head,
    parse_response_head,
    request_body_length,
    response_body_length,
)


def _req(head: bytes):  # type: ignore[no-untyped-def]
    return parse_request_head(head)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded", 400),
        (b"GET / HTTP/1.1\r\nHost : a", 400),
        (b"GET / HTTP/1.1\r\nHo\x00st: a", 400),
        (b"GET / HTTP/1.1\r\nX: a\rb", 400),
        (b"GET / HTTP/1.1\r\nX: a\nY: b", 400),
        (b"GET http://evil/ HTTP/1.1\r\nHost: a", 400),
        (b"CONNECT evil:443 HTTP/1.1\r\nHost: a", 400),
        (b"OPTIONS * HTTP/1.1\r\nHost: a", 400),
        (b"GET  / HTTP/1.1\r\nHost: a", 400),
        (b"GET / HTTP/2.0\r\nHost: a", 505),
        (b"GET / HTTP/1.1 x\r\nHost: a", 400),
        (b'G"T / HTTP/1.1\r\nHost: a', 400),
    ],
)
def test_malformed_request_heads_are_rejected(head: bytes, status: int) -> None:
    with pytest.raises(BadRequest) as info:
        parse_request_head(head)
    assert info.value.status == status


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked", 400),
        (b"Content-Length: 5\r\nContent-Length: 5", 400),
        (b"Content-Length: 5, 5", 400),
        (b"Content-Length: -1", 400),
        (b"Content-Length: +5", 400),
        (b"Transfer-Encoding: gzip, chunked", 501),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 501),
        (b"Transfer-Encoding: xchunked", 501),
    ],
)
def test_ambiguous_request_framing_is_rejected(headers: bytes, status: int) -> None:
    head = _req(b"POST / HTTP/1.1\r\nHost: a\r\n" + headers)
    with pytest.raises(BadRequest) as info:
        request_body_length(head)
    assert info.value.status == status


def test_request_framing() -> None:
    assert request_body_length(_req(b"GET / HTTP/1.1\r\nHost: a")) == 0
    assert request_body_length(_req(b"POST / HTTP/1.1\r\nContent-Length: 12")) == 12
    assert request_body_length(_req(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked")) == CHUNKED


def test_response_framing() -> None:
    def framing(head: bytes, method: bytes = b"GET") -> int:
        return response_body_length(method, parse_response_head(head))

    assert framing(b"HTTP/1.1 200 OK\r\nContent-Length: 3") == 3
    assert framing(b"HTTP/1.1 200 OK\r\nContent-Length: 3", b"HEAD") == 0
    assert framing(b"HTTP/1.1 204 No Content") == 0
    assert framing(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10") == 0
    assert framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3") == CHUNKED
    assert framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip") == UNTIL_CLOSE
    assert framing(b"HTTP/1.1 200 OK") == UNTIL_CLOSE
    assert framing(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3") == 3
    with pytest.raises(UpstreamProtocolError):
        framing(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4")
    with pytest.raises(UpstreamProtocolError):
        parse_response_head(b"HTTP/1.1 2000 OK")


def test_chunked_scanner_finds_the_end_across_splits() -> None:
    body = b"5;ext=1\r\nhello\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nTrailer: v\r\n\r\nNEXT"
    for split in range(1, len(body)):
        scanner = ChunkedScanner()
        err = ValueError("bad")
        a, done = scanner.scan(body[:split], err)
        assert not done or a <= split
        rest = body[a:]
        b, done2 = scanner.scan(rest, err) if not done else (0, True)
        assert done or done2
        assert a + b == len(body) - len(b"NEXT")


@pytest.mark.parametrize(
    "body", [b"zz\r\n", b"5\r\nhelloXX", b"-1\r\n", b"0\r\nbad trailer\r\n\r\n"]
)
def test_chunked_scanner_rejects_garbage(body: bytes) -> None:
    with pytest.raises(ValueError, match="bad"):
        ChunkedScanner().scan(body, ValueError("bad"))


def test_upstream_request_rewrites_hop_by_hop_and_forwarded_headers() -> None:
    head = _req(
        b"GET /x?y HTTP/1.1\r\nHost: app.preview.localhost\r\nConnection: keep-alive, X-Secret\r\n"
        b"X-Secret: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
        b"Forwarded: for=6.6.6.6\r\nX-Forwarded-Host: evil\r\nProxy-Authorization: x\r\nAccept: */*"
    )
    out = build_upstream_request(
        head,
        connection_tokens(head),
        client_ip=b"10.0.0.1",
        proto=b"http",
        trusted=False,
        websocket=False,
    )
    assert out == (
        b"GET /x?y HTTP/1.1\r\nHost: app.preview.localhost\r\nAccept: */*\r\n"
        b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: app.preview.localhost\r\n"
        b"X-Forwarded-Proto: http\r\n\r\n"
    )
    trusted = build_upstream_request(
        head,
        connection_tokens(head),
        client_ip=b"10.0.0.1",
        proto=b"http",
        trusted=True,
        websocket=False,
    )
    assert b"X-Forwarded-For: 6.6.6.6, 10.0.0.1\r\n" in trusted
    assert b"X-Forwarded-Proto: https\r\n" in trusted
    assert b"evil" not in trusted


def test_client_response_drops_hop_by_hop_headers() -> None:
    head = parse_response_head(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nX-Internal: 1\r\n"
        b"Keep-Alive: timeout=5\r\nContent-Length: 0"
    )
    assert build_client_response(head, close=True) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
