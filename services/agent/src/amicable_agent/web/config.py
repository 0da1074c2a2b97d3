"""Settings of the web tools (``AMICABLE_WEB_*``); both tools are off unless enabled.

===========================================  ===============================================
variable                                     default
===========================================  ===============================================
AMICABLE_WEB_TOOLS_ENABLED                   false (turns on both tools)
AMICABLE_WEB_FETCH / AMICABLE_WEB_SEARCH     AMICABLE_WEB_TOOLS_ENABLED (each tool alone)
AMICABLE_WEB_FETCH_TIMEOUT_S                 20 (the whole fetch, redirects included)
AMICABLE_WEB_FETCH_MAX_RESPONSE_BYTES        5000000 (more is cut, decoded size)
AMICABLE_WEB_FETCH_MAX_CONTENT_CHARS         25000 (text handed to the model)
AMICABLE_WEB_FETCH_MAX_REDIRECTS             5
AMICABLE_WEB_SEARCH_PROVIDER                 auto: searxng if its URL is set, else brave,
                                             else tavily if a key is set, else duckduckgo
AMICABLE_WEB_SEARCH_SEARXNG_URL              unset (e.g. http://searxng:8080)
BRAVE_SEARCH_API_KEY (``_FILE``)             unset
TAVILY_API_KEY (``_FILE``)                   unset
AMICABLE_WEB_SEARCH_TIMEOUT_S                10
AMICABLE_WEB_SEARCH_MAX_RESULTS              8
AMICABLE_WEB_SEARCH_USER_AGENT               a browser-like agent naming Amicable
===========================================  ===============================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs
from amicable_settings import boolean, choice, integer, seconds, secret, string

if TYPE_CHECKING:
    from collections.abc import Mapping

ProviderName = Literal["auto", "duckduckgo", "brave", "tavily", "searxng"]
DEFAULT_USER_AGENT = "Mozilla/5.0 (compatible; AmicableAgent/0.1)"


@attrs.frozen
class WebConfig:
    """What the web tools may do (see the module docstring for the variables)."""

    fetch_enabled: bool = False
    search_enabled: bool = False
    fetch_timeout_s: float = 20.0
    fetch_max_bytes: int = 5_000_000
    fetch_max_chars: int = 25_000
    max_redirects: int = 5
    search_provider: ProviderName = "auto"
    searxng_url: str | None = None
    brave_api_key: str | None = attrs.field(default=None, repr=False)
    tavily_api_key: str | None = attrs.field(default=None, repr=False)
    search_timeout_s: float = 10.0
    search_max_results: int = 8
    user_agent: str = DEFAULT_USER_AGENT

    @property
    def provider(self) -> ProviderName:
        """The provider in use (``auto`` resolved)."""
        if self.search_provider != "auto":
            return self.search_provider
        if self.searxng_url:
            return "searxng"
        if self.brave_api_key:
            return "brave"
        if self.tavily_api_key:
            return "tavily"
        return "duckduckgo"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebConfig:
        """Read the settings.

        Raises:
            amicable_settings.SettingsError: a malformed value.
        """
        both = boolean(env, "AMICABLE_WEB_TOOLS_ENABLED", False)
        return cls(
            fetch_enabled=boolean(env, "AMICABLE_WEB_FETCH", both),
            search_enabled=boolean(env, "AMICABLE_WEB_SEARCH", both),
            fetch_timeout_s=seconds(env, "AMICABLE_WEB_FETCH_TIMEOUT_S", 20.0, positive=True),
            fetch_max_bytes=integer(
                env, "AMICABLE_WEB_FETCH_MAX_RESPONSE_BYTES", 5_000_000, minimum=1024
            ),
            fetch_max_chars=integer(
                env, "AMICABLE_WEB_FETCH_MAX_CONTENT_CHARS", 25_000, minimum=500
            ),
            max_redirects=integer(
                env, "AMICABLE_WEB_FETCH_MAX_REDIRECTS", 5, minimum=0, maximum=20
            ),
            search_provider=choice(
                env,
                "AMICABLE_WEB_SEARCH_PROVIDER",
                "auto",
                ("auto", "duckduckgo", "brave", "tavily", "searxng"),
            ),
            searxng_url=string(env, "AMICABLE_WEB_SEARCH_SEARXNG_URL", None),
            brave_api_key=secret(env, "BRAVE_SEARCH_API_KEY"),
            tavily_api_key=secret(env, "TAVILY_API_KEY"),
            search_timeout_s=seconds(env, "AMICABLE_WEB_SEARCH_TIMEOUT_S", 10.0, positive=True),
            search_max_results=integer(
                env, "AMICABLE_WEB_SEARCH_MAX_RESULTS", 8, minimum=1, maximum=20
            ),
            user_agent=string(env, "AMICABLE_WEB_SEARCH_USER_AGENT", DEFAULT_USER_AGENT),
        )
