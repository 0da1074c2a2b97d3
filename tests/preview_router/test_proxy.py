"""HTTP proxying through a real router to real loopback upstreams."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
import trio.testing
from amicable_testing.fake_resolver import HOSTILE_HOSTS

from .conftest import BASE, RouterUnderTest, raw_exchange

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

APP = f"app.{BASE}"


@pytest.fixture
async def client(router: RouterUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{router.port}", headers={"Host": APP}, timeout=10
    ) as c:
        yield c


async def test_get_is_proxied_with_host_preserved_and_hop_by_hop_stripped(
    router: RouterUnderTest, client: httpx.AsyncClient
) -> None:
    response = await client.get(
        "/anything?q=1", headers={"Connection": "keep-alive, X-Drop", "X-Drop": "1"}
    )
    assert response.status_code == 200
    assert response.text == "hello from upstream"
    assert response.headers["x-upstream"] == "yes"
    assert "keep-alive" not in response.headers
    seen = router.upstream.requests[-1]
    assert seen["target"] == "/anything?q=1"
    names = {k.lower(): v for k, v in seen["headers"]}
    assert names["host"] == APP
    assert "x-drop" not in names
    assert "connection" not in names


async def test_forwarded_headers_are_set_by_the_router_not_the_client(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/headers",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "for=6.6.6.6",
        },
    )
    headers = {k.lower(): v for k, v in json.loads(response.text)}
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == APP
    assert "forwarded" not in headers


async def test_upstream_connections_are_reused_across_requests_and_clients(
    router: RouterUnderTest, client: httpx.AsyncClient
) -> None:
    for _ in range(5):
        assert (await client.get("/")).status_code == 200
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{router.port}", headers={"Host": APP}
    ) as other:
        assert (await other.get("/")).status_code == 200
    assert router.upstream.connections == 1
    assert len(router.upstream.requests) == 6


async def test_slow_chunked_response_is_relayed_chunk_by_chunk(
    router: RouterUnderTest, client: httpx.AsyncClient
) -> None:
    # The upstream sends chunk N+1 only after the test received chunk N through the router,
    # so a buffering proxy would deadlock here (and fail on the deadline).
    proceed = router.upstream.proceed_send
    assert proceed is not None
    seen = []
    with trio.fail_after(10):
        async with client.stream("GET", "/slow") as response:
            assert response.headers["transfer-encoding"] == "chunked"
            async for chunk in response.aiter_raw():
                seen.append(chunk)
                await proceed.send(None)
    assert b"".join(seen) == b"chunk0\nchunk1\nchunk2\n"
    assert len(seen) >= 3


async def test_server_sent_events_stream_through(
    router: RouterUnderTest, client: httpx.AsyncClient
) -> None:
    proceed = router.upstream.proceed_send
    assert proceed is not None
    events = []
    with trio.fail_after(10):
        async with client.stream(
            "GET", "/sse", headers={"Accept": "text/event-stream"}
        ) as response:
            assert response.headers["content-type"] == "text/event-stream"
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    events.append(line)
                    await proceed.send(None)
    assert events == ["data: 0", "data: 1", "data: 2"]


async def test_request_and_response_bodies_stream_both_ways_at_once(
    router: RouterUnderTest,
) -> None:
    # A chunked upload whose second part is sent only after the echo of the first came back.
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    async with stream:
        await stream.send_all(
            f"POST /echo HTTP/1.1\r\nHost: {APP}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"5\r\nfirst\r\n"
        )
        received = b""
        with trio.fail_after(10):
            while b"first" not in received:
                received += await stream.receive_some(65536)
            await stream.send_all(b"6\r\nsecond\r\n0\r\n\r\n")
            while not received.endswith(b"0\r\n\r\n"):
                received += await stream.receive_some(65536)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"second" in received


async def test_large_download_and_upload(client: httpx.AsyncClient) -> None:
    size = 8 * 1024 * 1024 + 17
    response = await client.get(f"/big?size={size}")
    assert response.status_code == 200
    assert len(response.content) == size
    payload = bytes(range(256)) * (12 * 1024)
    uploaded = await client.post("/upload", content=payload)
    assert uploaded.text == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield payload

    chunked = await client.post("/upload", content=chunks())
    assert chunked.text == f"{8 * len(payload)} {hashlib.sha256(payload * 8).hexdigest()}"


async def test_until_close_response_closes_the_client_connection(router: RouterUnderTest) -> None:
    out = await raw_exchange(
        router.port, f"GET /until-close HTTP/1.1\r\nHost: {APP}\r\n\r\n".encode()
    )
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in out
    assert out.endswith(b"\r\n\r\nall of it")


async def test_head_request(client: httpx.AsyncClient) -> None:
    response = await client.head("/")
    assert response.status_code == 200
    assert response.content == b""
    assert (await client.get("/")).text == "hello from upstream"  # connection still in sync


async def test_http10_client_gets_an_answer_and_a_close(router: RouterUnderTest) -> None:
    out = await raw_exchange(router.port, f"GET / HTTP/1.0\r\nHost: {APP}\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close\r\n" in out
    assert out.endswith(b"hello from upstream")


async def test_refused_upstream_gives_browsers_a_retrying_page_and_others_plain_502(
    router: RouterUnderTest,
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        page = await c.get("/", headers={"Host": f"down.{BASE}", "Accept": "text/html,*/*"})
        plain = await c.get("/", headers={"Host": f"down.{BASE}", "Accept": "*/*"})
    assert page.status_code == 502
    assert page.headers["content-type"].startswith("text/html")
    assert 'http-equiv="refresh"' in page.text
    assert "starting" in page.text
    assert plain.status_code == 502
    assert plain.headers["content-type"].startswith("text/plain")
    for response in (page, plain):
        assert "127.0.0.1" not in response.text
        assert str(router.ws_port) not in response.text
    assert router.metrics.upstream_errors >= 2


async def test_unknown_preview_is_404_and_resolver_failure_is_503(router: RouterUnderTest) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        unknown = await c.get("/", headers={"Host": f"nope.{BASE}"})
        broken = await c.get("/", headers={"Host": f"broken.{BASE}"})
    assert unknown.status_code == 404
    assert broken.status_code == 503
    assert router.upstream.requests == []


async def test_healthz_and_metrics_answer_on_non_preview_hosts(
    router: RouterUnderTest, client: httpx.AsyncClient
) -> None:
    await client.get("/")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        health = await c.get("/healthz")
        metrics = await c.get("/metrics")
        preview_health = await c.get("/healthz", headers={"Host": APP})
    assert health.status_code == 200
    assert health.text == "ok\n"
    assert metrics.status_code == 200
    assert 'amicable_preview_responses_total{code="2xx"}' in metrics.text
    assert "amicable_preview_websockets_open 0" in metrics.text
    assert "amicable_preview_resolver_cache_hits_total" in metrics.text
    assert "amicable_preview_upstream_errors_total" in metrics.text
    # On a preview host /healthz belongs to the app.
    assert preview_health.text == "hello from upstream"


@pytest.mark.parametrize("host", HOSTILE_HOSTS, ids=repr)
async def test_hostile_hosts_never_reach_an_upstream(router: RouterUnderTest, host: bytes) -> None:
    out = await raw_exchange(
        router.port, b"GET /secret HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    )
    status = int(out.split(b" ", 2)[1])
    assert status in (400, 404)
    assert router.upstream.requests == []
    assert router.resolver.calls == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        f"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: {APP}\r\n\r\n".encode(),
        f"GET / HTTP/1.1\r\nHost: {APP}\r\nHost: evil.com\r\n\r\n".encode(),
        b"GET / HTTP/1.1\r\n\r\n",
        f"GET / HTTP/1.1\r\nHost: {APP}\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".encode(),
    ],
)
async def test_smuggling_shapes_are_refused(router: RouterUnderTest, request_bytes: bytes) -> None:
    out = await raw_exchange(router.port, request_bytes)
    assert out.split(b" ", 2)[1] in (b"400", b"404")
    assert router.upstream.requests == []


async def test_pipelined_requests_are_answered_in_order(router: RouterUnderTest) -> None:
    one = f"GET /a HTTP/1.1\r\nHost: {APP}\r\n\r\n".encode()
    last = f"GET /b HTTP/1.1\r\nHost: {APP}\r\nConnection: close\r\n\r\n".encode()
    out = await raw_exchange(router.port, one + one + last)
    assert out.count(b"hello from upstream") == 3
    assert [r["target"] for r in router.upstream.requests] == ["/a", "/a", "/b"]


async def test_a_pooled_connection_closed_by_the_upstream_is_retried_transparently(
    router: RouterUnderTest, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/")).status_code == 200
    await router.upstream.close_all()  # e.g. Node's 5 s keep-alive timeout fired
    await trio.testing.wait_all_tasks_blocked()
    response = await client.get("/again")
    assert response.status_code == 200
    assert response.text == "hello from upstream"
    assert router.upstream.connections == 2


async def test_client_going_away_mid_response_closes_the_upstream_connection(
    router: RouterUnderTest,
) -> None:
    proceed = router.upstream.proceed_send
    assert proceed is not None
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    await stream.send_all(f"GET /slow HTTP/1.1\r\nHost: {APP}\r\n\r\n".encode())
    received = b""
    with trio.fail_after(10):
        while b"chunk0" not in received:
            received += await stream.receive_some(65536)
    await stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    # The router dropped its upstream connection instead of pooling a half-read response.
    await proceed.send(None)
    with trio.fail_after(10):
        while router.upstream.closed < 1:
            await trio.testing.wait_all_tasks_blocked()
            await proceed.send(None)
    assert router.metrics.connections_open == 0
