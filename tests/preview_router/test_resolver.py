"""The HTTP resolver client and its cache, against a real fake resolver on autojump_clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
import trio
from amicable_preview_router.config import RouterConfig
from amicable_preview_router.errors import ResolverError
from amicable_preview_router.metrics import Metrics
from amicable_preview_router.resolver import (
    HttpResolver,
    TemplateResolver,
    Upstream,
    open_resolver,
    parse_upstream_url,
)
from amicable_preview_router.routing import classify_host
from amicable_protocol.preview import PreviewResolution
from amicable_testing.fake_resolver import FakeResolver

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

BASE = "preview.localhost"
TOKEN = "tok"


def _match(label: str):  # type: ignore[no-untyped-def]
    return classify_host(f"{label}.{BASE}", BASE)


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeResolver:
    resolver = FakeResolver(
        token=TOKEN,
        answers={
            f"app.{BASE}": PreviewResolution("sb-1", "http://127.0.0.1:41234"),
            f"tpl.{BASE}": PreviewResolution("sb-2", None),
            f"evil.{BASE}": PreviewResolution("x.y", None),
            f"path.{BASE}": PreviewResolution("sb-3", "http://127.0.0.1:1/admin"),
            f"boom.{BASE}": 500,
        },
        hang={f"slow.{BASE}"},
    )
    await nursery.start(resolver.serve)
    return resolver


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def resolver(fake: FakeResolver, metrics: Metrics) -> AsyncIterator[HttpResolver]:
    config = RouterConfig(
        resolver_url=fake.url,
        resolver_token=TOKEN,
        upstream_template="http://{sandbox_id}.{namespace}.svc.cluster.local:3000",
        sandbox_namespace="sandboxes",
    )
    async with httpx.AsyncClient() as client:
        yield HttpResolver(config, client, metrics)


async def test_positive_answers_are_cached_for_the_ttl(
    resolver: HttpResolver, fake: FakeResolver, metrics: Metrics, autojump_clock: object
) -> None:
    expected = Upstream("127.0.0.1", 41234, "sb-1")
    assert await resolver.resolve(_match("app")) == expected
    await trio.sleep(59)
    assert await resolver.resolve(_match("app")) == expected
    assert fake.calls == [f"app.{BASE}"]
    assert metrics.resolver_cache_hits == 1
    await trio.sleep(2)
    assert await resolver.resolve(_match("app")) == expected
    assert fake.calls == [f"app.{BASE}"] * 2


async def test_negative_answers_are_cached_briefly(
    resolver: HttpResolver, fake: FakeResolver, autojump_clock: object
) -> None:
    assert await resolver.resolve(_match("nope")) is None
    await trio.sleep(4)
    assert await resolver.resolve(_match("nope")) is None
    assert len(fake.calls) == 1
    fake.answers[f"nope.{BASE}"] = PreviewResolution("sb-9", "http://127.0.0.1:5000")
    await trio.sleep(2)
    assert await resolver.resolve(_match("nope")) == Upstream("127.0.0.1", 5000, "sb-9")


async def test_missing_upstream_uses_the_template(resolver: HttpResolver) -> None:
    assert await resolver.resolve(_match("tpl")) == Upstream(
        "sb-2.sandboxes.svc.cluster.local", 3000, "sb-2"
    )


@pytest.mark.parametrize("label", ["boom", "evil", "path"])
async def test_errors_and_unusable_answers_raise_and_are_not_cached(
    resolver: HttpResolver, fake: FakeResolver, metrics: Metrics, label: str
) -> None:
    for _ in range(2):
        with pytest.raises(ResolverError):
            await resolver.resolve(_match(label))
    assert len(fake.calls) == 2
    assert metrics.resolver_errors == 2


async def test_timeout_raises(resolver: HttpResolver, autojump_clock: object) -> None:
    start = trio.current_time()
    with pytest.raises(ResolverError, match="timed out"):
        await resolver.resolve(_match("slow"))
    assert trio.current_time() - start >= 5


async def test_wrong_token_is_an_error_not_a_guess(fake: FakeResolver, metrics: Metrics) -> None:
    config = RouterConfig(resolver_url=fake.url, resolver_token="wrong")
    async with httpx.AsyncClient() as client:
        with pytest.raises(ResolverError, match="401"):
            await HttpResolver(config, client, metrics).resolve(_match("app"))


async def test_unreachable_resolver_is_an_error(metrics: Metrics) -> None:
    config = RouterConfig(resolver_url="http://127.0.0.1:1/resolve")
    async with httpx.AsyncClient() as client:
        with pytest.raises(ResolverError, match="unreachable"):
            await HttpResolver(config, client, metrics).resolve(_match("app"))


async def test_concurrent_lookups_share_one_request(
    resolver: HttpResolver, fake: FakeResolver
) -> None:
    results: list[Upstream | None] = []

    async def one() -> None:
        results.append(await resolver.resolve(_match("app")))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(one)
    assert len(results) == 10
    assert set(results) == {Upstream("127.0.0.1", 41234, "sb-1")}
    assert fake.calls == [f"app.{BASE}"]


async def test_template_mode_maps_the_label() -> None:
    resolver = TemplateResolver("http://{sandbox_id}.{namespace}.svc:3000", "ns")
    assert await resolver.resolve(_match("abc")) == Upstream("abc.ns.svc", 3000, "abc")


async def test_open_resolver_picks_the_mode(metrics: Metrics) -> None:
    async with open_resolver(RouterConfig(), metrics) as plain:
        assert isinstance(plain, TemplateResolver)
    async with open_resolver(RouterConfig(resolver_url="http://127.0.0.1:1/"), metrics) as http:
        assert isinstance(http, HttpResolver)


@pytest.mark.parametrize(
    "url",
    ["https://x:1", "http://u:p@x:1", "http://x:1/path", "http://x:1?q", "ftp://x", "http://:1"],
)
def test_bad_upstream_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_upstream_url(url, "sb")


def test_upstream_url_parsing() -> None:
    assert parse_upstream_url("http://127.0.0.1:41234", "s") == Upstream("127.0.0.1", 41234, "s")
    assert parse_upstream_url("http://[::1]:3000/", "s") == Upstream("::1", 3000, "s")
    assert parse_upstream_url("http://sb.ns.svc", "s") == Upstream("sb.ns.svc", 80, "s")
