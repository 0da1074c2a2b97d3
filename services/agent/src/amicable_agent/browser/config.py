"""Settings of the preview browser (``AMICABLE_SCREENSHOT*``, ``AMICABLE_CHROMIUM_*``).

=========================================  =============================================
variable                                   default
=========================================  =============================================
AMICABLE_SCREENSHOTS                       true (off by itself when no Chromium is found)
AMICABLE_CHROMIUM_PATH                     first of chromium, chromium-browser,
                                           google-chrome on PATH
AMICABLE_CHROMIUM_SANDBOX                  false: Chromium's own sandbox needs user
                                           namespaces, which containers usually refuse
AMICABLE_SCREENSHOT_ROUTER_URL             unset: preview URLs resolve as usual
                                           (``amicable up`` sets its router's address)
AMICABLE_SCREENSHOT_MAX_PAGES              2 (captures at once; more wait)
AMICABLE_SCREENSHOT_MAX_BYTES              1000000 (JPEG; quality, then scale, is lowered)
AMICABLE_SCREENSHOT_SETTLE_S               0.25
AMICABLE_SCREENSHOT_LAUNCH_TIMEOUT_S       20
=========================================  =============================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from amicable_settings import SettingsError, boolean, integer, seconds, string

if TYPE_CHECKING:
    from collections.abc import Mapping


@attrs.frozen
class BrowserConfig:
    """How the agent runs its headless Chromium.

    Attributes:
        enabled: ``AMICABLE_SCREENSHOTS``: offer screenshots at all.
        chromium_path: ``AMICABLE_CHROMIUM_PATH``, or None to search ``PATH``.
        sandbox: ``AMICABLE_CHROMIUM_SANDBOX``: keep Chromium's own sandbox (without it
            ``--no-sandbox`` is passed; the host-resolver rules and the NetworkPolicy still
            bound what a page can reach).
        router_url: ``AMICABLE_SCREENSHOT_ROUTER_URL``: the preview router's internal
            address (``http://host:port``); preview hosts are mapped onto it.
        max_pages: ``AMICABLE_SCREENSHOT_MAX_PAGES``: pages (captures) at once.
        max_bytes: ``AMICABLE_SCREENSHOT_MAX_BYTES``: largest JPEG handed to the model.
        settle_s: ``AMICABLE_SCREENSHOT_SETTLE_S``: pause after load before capturing.
        launch_timeout_s: ``AMICABLE_SCREENSHOT_LAUNCH_TIMEOUT_S``.
    """

    enabled: bool = True
    chromium_path: str | None = None
    sandbox: bool = False
    router_url: str | None = None
    max_pages: int = 2
    max_bytes: int = 1_000_000
    settle_s: float = 0.25
    launch_timeout_s: float = 20.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BrowserConfig:
        """Read the settings (see the module docstring).

        Raises:
            amicable_settings.SettingsError: a malformed value.
        """
        router = string(env, "AMICABLE_SCREENSHOT_ROUTER_URL", None)
        if router is not None and not router.startswith(("http://", "https://")):
            raise SettingsError(
                "AMICABLE_SCREENSHOT_ROUTER_URL must be http://host:port",
                name="AMICABLE_SCREENSHOT_ROUTER_URL",
            )
        return cls(
            enabled=boolean(env, "AMICABLE_SCREENSHOTS", True),
            chromium_path=string(env, "AMICABLE_CHROMIUM_PATH", None),
            sandbox=boolean(env, "AMICABLE_CHROMIUM_SANDBOX", False),
            router_url=router.rstrip("/") if router else None,
            max_pages=integer(env, "AMICABLE_SCREENSHOT_MAX_PAGES", 2, minimum=1, maximum=16),
            max_bytes=integer(
                env, "AMICABLE_SCREENSHOT_MAX_BYTES", 1_000_000, minimum=50_000, maximum=5_000_000
            ),
            settle_s=seconds(env, "AMICABLE_SCREENSHOT_SETTLE_S", 0.25, maximum=10),
            launch_timeout_s=seconds(
                env, "AMICABLE_SCREENSHOT_LAUNCH_TIMEOUT_S", 20.0, positive=True
            ),
        )
