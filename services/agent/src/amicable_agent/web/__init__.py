"""The model's web tools: ``web_fetch`` (public pages only, guarded against SSRF) and
``web_search`` (DuckDuckGo HTML by default, or Brave, Tavily, SearXNG). Off unless enabled."""

from .config import WebConfig
from .errors import FetchFailed, FetchRefused, SearchFailed, WebError
from .fetch import Fetched, fetch
from .guard import Pinned, Resolver, SystemResolver, is_public, pin
from .search import SearchProvider, SearchQuery, SearchResult
from .tools import WEB_FETCH, WEB_PROMPT, WEB_SEARCH, WEB_TOOL_DEFINITIONS, WebResult, WebTools

__all__ = [
    "WEB_FETCH",
    "WEB_PROMPT",
    "WEB_SEARCH",
    "WEB_TOOL_DEFINITIONS",
    "FetchFailed",
    "FetchRefused",
    "Fetched",
    "Pinned",
    "Resolver",
    "SearchFailed",
    "SearchProvider",
    "SearchQuery",
    "SearchResult",
    "SystemResolver",
    "WebConfig",
    "WebError",
    "WebResult",
    "WebTools",
    "fetch",
    "is_public",
    "pin",
]
