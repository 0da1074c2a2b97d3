"""Host classification and the routing decision are pure: no event loop, no sockets."""

from __future__ import annotations

import pytest
from amicable_preview_router.errors import BadRequest
from amicable_preview_router.http1 import CHUNKED, parse_request_head
from amicable_preview_router.routing import (
    HostKind,
    classify_host,
    is_valid_label,
    normalise_base_domain,
    route_request,
)
from amicable_testing.fake_resolver import HOSTILE_HOSTS

BASE = "preview.localhost"


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        (b"app.preview.localhost", "app"),
        (b"APP.Preview.LocalHost", "app"),
        (b"app.preview.localhost:8080", "app"),
        (b"a.preview.localhost", "a"),
        (b"0.preview.localhost", "0"),
        (b"my-app-42.preview.localhost", "my-app-42"),
        (b"a" * 63 + b".preview.localhost", "a" * 63),
        ("str-host.preview.localhost", "str-host"),
    ],
)
def test_valid_preview_hosts_yield_their_label(raw: bytes | str, label: str) -> None:
    match = classify_host(raw, BASE)
    assert match.kind is HostKind.PREVIEW
    assert match.label == label
    assert match.host == f"{label}.{BASE}"


def test_at_least_thirty_hostile_hosts_are_covered() -> None:
    assert len(set(HOSTILE_HOSTS)) >= 30


@pytest.mark.parametrize("raw", HOSTILE_HOSTS, ids=repr)
def test_hostile_hosts_are_never_preview_hosts(raw: bytes) -> None:
    assert classify_host(raw, BASE).kind is not HostKind.PREVIEW


@pytest.mark.parametrize(
    "raw", [b"a.b.preview.localhost", b"-x.preview.localhost", b"user@app.preview.localhost", b""]
)
def test_malformed_hosts_under_the_base_domain_are_invalid(raw: bytes) -> None:
    assert classify_host(raw, BASE).kind is HostKind.INVALID


@pytest.mark.parametrize(
    "raw", [b"127.0.0.1:8080", b"localhost", b"router.internal", b"preview.localhost"]
)
def test_other_hosts_are_foreign(raw: bytes) -> None:
    assert classify_host(raw, BASE).kind is HostKind.FOREIGN


def test_missing_host_is_invalid() -> None:
    assert classify_host(None, BASE).kind is HostKind.INVALID


def test_labels() -> None:
    assert is_valid_label("abc-1")
    assert not is_valid_label("Abc")
    assert not is_valid_label("a" * 64)
    assert not is_valid_label("a-")


def test_base_domain_is_normalised_and_checked() -> None:
    assert normalise_base_domain("Preview.Example.COM.") == "preview.example.com"
    for bad in ("", "exa mple.com", "*.example.com", "-x.example.com"):
        with pytest.raises(ValueError):
            normalise_base_domain(bad)


def _head(block: str, version: str = "HTTP/1.1", method: str = "GET") -> bytes:
    return f"{method} /x {version}\r\n{block}".encode()


def test_a_keep_alive_get_for_a_preview_is_plain() -> None:
    route = route_request(parse_request_head(_head("Host: app.preview.localhost:8080")), BASE)
    assert route.match.kind is HostKind.PREVIEW
    assert route.match.label == "app"
    assert route.body_length == 0
    assert route.keep_alive
    assert route.plain


@pytest.mark.parametrize(
    ("block", "version", "keep_alive", "body_length"),
    [
        ("Host: app.preview.localhost\r\nConnection: close", "HTTP/1.1", False, 0),
        ("Host: app.preview.localhost", "HTTP/1.0", False, 0),
        ("Host: app.preview.localhost\r\nContent-Length: 3", "HTTP/1.1", True, 3),
        ("Host: app.preview.localhost\r\nTransfer-Encoding: chunked", "HTTP/1.1", True, CHUNKED),
        (
            "Host: app.preview.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket",
            "HTTP/1.1",
            True,
            0,
        ),
        ("Host: localhost:8080", "HTTP/1.1", True, 0),
    ],
)
def test_requests_the_lane_must_leave_to_the_task_are_not_plain(
    block: str, version: str, keep_alive: bool, body_length: int
) -> None:
    route = route_request(parse_request_head(_head(block, version)), BASE)
    assert route.keep_alive is keep_alive
    assert route.body_length == body_length
    assert not route.plain


def test_the_decision_is_reused_for_the_same_block_version_and_base_domain() -> None:
    block = "Host: memo.preview.localhost\r\nAccept: */*"
    first = route_request(parse_request_head(_head(block)), BASE)
    assert route_request(parse_request_head(_head(block, method="HEAD")), BASE) is first
    # The same block under another version or base domain is decided afresh.
    old = route_request(parse_request_head(_head(block, "HTTP/1.0")), BASE)
    assert old.version == b"HTTP/1.0"
    assert not old.keep_alive
    elsewhere = route_request(parse_request_head(_head(block)), "elsewhere.test")
    assert elsewhere.match.kind is HostKind.FOREIGN
    again = route_request(parse_request_head(_head(block)), BASE)
    assert again.match.kind is HostKind.PREVIEW


@pytest.mark.parametrize(
    ("block", "status"),
    [
        ("Accept: */*", 400),
        ("Host: a.preview.localhost\r\nHost: b.preview.localhost", 400),
        ("Host: a.preview.localhost\r\nContent-Length: 1\r\nContent-Length: 2", 400),
        ("Host: a.preview.localhost\r\nTransfer-Encoding: gzip", 501),
    ],
)
def test_a_block_that_cannot_be_routed_is_refused_every_time(block: str, status: int) -> None:
    for _ in range(2):
        with pytest.raises(BadRequest) as caught:
            route_request(parse_request_head(_head(block)), BASE)
        assert caught.value.status == status
