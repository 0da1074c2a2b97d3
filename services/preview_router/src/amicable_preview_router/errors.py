"""Errors of the preview router.

Exception tree::

    RouterError
    ├── ConfigError              the environment does not describe a usable router
    │                            (also an ``amicable_settings.SettingsError``, a ValueError)
    ├── BadRequest               the client sent something we will not parse (``status``
    │                            is 400, 431, 501 or 505)
    ├── UpstreamProtocolError    the upstream answered with something that is not HTTP/1.1
    └── ResolverError            the resolver could not answer (timeout, 5xx, bad body):
                                 the router answers 503 and never guesses

``forwarding.py``'s private ``_NoResponse`` never leaves its module;
``tests/preview_router/test_errors_tree.py`` checks this drawing against every exception
class of the package.
"""

from __future__ import annotations

from amicable_settings import SettingsError


class RouterError(Exception):
    """Root of every error the preview router raises on purpose."""


class ConfigError(RouterError, SettingsError):
    """The configuration is invalid (message names the variable; a ``ValueError``)."""


class BadRequest(RouterError):
    """The client's request head is malformed or over a limit."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class UpstreamProtocolError(RouterError):
    """The upstream's response head or body framing is malformed."""


class ResolverError(RouterError):
    """The resolver failed; the request is answered with 503."""
