"""The model's web tools: ``web_fetch(url, prompt?)`` and ``web_search(query,
allowed_domains?, blocked_domains?)``, each offered only when enabled (:class:`WebConfig`).

Results are text for the model; failures are error results, never exceptions.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import trio

from .errors import WebError
from .extract import extract
from .fetch import fetch
from .search import (
    BraveApi,
    DuckDuckGoHtml,
    SearchProvider,
    SearchQuery,
    SearxngApi,
    TavilyApi,
    filter_results,
    normalise_domains,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from .config import WebConfig
    from .guard import IPNetwork, Resolver

log = logging.getLogger(__name__)

WEB_FETCH = "web_fetch"
WEB_SEARCH = "web_search"
_S = {"type": "string"}
_DOMAINS = {"type": "array", "items": _S}

WEB_TOOL_DEFINITIONS: dict[str, dict[str, Any]] = {
    WEB_FETCH: {
        "description": (
            "Fetch a public web page (http/https) and read it as text: documentation, an "
            "API reference, a changelog. prompt says what you are looking for in it. Private "
            "and internal addresses are refused."
        ),
        "input_schema": {"type": "object", "properties": {
            "url": {**_S, "description": "http(s) URL"},
            "prompt": {**_S, "description": "What to look for in the page (optional)"}},
            "required": ["url"]},
    },
    WEB_SEARCH: {
        "description": (
            "Search the web; returns titles, URLs and snippets. Follow up with web_fetch to "
            "read a result."
        ),
        "input_schema": {"type": "object", "properties": {
            "query": _S,
            "allowed_domains": {**_DOMAINS, "description": "Only results from these domains"},
            "blocked_domains": {**_DOMAINS, "description": "No results from these domains"}},
            "required": ["query"]},
    },
}  # fmt: skip

WEB_PROMPT = (
    "You can read the web: web_search finds pages, web_fetch reads one as text. Use them for "
    "current documentation or APIs you are unsure about; do not paste large amounts of it."
)


@attrs.frozen
class WebResult:
    """A web tool's answer for the model."""

    content: str
    is_error: bool = False


def provider_for(config: WebConfig) -> SearchProvider:
    """The configured search provider."""
    provider = config.provider
    if provider == "searxng" and config.searxng_url:
        return SearxngApi(config.searxng_url)
    if provider == "brave" and config.brave_api_key:
        return BraveApi(config.brave_api_key)
    if provider == "tavily" and config.tavily_api_key:
        return TavilyApi(config.tavily_api_key)
    if provider != "duckduckgo":
        log.warning("web search provider %s has no key/URL; using DuckDuckGo", provider)
    return DuckDuckGoHtml()


class WebTools:
    """``web_fetch`` and ``web_search`` as the configuration allows.

    Args:
        config: the web settings.
        resolver / allow: the fetch guard's seam (tests only: see :mod:`.guard`).
        provider: the search provider (default: from ``config``).
    """

    def __init__(
        self,
        config: WebConfig,
        *,
        resolver: Resolver | None = None,
        allow: Sequence[IPNetwork] = (),
        provider: SearchProvider | None = None,
    ) -> None:
        self.config = config
        self._resolver = resolver
        self._allow = tuple(allow)
        self._provider = provider or provider_for(config)

    @property
    def definitions(self) -> dict[str, dict[str, Any]]:
        """The enabled tools' definitions by name."""
        enabled = {WEB_FETCH: self.config.fetch_enabled, WEB_SEARCH: self.config.search_enabled}
        return {n: d for n, d in WEB_TOOL_DEFINITIONS.items() if enabled[n]}

    async def run(
        self,
        name: str,
        args: dict[str, Any],
        *,
        reader: Callable[[str, str], Awaitable[tuple[str, str] | None]] | None = None,
    ) -> WebResult:
        """Run ``name`` (an enabled web tool) with the model's ``args``.

        ``reader(question, text)`` answers a ``web_fetch`` prompt from the page's text (the
        small model), returning ``(answer, who answered)``; on None the model gets the text.
        """
        try:
            if name == WEB_FETCH:
                return await self._fetch(args, reader)
            return await self._search(args)
        except WebError as exc:
            return WebResult(f"Error: {name}: {exc}", is_error=True)
        except ValueError as exc:
            return WebResult(f"Error: invalid input for {name}: {exc}", is_error=True)

    async def _fetch(
        self,
        args: dict[str, Any],
        reader: Callable[[str, str], Awaitable[tuple[str, str] | None]] | None,
    ) -> WebResult:
        url = args.get("url")
        prompt = args.get("prompt")
        if not isinstance(url, str) or not url.strip():
            raise ValueError("parameter 'url' must be a non-empty string")
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError("parameter 'prompt' must be a string")
        fetched = await fetch(url, self.config, resolver=self._resolver, allow=self._allow)
        title, text = await extract(fetched)
        cap = self.config.fetch_max_chars
        head = [f"URL: {fetched.url}"]
        if fetched.final_url != fetched.url:
            head.append(f"Final URL: {fetched.final_url}")
        head.append(f"Status: {fetched.status}")
        if title:
            head.append(f"Title: {title}")
        if prompt:
            head.append(f"Looking for: {prompt[:1000]}")
        if fetched.truncated:
            head.append(f"(the response was cut at {self.config.fetch_max_bytes} bytes)")
        if prompt and text and reader is not None and fetched.status < 400:
            answered = await reader(prompt, text)
            if answered is not None:
                answer, by = answered
                head.append(f"Answered from the page's {len(text):,} characters by {by}; call "
                            "web_fetch without a prompt to read the text itself.")  # fmt: skip
                return WebResult("\n".join(head) + "\n\n" + answer)
        if len(text) > cap:
            text = text[:cap] + f"\n… [{len(text) - cap} more characters not shown]"
        body = text or "(no readable text on this page)"
        return WebResult("\n".join(head) + "\n\n" + body, is_error=fetched.status >= 400)

    async def _search(self, args: dict[str, Any]) -> WebResult:
        text = args.get("query")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("parameter 'query' must be a non-empty string")
        query = SearchQuery(
            " ".join(text.split())[:500],
            normalise_domains(args.get("allowed_domains"), "allowed_domains"),
            normalise_domains(args.get("blocked_domains"), "blocked_domains"),
            self.config.search_max_results,
        )
        headers = {"User-Agent": self.config.user_agent}
        try:
            with trio.fail_after(self.config.search_timeout_s):
                async with httpx.AsyncClient(
                    headers=headers, timeout=self.config.search_timeout_s, follow_redirects=True
                ) as client:
                    found = await self._provider.search(client, query)
        except trio.TooSlowError:
            raise WebError(f"{self._provider.name}: no answer within "
                           f"{self.config.search_timeout_s:g} s") from None  # fmt: skip
        except httpx.HTTPError as exc:
            raise WebError(f"{self._provider.name}: {type(exc).__name__}") from exc
        results = filter_results(found, query)
        payload: dict[str, Any] = {
            "provider": self._provider.name,
            "results": [attrs.asdict(r) for r in results],
        }
        if not results:
            payload["warnings"] = ["no results"]
        return WebResult(json.dumps(payload, ensure_ascii=False, indent=1))
