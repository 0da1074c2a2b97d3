"""Errors of the preview browser (a subtree of :class:`amicable_agent.errors.AgentError`).

Exception tree::

    AgentError
    └── BrowserError                 the preview browser could not take a screenshot;
        │                            ``str()`` is a sentence fit for the model
        ├── BrowserUnavailable       Chromium is missing or did not start
        ├── BrowserCrashed           Chromium died (or closed its pipe) during a call
        ├── CdpError                 Chromium answered a DevTools call with an error
        ├── CaptureFailed            the page did not load or could not be captured
        │                            (navigation error, timeout, crashed page)
        └── PreviewPathRefused       the path does not stay inside the preview (also a
                                     ValueError)
"""

from __future__ import annotations

from amicable_agent.errors import AgentError


class BrowserError(AgentError):
    """The preview browser could not do what was asked; the message is fit for the model."""


class BrowserUnavailable(BrowserError):
    """Chromium is not installed, or it did not start within the launch timeout."""


class BrowserCrashed(BrowserError):
    """Chromium exited or closed its DevTools pipe while a call was waiting."""


class CdpError(BrowserError):
    """A DevTools call was answered with an error (``code``, ``message`` from Chromium)."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: {message} ({code})")
        self.method = method
        self.code = code
        self.message = message


class CaptureFailed(BrowserError):
    """The page could not be loaded or captured (navigation error, timeout, page crash)."""


class PreviewPathRefused(BrowserError, ValueError):
    """A screenshot path that leaves the preview: another host, a scheme, ``..`` above root."""
