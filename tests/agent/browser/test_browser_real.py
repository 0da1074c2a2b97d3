"""The preview browser with a real Chromium, through the real preview router, in front of a
scripted loopback site: what it shows, devices, crash recovery, timeouts, what it refuses.

Cost: each test that captures starts its own Chromium (~1.5 s on 2 cores); ~20 s in all.
"""

from __future__ import annotations

import io
import os
import signal
from typing import TYPE_CHECKING, Any

import pytest
import trio
from amicable_agent.browser import (
    BrowserConfig,
    CaptureFailed,
    PreviewPathRefused,
    open_preview_browser,
)
from amicable_agent.browser.process import find_chromium
from amicable_agent.loop.visual import run_screenshot_tool
from amicable_testing.preview_stack import StubSite, open_preview_stack
from PIL import Image

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from amicable_agent.browser import PreviewBrowser

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (make apt-deps)"),
]

GREEN = (0, 200, 0)
PAGE = b"""<!doctype html><html><head><title>stub</title></head>
<body style="margin:0;background:#fff">
<div style="position:absolute;left:0;top:0;width:300px;height:200px;background:rgb(0,200,0)"></div>
<div style="height:2400px"></div>
<img src="http://127.0.0.1:%d/secret.png">
<script>console.error("planted console error"); fetch("http://169.254.169.254/latest/meta-data/")
  .catch(() => {});</script>
</body></html>"""


def pixel(jpeg: bytes, x: int, y: int) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(jpeg)) as image:
        value = image.convert("RGB").getpixel((x, y))
    assert isinstance(value, tuple)
    return value[0], value[1], value[2]


def close_to(color: tuple[int, int, int], expected: tuple[int, int, int], slack: int = 24) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(color, expected, strict=True))


@pytest.fixture
async def site(nursery: trio.Nursery) -> StubSite:
    stub = StubSite(hang={"/hang"})
    port = await nursery.start(stub.serve)
    stub.pages["/"] = (200, "text/html", PAGE % port)
    stub.pages["/hang"] = (200, "text/html", PAGE % port)
    return stub


@pytest.fixture
async def browser(site: StubSite) -> AsyncIterator[PreviewBrowser]:
    async with (
        open_preview_stack({"demo": f"http://127.0.0.1:{site.port}"}) as stack,
        open_preview_browser(BrowserConfig(max_pages=2), stack.address()) as found,
    ):
        assert found is not None
        yield found


async def test_a_capture_shows_the_page_through_the_router(
    browser: PreviewBrowser, site: StubSite
) -> None:
    desktop = await browser.capture("demo", "/", full_page=False)
    assert (desktop.width, desktop.height) == (1280, 800)
    assert close_to(pixel(desktop.jpeg, 50, 50), GREEN)
    assert close_to(pixel(desktop.jpeg, 600, 400), (255, 255, 255))
    assert desktop.status == 200
    assert desktop.console_errors == ("planted console error",)
    full = await browser.capture("demo", "/", device="mobile", full_page=True)
    assert (full.width, full.page_height) == (390, full.height)
    assert full.height > 2400  # the whole page, not the 844 px viewport
    viewport = await browser.capture("demo", "/?x=1#top", device="tablet", full_page=False)
    assert (viewport.width, viewport.height) == (768, 1024)
    # The page's requests to other hosts never left the browser: not the stub's own port by
    # its IP literal, not the metadata address.
    assert "/secret.png" not in site.requests
    assert desktop.failed_requests >= 1
    stats = browser.statistics()
    assert (stats.launches, stats.captures, stats.pages_open) == (1, 3, 1)  # one warm page


async def test_captures_at_once_share_a_bounded_pool(browser: PreviewBrowser) -> None:
    shots: list[Any] = []

    async def one() -> None:
        shots.append(await browser.capture("demo", "/", full_page=False))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(one)
    assert len(shots) == 4
    stats = browser.statistics()
    assert stats.pages_open == 2  # AMICABLE_SCREENSHOT_MAX_PAGES
    assert stats.launches == 1


async def test_a_browser_killed_mid_capture_recovers(
    browser: PreviewBrowser, site: StubSite
) -> None:
    await browser.capture("demo", "/", full_page=False)
    first_pid = browser.statistics().pid
    assert first_pid is not None
    async with trio.open_nursery() as nursery:
        result: list[Any] = []

        async def capture() -> None:
            result.append(await browser.capture("demo", "/hang", full_page=False, timeout_s=30))

        nursery.start_soon(capture)
        with trio.fail_after(10):
            await site.wait_for("/hang")
        os.killpg(first_pid, signal.SIGKILL)  # the browser and its renderers
        with trio.fail_after(10):
            while browser.statistics().launches < 2:
                await site.seen.wait()
        site.release.set()
    assert close_to(pixel(result[0].jpeg, 50, 50), GREEN)
    stats = browser.statistics()
    assert stats.launches == 2
    assert stats.crashes == 1
    assert stats.pid not in (None, first_pid)


async def test_a_page_that_never_loads_ends_at_the_timeout(browser: PreviewBrowser) -> None:
    start = trio.current_time()
    with pytest.raises(CaptureFailed, match=r"did not finish loading within 1\.5 s"):
        await browser.capture("demo", "/hang", timeout_s=1.5)
    assert trio.current_time() - start < 5
    # The page was closed; the browser still serves the next capture.
    shot = await browser.capture("demo", "/", full_page=False)
    assert close_to(pixel(shot.jpeg, 50, 50), GREEN)


@pytest.mark.parametrize(
    "path", ["http://127.0.0.1:1/", "//evil.com/", "/../../etc/passwd", "javascript:alert(1)",
             "file:///etc/passwd", "/%2e%2e/x"],
)  # fmt: skip
async def test_hostile_paths_are_refused_before_loading(
    browser: PreviewBrowser, site: StubSite, path: str
) -> None:
    with pytest.raises(PreviewPathRefused):
        await browser.capture("demo", path)
    outcome = await run_screenshot_tool(browser.camera("demo"), {"path": path})
    assert outcome.is_error
    assert not outcome.blocks
    assert "Pass a path such as / or /about" in outcome.content
    assert site.requests == []
    assert browser.statistics().launches == 0  # nothing was even started


async def test_the_tool_returns_text_and_an_image(browser: PreviewBrowser) -> None:
    outcome = await run_screenshot_tool(browser.camera("demo"),
                                        {"path": "/", "device": "mobile", "full_page": False})  # fmt: skip
    assert not outcome.is_error
    assert outcome.content.startswith("Preview screenshot of http://demo.preview.localhost:")
    assert "mobile, 390x844 JPEG" in outcome.content
    assert "planted console error" in outcome.content
    (image,) = outcome.blocks
    assert image["source"]["media_type"] == "image/jpeg"
    failed = await run_screenshot_tool(browser.camera("nosuch"), {"timeout_s": 5})
    assert not failed.is_error  # the router's 404 page is a page: the model sees it
    assert "HTTP 404" in failed.content
