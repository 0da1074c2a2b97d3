"""web_fetch and web_search against loopback servers the tests start.

The fetch guard is exercised through its seam: a resolver that answers what each test needs
(the metadata address, a ULA, a mix) and, only here, one allowed network, 127.0.0.2/32, where
the "public" site listens. 127.0.0.1 stays refused: a second server there counts every
request that would have leaked. Cost: ~2 s (one 1 s timeout; trafilatura's first import).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
import trio
from amicable_agent.loop.models import ModelSpec
from amicable_agent.loop.toolbox import Toolbox
from amicable_agent.web import (
    FetchFailed,
    FetchRefused,
    WebConfig,
    WebTools,
    fetch,
    is_public,
)
from amicable_agent.web.guard import IPAddress
from amicable_agent.web.search import DuckDuckGoHtml, SearxngApi, parse_duckduckgo
from amicable_protocol.messages import UserData
from amicable_testing.model_script import Fault, Reply, Text, ToolUse
from amicable_testing.preview_stack import StubSite

ALLOW = (ipaddress.IPv4Network("127.0.0.2/32"),)
CONFIG = WebConfig(fetch_enabled=True, search_enabled=True, fetch_timeout_s=5)
ARTICLE = b"""<!doctype html><html><head><title>Trio nurseries</title></head><body>
<nav><a href="/">Home</a> | <a href="/docs">Docs</a> | <a href="/blog">Blog</a></nav>
<article><h1>Structured concurrency</h1>
<p>A nursery is a block that owns the tasks started in it: when the block ends, every task
has ended. This is what makes cancellation and error handling predictable in Trio.</p>
<p>Start tasks with nursery.start_soon, or with nursery.start when you need to wait until the
task says it is ready. Exceptions propagate out of the block.</p></article>
<footer>Copyright footer text that is boilerplate</footer></body></html>"""


class Resolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        await trio.lowlevel.checkpoint()
        self.asked.append(host)
        if host not in self.answers:
            raise OSError("no such host")
        return [ipaddress.ip_address(a) for a in self.answers[host]]


@pytest.fixture
async def servers(nursery: trio.Nursery) -> tuple[StubSite, StubSite]:
    inner = StubSite({"/secret": (200, "text/plain", b"internal secret")})
    await nursery.start(inner.serve)
    site = StubSite(host="127.0.0.2", hang={"/hang"})
    await nursery.start(site.serve)
    site.pages.update({
        "/article": (200, "text/html; charset=utf-8", ARTICLE),
        "/big": (200, "text/plain", b"x" * 50_000),
        "/image": (200, "image/png", b"\x89PNG...."),
        "/gone": (404, "text/html", b"<html><title>nope</title><body>Not here</body></html>"),
    })  # fmt: skip
    site.redirects.update({
        "/to-loopback": f"http://127.0.0.1:{inner.port}/secret",
        "/to-metadata": f"http://metadata.test:{inner.port}/latest/meta-data/",
        "/to-article": "/article",
    })  # fmt: skip
    return site, inner


def resolver_for(site: StubSite) -> Resolver:
    return Resolver({
        "site.test": ["127.0.0.2"],
        "metadata.test": ["169.254.169.254"],
        "ula.test": ["fd00::1"],
        "mixed.test": ["127.0.0.2", "10.0.0.7"],
    })  # fmt: skip


async def test_a_page_becomes_readable_text(servers: Any) -> None:
    site, _inner = servers
    tools = WebTools(CONFIG, resolver=resolver_for(site), allow=ALLOW)
    result = await tools.run("web_fetch", {"url": f"http://site.test:{site.port}/to-article",
                                           "prompt": "how do tasks start?"})  # fmt: skip
    assert not result.is_error, result.content
    assert f"Final URL: http://site.test:{site.port}/article" in result.content
    assert "Title: Trio nurseries" in result.content
    assert "Looking for: how do tasks start?" in result.content
    assert "wait until the task says it is ready" in result.content
    assert "boilerplate" not in result.content  # trafilatura kept the article, not the footer
    gone = await tools.run("web_fetch", {"url": f"http://site.test:{site.port}/gone"})
    assert gone.is_error
    assert "Status: 404" in gone.content


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/to-loopback", "127.0.0.1"), ("/to-metadata", "169.254.169.254")],
)
async def test_redirects_into_private_ranges_are_refused(
    servers: Any, path: str, reason: str
) -> None:
    site, inner = servers
    with pytest.raises(FetchRefused, match=reason):
        await fetch(f"http://site.test:{site.port}{path}", CONFIG, resolver=resolver_for(site),
                    allow=ALLOW)  # fmt: skip
    assert path in site.requests
    assert inner.requests == []  # nothing reached the internal server


@pytest.mark.parametrize(
    "url",
    ["http://ula.test/", "http://mixed.test/", "http://127.0.0.1:{inner}/secret",
     "http://[::1]:{inner}/", "http://[::ffff:127.0.0.1]:{inner}/secret", "http://0.0.0.0:{inner}/",
     "http://100.64.0.1/", "http://nosuch.test/", "file:///etc/passwd", "ftp://site.test/",
     "http://user:pw@site.test/", "gopher://x/", "not a url"],
)  # fmt: skip
async def test_private_targets_and_odd_urls_are_refused(servers: Any, url: str) -> None:
    site, inner = servers
    with pytest.raises(FetchRefused):
        await fetch(url.format(inner=inner.port), CONFIG, resolver=resolver_for(site), allow=ALLOW)
    assert inner.requests == []


async def test_size_and_time_are_capped(servers: Any) -> None:
    site, _inner = servers
    config = WebConfig(fetch_enabled=True, fetch_max_bytes=10_000, fetch_max_chars=600,
                       fetch_timeout_s=1)  # fmt: skip
    tools = WebTools(config, resolver=resolver_for(site), allow=ALLOW)
    big = await tools.run("web_fetch", {"url": f"http://site.test:{site.port}/big"})
    assert "(the response was cut at 10000 bytes)" in big.content
    assert "9400 more characters not shown" in big.content
    with pytest.raises(FetchFailed, match="no answer within 1 s"):
        await fetch(f"http://site.test:{site.port}/hang", config, resolver=resolver_for(site),
                    allow=ALLOW)  # fmt: skip
    image = await tools.run("web_fetch", {"url": f"http://site.test:{site.port}/image"})
    assert image.is_error
    assert "image/png" in image.content


def test_public_means_globally_routable() -> None:
    refused = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
               "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fd00::1", "fe80::1", "::",
               "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:a00:1::1", "2001::1"]  # fmt: skip
    for raw in refused:
        assert not is_public(ipaddress.ip_address(raw)), raw
    for raw in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert is_public(ipaddress.ip_address(raw)), raw


DDG_PAGE = """<html><body>
<div class="result results_links result--ad"><a class="result__a" href="https://ads.example/x">Ad</a></div>
<div class="result results_links"><h2><a class="result__a"
  href="//duckduckgo.com/l/?uddg=https%3A%2F%2Ftrio.readthedocs.io%2Fen%2Fstable%2F&rut=x">Trio
  docs</a></h2><a class="result__snippet">Trio: a friendly library</a></div>
