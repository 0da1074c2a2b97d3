"""``web_search`` behind one provider interface: DuckDuckGo's HTML page by default (no key, as
upstream), or an API when configured: Brave Search, Tavily, or a SearXNG instance.

Providers only fetch their own configured endpoints (never a URL from the model), so they use
an ordinary HTTP client. Domain filters are applied to every provider's results here; where
the provider understands them they are also sent along.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

import attrs

from .errors import SearchFailed

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx

DDG_ENDPOINT = "https://html.duckduckgo.com/html/"
BRAVE_ENDPOINT = "https://api.search.brave.com/res/v1/web/search"
TAVILY_ENDPOINT = "https://api.tavily.com/search"
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")


@attrs.frozen
class SearchResult:
    """One hit."""

    title: str
    url: str
    snippet: str = ""
    page_age: str | None = None


@attrs.frozen
class SearchQuery:
    """A query with its domain filters (hostnames, lower case)."""

    text: str
    allowed: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    count: int = 8

    def with_sites(self) -> str:
        """The query text with ``site:`` terms for the allowed domains."""
        if not self.allowed:
            return self.text
        return f"{self.text} ({' OR '.join(f'site:{d}' for d in self.allowed)})"


class SearchProvider(Protocol):
    """A search backend."""

    @property
    def name(self) -> str:
        """Shown in results and errors."""
        ...

    async def search(self, client: httpx.AsyncClient, query: SearchQuery) -> list[SearchResult]:
        """Results for ``query`` (unfiltered, at most about ``query.count``).

        Raises:
            SearchFailed: the provider answered with an error or a challenge page.
        """
        ...


def normalise_domains(value: Any, name: str) -> tuple[str, ...]:
    """Hostnames from the model's ``allowed_domains``/``blocked_domains``.

    Raises:
        ValueError: not a list of hostnames.
    """
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of domain names")
    out = []
    for raw in value:
        host = raw.strip().lower()
        host = (urlsplit(host).hostname or "") if "://" in host else host.split("/")[0]
        host = host.removeprefix("*.").removeprefix("www.").rstrip(".")
        if not _DOMAIN.match(host):
            raise ValueError(f"{name}: {raw!r} is not a domain name")
        out.append(host)
    return tuple(dict.fromkeys(out))


def _matches(host: str, domains: Sequence[str]) -> bool:
    host = host.lower().removeprefix("www.")
    return any(host == d or host.endswith("." + d) for d in domains)


def filter_results(results: list[SearchResult], query: SearchQuery) -> list[SearchResult]:
    """http(s) results only, domain filters applied, duplicates (same URL without fragment)
    dropped, at most ``query.count``."""
    seen: set[str] = set()
    out = []
    for result in results:
        parts = urlsplit(result.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            continue
        if query.allowed and not _matches(parts.hostname, query.allowed):
            continue
        if query.blocked and _matches(parts.hostname, query.blocked):
            continue
        key = result.url.split("#")[0].rstrip("/")
        if key in seen:
            continue
        seen.add(key)
        out.append(result)
    return out[: query.count]


def _json(response: httpx.Response, provider: str) -> Any:
    if response.status_code >= 400:
        raise SearchFailed(provider, f"HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise SearchFailed(provider, "the answer is not JSON") from exc


@attrs.frozen
class DuckDuckGoHtml:
    """DuckDuckGo's no-JavaScript result page (no key needed)."""

    endpoint: str = DDG_ENDPOINT
    name: str = "duckduckgo"

    async def search(self, client: httpx.AsyncClient, query: SearchQuery) -> list[SearchResult]:
        response = await client.post(self.endpoint, data={"q": query.with_sites(), "kl": ""})
        if response.status_code >= 400:
            raise SearchFailed(self.name, f"HTTP {response.status_code}")
        results = parse_duckduckgo(response.text)
        if not results and ("anomaly" in response.text or response.status_code == 202):
            raise SearchFailed(self.name, "the search engine asked for a challenge; try later")
        return results


