"""Errors of the web tools (a subtree of :class:`amicable_agent.errors.AgentError`).

Exception tree::

    AgentError
    └── WebError                     a web tool could not do what was asked; ``str()`` is a
        │                            sentence fit for the model
        ├── FetchRefused             the URL is not allowed: not http(s), credentials in it,
        │                            or its host resolves to a private, loopback, link-local
        │                            or metadata address (before or after a redirect)
        ├── FetchFailed              the fetch failed: DNS, connection, TLS, timeout, too many
        │                            redirects, a type that is not text
        └── SearchFailed             the search provider failed or refused (``provider``)
"""

from __future__ import annotations

from amicable_agent.errors import AgentError


class WebError(AgentError):
    """A web tool failed; the message is fit for the model."""


class FetchRefused(WebError):
    """The URL (or a redirect target) points where the agent must not go."""


class FetchFailed(WebError):
    """The page could not be fetched or read."""


class SearchFailed(WebError):
    """The search provider failed; ``provider`` names it."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
