"""The model sees the page it builds: ``capture_preview_screenshot``, a screenshot attached to
auto-heal turns (``AMICABLE_AUTOHEAL_SCREENSHOT``) and, optionally, a look at the result after
QA passed (``AMICABLE_QA_SCREENSHOT``).

Every screenshot goes to the model as a text line starting with :data:`SCREENSHOT_MARK` and an
image block right after it; :func:`shed_old_screenshots` keeps the conversation from carrying
more than a few of them (each is up to a megabyte of base64, sent again with every request).
"""

from __future__ import annotations

import base64
import logging
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from amicable_agent.browser import DEVICES, BrowserError, PreviewPathRefused

from .api import preview_of
from .state import send_status
from .tools import ToolInputError, ToolOutcome

if TYPE_CHECKING:
    from amicable_agent.browser import PreviewCamera, Shot

    from .api import SessionHost
    from .settings import LoopSettings
    from .state import TurnState

log = logging.getLogger(__name__)

SCREENSHOT_TOOL = "capture_preview_screenshot"
SCREENSHOT_MARK = "Preview screenshot of "
SHED_TEXT = "[preview screenshot omitted from the history]"
#: Screenshots kept in the conversation (the newest ones).
KEEP_SCREENSHOTS = 2
TIMEOUT_MIN_S, TIMEOUT_MAX_S = 3.0, 60.0
#: Upstream's auto-heal capture: the viewport of the failing page, 12 s at most.
AUTOHEAL_TIMEOUT_S = 12.0

SCREENSHOT_DEFINITION: dict[str, Any] = {
    "description": (
        "Take a screenshot of the running preview (the app as the person sees it) and look at "
        "it. Use it to check layout and styling after changes, and for visual bugs. path is a "
        "path inside the preview (e.g. / or /settings?tab=2), never a URL. Console errors seen "
        "while loading are reported with the image."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "path": {"type": "string", "default": "/", "description": "Path inside the preview"},
            "full_page": {"type": "boolean", "default": True,
                          "description": "The whole scrollable page, not only the viewport"},
            "device": {"type": "string", "enum": list(DEVICES), "default": "desktop",
                       "description": "desktop 1280x800, tablet 768x1024, mobile 390x844"},
            "timeout_s": {"type": "number", "default": 15,
                          "description": "Seconds to wait for the page to load"},
        },
        "required": [],
    },
}  # fmt: skip

SCREENSHOT_PROMPT = (
    "You can see the preview: capture_preview_screenshot shows you the page as the person sees "
    "it (desktop, tablet or mobile). Look at it after visual changes and when something looks "
    "wrong; do not poll it in a loop."
)