def _ddg_href(href: str) -> str:
    parts = urlsplit(href if "://" in href else "https:" + href if href.startswith("//") else href)
    if parts.path.startswith("/l/"):
        target = parse_qs(parts.query).get("uddg", [""])[0]
        return target or href
    return href


def parse_duckduckgo(html: str) -> list[SearchResult]:
    """The organic results of a DuckDuckGo HTML result page (ads left out)."""
    import lxml.html

    try:
        root = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return []
    out = []
    for node in root.xpath("//div[contains(concat(' ', @class, ' '), ' result ')]"):
        if "result--ad" in (node.get("class") or ""):
            continue
        links = node.xpath(".//a[contains(@class, 'result__a')]")
        if not links:
            continue
        snippet = node.xpath(".//*[contains(@class, 'result__snippet')]")
        out.append(SearchResult(
            " ".join(links[0].text_content().split()), _ddg_href(links[0].get("href", "")),
            " ".join(snippet[0].text_content().split()) if snippet else "",
        ))  # fmt: skip
    return out


@attrs.frozen
class BraveApi:
    """Brave Search API (``BRAVE_SEARCH_API_KEY``)."""

    api_key: str = attrs.field(repr=False)
    endpoint: str = BRAVE_ENDPOINT
    name: str = "brave"

    async def search(self, client: httpx.AsyncClient, query: SearchQuery) -> list[SearchResult]:
        response = await client.get(
            self.endpoint, params={"q": query.with_sites(), "count": min(20, query.count * 2)},
            headers={"X-Subscription-Token": self.api_key, "Accept": "application/json"},
        )  # fmt: skip
        data = _json(response, self.name)
        hits = (data.get("web") or {}).get("results") or [] if isinstance(data, dict) else []
        return [SearchResult(str(h.get("title", "")), str(h.get("url", "")),
                             str(h.get("description", "")), h.get("page_age") or h.get("age"))
                for h in hits if isinstance(h, dict)]  # fmt: skip


@attrs.frozen
class TavilyApi:
    """Tavily search API (``TAVILY_API_KEY``)."""

    api_key: str = attrs.field(repr=False)
    endpoint: str = TAVILY_ENDPOINT
    name: str = "tavily"

    async def search(self, client: httpx.AsyncClient, query: SearchQuery) -> list[SearchResult]:
        body: dict[str, Any] = {"query": query.text, "max_results": query.count}
        if query.allowed:
            body["include_domains"] = list(query.allowed)
        if query.blocked:
            body["exclude_domains"] = list(query.blocked)
        response = await client.post(
            self.endpoint, json=body, headers={"Authorization": f"Bearer {self.api_key}"}
        )
        data = _json(response, self.name)
        hits = data.get("results") or [] if isinstance(data, dict) else []
        return [SearchResult(str(h.get("title", "")), str(h.get("url", "")),
                             str(h.get("content", "")), h.get("published_date"))
                for h in hits if isinstance(h, dict)]  # fmt: skip


@attrs.frozen
class SearxngApi:
    """A SearXNG instance's JSON API (``AMICABLE_WEB_SEARCH_SEARXNG_URL``; its settings must
    enable the ``json`` format)."""

    base_url: str
    name: str = "searxng"

    async def search(self, client: httpx.AsyncClient, query: SearchQuery) -> list[SearchResult]:
        response = await client.get(
            self.base_url.rstrip("/") + "/search",
            params={"q": query.with_sites(), "format": "json"},
        )
        data = _json(response, self.name)
        hits = data.get("results") or [] if isinstance(data, dict) else []
        return [SearchResult(str(h.get("title", "")), str(h.get("url", "")),
                             str(h.get("content", "")), h.get("publishedDate"))
                for h in hits if isinstance(h, dict)]  # fmt: skip