<div class="result results_links"><a class="result__a" href="https://github.com/python-trio/trio">
  trio on GitHub</a><div class="result__snippet">Source</div></div>
<div class="result results_links"><a class="result__a"
  href="https://trio.readthedocs.io/en/stable/#frag">Trio docs again</a></div>
</body></html>"""


async def test_search_providers_and_filters(nursery: trio.Nursery) -> None:
    results = [{"title": f"r{i}", "url": u, "content": "c"} for i, u in enumerate([
        "https://docs.example.com/a", "https://www.example.com/b", "https://evil.example.org/c",
        "https://docs.example.com/a#x", "javascript:alert(1)", "https://other.net/d"])]  # fmt: skip
    site = StubSite({
        "/search": (200, "application/json", json.dumps({"results": results}).encode()),
        "/html/": (200, "text/html", DDG_PAGE.encode()),
    })  # fmt: skip
    await nursery.start(site.serve)
    searx = WebTools(WebConfig(search_enabled=True, searxng_url=f"http://127.0.0.1:{site.port}"))
    answer = await searx.run("web_search", {"query": "trio", "allowed_domains": ["example.com"],
                                            "blocked_domains": ["https://evil.example.org/"]})  # fmt: skip
    payload = json.loads(answer.content)
    assert payload["provider"] == "searxng"
    assert [r["url"] for r in payload["results"]] == [
        "https://docs.example.com/a", "https://www.example.com/b"]  # fmt: skip
    assert "site%3Aexample.com" in site.requests[0]
    bad = await searx.run("web_search", {"query": "x", "allowed_domains": ["not a domain!"]})
    assert bad.is_error
    ddg = WebTools(WebConfig(search_enabled=True),
                   provider=DuckDuckGoHtml(endpoint=f"http://127.0.0.1:{site.port}/html/"))  # fmt: skip
    payload = json.loads((await ddg.run("web_search", {"query": "trio"})).content)
    assert [r["url"] for r in payload["results"]] == [
        "https://trio.readthedocs.io/en/stable/", "https://github.com/python-trio/trio"]  # fmt: skip
    assert payload["results"][0]["snippet"] == "Trio: a friendly library"
    assert parse_duckduckgo("<html>challenge</html>") == []
    assert SearxngApi("http://x").name == "searxng"


async def test_web_tools_in_a_turn_show_in_the_trace(
    fake_llm: Any, make_engine: Any, host: Any, servers: Any
) -> None:
    site, _inner = servers
    fake, url = fake_llm
    fake.add(Reply([ToolUse("web_fetch", {"url": f"http://site.test:{site.port}/article"}),
                    ToolUse("web_fetch", {"url": f"http://site.test:{site.port}/to-loopback"})]),
             Reply([Text("Read it.")]))  # fmt: skip
    engine = make_engine(url)
    settings = engine.settings
    engine.toolbox = Toolbox(settings, web=WebTools(CONFIG, resolver=resolver_for(site),
                                                    allow=ALLOW))  # fmt: skip
    await engine.run_user_turn(host, UserData(session_id="sess-1", text="read"))
    tools = {t["name"] for t in fake.view(0)["tools"]}
    assert {"web_fetch", "web_search"} <= tools
    ok, refused = fake.view(1)["messages"][-1]["content"]
    assert "wait until the task says it is ready" in ok["content"]
    assert refused["is_error"]
    assert "127.0.0.1" in refused["content"]
    names = [(t.phase, t.tool_name) for t in host.traces("tool_start")]
    assert names == [("tool_start", "web_fetch")] * 2
    assert [t.tool_name for t in host.traces("tool_error")] == ["web_fetch"]


def small_engine(make_engine: Any, fake: Any, url: str, site: StubSite) -> Any:
    small = ModelSpec(id="small", provider=fake.provider, model="small-model", base_url=url,
                      api_key="sk-ant-test-key-123456")  # fmt: skip
    engine = make_engine(url, models=(small,), small_model_id="small")
    engine.toolbox = Toolbox(engine.settings, web=WebTools(CONFIG, resolver=resolver_for(site),
                             allow=ALLOW), small=engine.small)  # fmt: skip
    return engine


async def test_a_fetch_prompt_is_answered_by_the_small_model(
    fake_llm: Any, make_engine: Any, host: Any, servers: Any
) -> None:
    site, _inner = servers
    fake, url = fake_llm
    question = "How do I wait until a started task is ready?"
    fake.add(Reply([ToolUse("web_fetch", {"url": f"http://site.test:{site.port}/article",
                                          "prompt": question})]),
             Reply([Text("Use nursery.start: it waits until the task says it is ready.")],
                   input_tokens=800, output_tokens=20),
             Reply([Text("Use nursery.start.")]))  # fmt: skip
    engine = small_engine(make_engine, fake, url, site)
    await engine.run_user_turn(host, UserData(session_id="sess-1", text="read"), by="user-1")
    asked = fake.view(1)
    assert fake.requests[1].body["model"] == "small-model"
    assert question in str(asked["messages"])
    assert "Structured concurrency" in str(asked["messages"])  # the page's text
    [result] = fake.view(2)["messages"][-1]["content"]
    text = result["content"] if isinstance(result, dict) else str(result)
    assert "Use nursery.start: it waits until the task says it is ready." in text
    assert "by small" in text
    assert "Copyright footer" not in text  # not the page itself
    # The small model's call counts in the turn.
    assert [r.model_id for r in host.store.usage].count("small") == 1
    assert host.of("usage")[0].data.input_tokens >= 800


async def test_without_an_answer_the_model_reads_the_page(
    fake_llm: Any, make_engine: Any, host: Any, servers: Any
) -> None:
    site, _inner = servers
    fake, url = fake_llm
    fake.add(Reply([ToolUse("web_fetch", {"url": f"http://site.test:{site.port}/article",
                                          "prompt": "what is a nursery?"})]),
             Fault(401, message="invalid x-api-key"),
             Reply([Text("Read it.")]))  # fmt: skip
    engine = small_engine(make_engine, fake, url, site)
    await engine.run_user_turn(host, UserData(session_id="sess-1", text="read"))
    [result] = fake.view(2)["messages"][-1]["content"]
    text = result["content"] if isinstance(result, dict) else str(result)
    assert "wait until the task says it is ready" in text
    assert "Looking for: what is a nursery?" in text
    assert not host.of("error")
