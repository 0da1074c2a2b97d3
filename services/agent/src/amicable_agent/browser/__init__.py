"""The agent's headless Chromium: screenshots of previews, loaded through the preview router
as a person's browser loads them (see :mod:`.urls` for what the browser may reach)."""

from .browser import BrowserStatistics, PreviewBrowser, PreviewCamera, open_preview_browser
from .capture import DEVICES, Device, Shot
from .config import BrowserConfig
from .errors import (
    BrowserCrashed,
    BrowserError,
    BrowserUnavailable,
    CaptureFailed,
    CdpError,
    PreviewPathRefused,
)
from .urls import PreviewAddress, jail_path

__all__ = [
    "DEVICES",
    "BrowserConfig",
    "BrowserCrashed",
    "BrowserError",
    "BrowserStatistics",
    "BrowserUnavailable",
    "CaptureFailed",
    "CdpError",
    "Device",
    "PreviewAddress",
    "PreviewBrowser",
    "PreviewCamera",
    "PreviewPathRefused",
    "Shot",
    "jail_path",
    "open_preview_browser",
]
