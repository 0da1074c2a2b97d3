"""Host classification is pure: no event loop, no sockets."""

from __future__ import annotations

import pytest
from amicable_preview_router.routing import (
    HostKind,
    classify_host,
    is_valid_label,
    normalise_base_domain,
)
from amicable_preview_router.testing import HOSTILE_HOSTS

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