def screenshot_request(args: dict[str, Any]) -> tuple[str, bool, str, float]:
    """``(path, full_page, device, timeout_s)`` from the model's arguments.

    Raises:
        ToolInputError: a mistyped argument or an unknown device.
    """
    path = args.get("path", "/")
    full_page = args.get("full_page", True)
    device = args.get("device", "desktop")
    timeout = args.get("timeout_s", 15)
    if path is None:
        path = "/"
    if not isinstance(path, str):
        raise ToolInputError("parameter 'path' must be a string")
    if not isinstance(full_page, bool):
        raise ToolInputError("parameter 'full_page' must be true or false")
    if device not in DEVICES:
        raise ToolInputError(f"parameter 'device' must be one of {', '.join(DEVICES)}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout):
        raise ToolInputError("parameter 'timeout_s' must be a number")
    return path, full_page, str(device), min(TIMEOUT_MAX_S, max(TIMEOUT_MIN_S, float(timeout)))


def describe(shot: Shot) -> str:
    """The text line that goes with a screenshot."""
    size = f"{len(shot.jpeg) / 1000:.0f} kB"
    parts = [f"{SCREENSHOT_MARK}{shot.url} ({shot.device}, {shot.width}x{shot.height} JPEG, {size}"]
    if shot.page_height > shot.height and shot.width >= 1:
        parts[0] += f"; the page is {shot.page_height} px tall"
    parts[0] += ")."
    if shot.status is not None:
        parts.append(f"HTTP {shot.status}.")
    if shot.console_errors:
        errors = "; ".join(shot.console_errors)
        parts.append(f"Console errors while loading ({len(shot.console_errors)}): {errors}")
    else:
        parts.append("No console errors while loading.")
    if shot.failed_requests:
        parts.append(
            f"{shot.failed_requests} request(s) failed (the agent's browser reaches only the "
            "preview itself, not other hosts)."
        )
    return " ".join(parts)


def image_block(shot: Shot) -> dict[str, Any]:
    """An Anthropic ``image`` content block of the screenshot."""
    data = base64.b64encode(shot.jpeg).decode("ascii")
    return {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": data}}


async def run_screenshot_tool(camera: PreviewCamera, args: dict[str, Any]) -> ToolOutcome:
    """Run ``capture_preview_screenshot``: text + image, or an error text for the model."""
    try:
        path, full_page, device, timeout_s = screenshot_request(args)
    except ToolInputError as exc:
        return ToolOutcome(f"Error: invalid input for {SCREENSHOT_TOOL}: {exc}", is_error=True)
    try:
        shot = await camera.capture(path, device=device, full_page=full_page, timeout_s=timeout_s)
    except PreviewPathRefused as exc:
        return ToolOutcome(f"Error: {exc}. Pass a path such as / or /about.", is_error=True)
    except BrowserError as exc:
        return ToolOutcome(f"Error: no screenshot: {exc}", is_error=True)
    return ToolOutcome(describe(shot), blocks=(image_block(shot),))


def _page_path(url: str | None) -> str:
    if not url:
        return "/"
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return path + (f"#{parts.fragment}" if parts.fragment else "")


async def autoheal_screenshot(
    host: SessionHost, settings: LoopSettings, page_url: str | None
) -> tuple[str, str] | None:
    """``(text, base64 JPEG)`` of the viewport of the failing page for an auto-heal turn, or
    None when the setting is off, there is no browser, or the capture fails (the turn then
    goes ahead with the error text alone)."""
    camera = preview_of(host)
    if not settings.autoheal_screenshot or camera is None:
        return None
    for path in dict.fromkeys((_page_path(page_url), "/")):
        try:
            shot = await camera.capture(path, full_page=False, timeout_s=AUTOHEAL_TIMEOUT_S)
        except PreviewPathRefused:
            continue
        except BrowserError as exc:
            log.info("auto-heal goes without a screenshot: %s", exc)
            return None
        return describe(shot), base64.b64encode(shot.jpeg).decode("ascii")
    return None


async def qa_look(
    host: SessionHost, messages: list[dict[str, Any]], state: TurnState, settings: LoopSettings
) -> bool:
    """After QA passed: show the model its result once per turn (``AMICABLE_QA_SCREENSHOT``).

    Appends a user message with the screenshot and returns True (the model gets another
    round), or returns False when off, already done this turn, or no screenshot was taken.
    """
    camera = preview_of(host)
    if not settings.qa_screenshot or camera is None or state.qa_looks >= 1:
        return False
    state.qa_looks += 1
    await send_status(host, state, "Looking at the preview...")
    try:
        shot = await camera.capture("/", full_page=True, timeout_s=AUTOHEAL_TIMEOUT_S)
    except BrowserError as exc:
        log.info("no QA screenshot: %s", exc)
        return False
    text = (
        f"QA passed. {describe(shot)}\nCheck that the page shows what was asked and looks "
        "right. If something is off, fix it; otherwise answer with one short sentence."
    )
    messages.append(
        {"role": "user", "content": [{"type": "text", "text": text}, image_block(shot)]}
    )
    shed_old_screenshots(messages)
    return True


def _shed_in(blocks: list[Any], found: list[tuple[list[Any], int]]) -> None:
    for index, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
            _shed_in(block["content"], found)
        elif block.get("type") == "image" and index > 0:
            before = blocks[index - 1]
            if isinstance(before, dict) and SCREENSHOT_MARK in str(before.get("text", "")):
                found.append((blocks, index))


def shed_old_screenshots(messages: list[dict[str, Any]], keep: int = KEEP_SCREENSHOTS) -> int:
    """Replace all but the newest ``keep`` screenshot images with a short text, in place.

    Only images right after a text that carries :data:`SCREENSHOT_MARK` count: images the
    person attached stay. Returns how many were replaced.
    """
    found: list[tuple[list[Any], int]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            _shed_in(content, found)
    old = found[: max(0, len(found) - keep)]
    for blocks, index in old:
        blocks[index] = {"type": "text", "text": SHED_TEXT}
    return len(old)
