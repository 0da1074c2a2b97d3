"""One screenshot on one page: emulate the device, load the URL, freeze animations, settle,
capture a JPEG that fits the size cap, and note what went wrong while loading.

The caller owns the deadline (``trio.fail_after``); :func:`shoot` reports which step the
deadline cut through :attr:`Progress.loaded`.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio

from .errors import CaptureFailed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .cdp import CdpConnection, Event

T = TypeVar("T")

#: JPEG quality and scale tried in order until the image fits the byte cap.
QUALITY_LADDER = ((70, 1.0), (50, 1.0), (35, 1.0), (35, 0.75), (35, 0.5), (30, 0.35))
#: Console errors kept per capture, and characters kept of each.
CONSOLE_MAX = 10
CONSOLE_CHARS = 300
MOBILE_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
#: Finite animations jump to their end, endless ones to their start; transitions are off and
#: the caret does not blink. Then wait for web fonts and two frames.
FREEZE_SCRIPT = """(async () => {
  const style = document.createElement('style');
  style.textContent = '*,*::before,*::after{transition:none!important;' +
    'animation-play-state:paused!important;caret-color:transparent!important}';
  (document.head || document.documentElement).appendChild(style);
  for (const a of document.getAnimations()) {
    try {
      const end = a.effect && a.effect.getComputedTiming().endTime;
      if (end !== Infinity) { a.finish(); } else { a.cancel(); }
    } catch (e) {}
  }
  try { await document.fonts.ready; } catch (e) {}
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
})()"""


@attrs.frozen
class Device:
    """A viewport the model can ask for."""

    name: str
    width: int
    height: int
    mobile: bool = False


DEVICES: dict[str, Device] = {
    "desktop": Device("desktop", 1280, 800),
    "tablet": Device("tablet", 768, 1024, mobile=True),
    "mobile": Device("mobile", 390, 844, mobile=True),
}


@attrs.frozen
class ShotRequest:
    """What to capture and within which limits."""

    url: str
    device: Device = DEVICES["desktop"]
    full_page: bool = True
    max_bytes: int = 1_000_000
    settle_s: float = 0.25
    max_height: int = 4000
    desktop_user_agent: str = ""


@attrs.frozen
class Shot:
    """A captured screenshot and what was seen while loading the page.

    Attributes:
        jpeg: the image.
        width / height: its size in pixels.
        page_height: the page's full height in CSS pixels (more than ``height`` when cut).
        url: the URL requested; ``status`` the HTTP status of the document (None if unknown).
        console_errors: console errors and uncaught exceptions, first few, shortened.
        failed_requests: sub-resources that failed (e.g. other hosts, unreachable by design).
        quality: the JPEG quality used.
    """

    jpeg: bytes
    width: int
    height: int
    page_height: int
    url: str
    device: str
    status: int | None = None
    console_errors: tuple[str, ...] = ()
    failed_requests: int = 0
    quality: int = 70


@attrs.define
class Progress:
    """What a capture saw so far (kept by the caller to explain a timeout).

    Loads and document statuses are keyed by loader id: a late event of the page's previous
    document (the ``about:blank`` it rested on) cannot pass for the new one.
    """

    main_frame: str = ""
    loader_id: str | None = None
    crashed: bool = False
    loaded: set[str] = attrs.field(factory=set)
    statuses: dict[str, int] = attrs.field(factory=dict)
    console_errors: list[str] = attrs.field(factory=list)
    failed_requests: int = 0
    changed: trio.Event = attrs.field(factory=trio.Event)

    @property
    def status(self) -> int | None:
        """HTTP status of the document being loaded, when its response was seen."""
        return self.statuses.get(self.loader_id or "")

    @property
    def done_loading(self) -> bool:
        return self.crashed or (self.loader_id is not None and self.loader_id in self.loaded)

    async def wait_loaded(self) -> None:
        """Wait for the ``load`` of :attr:`loader_id` (or a crash of the page)."""
        while not self.done_loading:
            await self.changed.wait()

    def note(self, method: str, params: dict[str, Any]) -> None:
        """Take one page event into account."""
        if method == "Page.lifecycleEvent" and params.get("name") == "load":
            if params.get("frameId") == self.main_frame:
                self.loaded.add(str(params.get("loaderId", "")))
        elif method == "Inspector.targetCrashed":
            self.crashed = True
        elif method == "Network.responseReceived":
            if params.get("type") == "Document" and params.get("frameId") == self.main_frame:
                status = int(params.get("response", {}).get("status", 0))
                self.statuses[str(params.get("loaderId", ""))] = status
        elif method == "Network.loadingFailed":
            if not params.get("canceled"):
                self.failed_requests += 1
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self._error(" ".join(_arg_text(a) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception") or {}
            self._error(str(exc.get("description") or details.get("text") or "exception"))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error" and entry.get("source") != "network":
                self._error(str(entry.get("text", "")))
        self.changed.set()
        self.changed = trio.Event()

    def _error(self, text: str) -> None:
        text = " ".join(text.split())
        if not text or is_noise(text) or len(self.console_errors) >= CONSOLE_MAX:
            return
        if len(text) > CONSOLE_CHARS:
            text = text[: CONSOLE_CHARS - 1] + "…"
        if text not in self.console_errors:
            self.console_errors.append(text)


def is_noise(text: str) -> bool:
    """Messages caused by the agent's browser itself, not by the app: Vite's hot-reload
    socket cannot reach the public port from inside the cluster."""
    lowered = text.lower()
    return ("[vite]" in lowered and "websocket" in lowered) or lowered.startswith(
        "websocket connection to"
    )


def _arg_text(arg: dict[str, Any]) -> str:
    if "value" in arg:
        return str(arg["value"])
    return str(arg.get("description") or arg.get("type", ""))


async def prepare_page(cdp: CdpConnection, session_id: str) -> None:
    """Enable the domains a capture listens to (once per page)."""
    for method in ("Page.enable", "Runtime.enable", "Network.enable", "Log.enable"):
        await cdp.call(method, session_id=session_id)
    await cdp.call("Page.setLifecycleEventsEnabled", {"enabled": True}, session_id=session_id)
    await cdp.call("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-reduced-motion", "value": "reduce"}]},
        session_id=session_id)  # fmt: skip


async def _emulate(cdp: CdpConnection, session_id: str, request: ShotRequest) -> None:
    device = request.device
    await cdp.call("Emulation.setDeviceMetricsOverride", {
        "width": device.width, "height": device.height, "deviceScaleFactor": 1,
        "mobile": device.mobile}, session_id=session_id)  # fmt: skip
    touch: dict[str, Any] = {"enabled": device.mobile}
    if device.mobile:
        touch["maxTouchPoints"] = 5
    await cdp.call("Emulation.setTouchEmulationEnabled", touch, session_id=session_id)
    agent = MOBILE_UA if device.mobile else request.desktop_user_agent
    if agent:
        await cdp.call("Emulation.setUserAgentOverride", {"userAgent": agent},
                       session_id=session_id)  # fmt: skip


async def shoot(
    cdp: CdpConnection,
    session_id: str,
    events: trio.MemoryReceiveChannel[Event],
    request: ShotRequest,
    progress: Progress,
) -> Shot:
    """Load ``request.url`` on the page ``session_id`` and capture it.

    ``progress.main_frame`` must be the page's main frame id (its target id).

    Raises:
        CaptureFailed: the navigation failed, the page crashed, or no quality on the ladder
            fits the byte cap.
        BrowserCrashed / CdpError: from the connection.

    Cancellation: the page is left mid-load; the caller resets or discards it.
    """
    while True:  # events of an earlier capture or of the idle page
        try:
            events.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    await _emulate(cdp, session_id, request)

    async def load_and_capture() -> Shot:
        navigated = await cdp.call("Page.navigate", {"url": request.url}, session_id=session_id)
        if navigated.get("errorText"):
            raise CaptureFailed(f"{request.url} did not load: {navigated['errorText']}")
        progress.loader_id = str(navigated.get("loaderId", ""))
        await progress.wait_loaded()
        if progress.crashed:
            raise CaptureFailed(f"the page crashed while loading {request.url}")
        with trio.move_on_after(2.0):
            await cdp.call("Runtime.evaluate", {"expression": FREEZE_SCRIPT, "awaitPromise": True,
                                                "returnByValue": True}, session_id=session_id)  # fmt: skip
        await trio.sleep(request.settle_s)
        return await _capture(cdp, session_id, request, progress)

    return await watching(events, progress, load_and_capture)


async def watching(
    events: trio.MemoryReceiveChannel[Event],
    progress: Progress,
    body: Callable[[], Awaitable[T]],
) -> T:
    """Run ``body`` while a task feeds the page's events to ``progress``.

    ``body``'s exceptions come out as they are, not wrapped in an exception group.
    """
    result: list[T] = []
    error: list[Exception] = []
    async with trio.open_nursery() as nursery:

        async def collect() -> None:
            async for method, params in events:
                progress.note(method, params)

        nursery.start_soon(collect)
        try:
            result.append(await body())
        except Exception as exc:  # re-raised below, outside the nursery's group
            error.append(exc)
        nursery.cancel_scope.cancel()
    if error:
        raise error[0]
    return result[0]


async def _capture(
    cdp: CdpConnection, session_id: str, request: ShotRequest, progress: Progress
) -> Shot:
    metrics = await cdp.call("Page.getLayoutMetrics", session_id=session_id)
    content = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
    page_height = int(content.get("height") or request.device.height)
    height = request.device.height
    if request.full_page:
        height = max(1, min(page_height, request.max_height))
    width = request.device.width
    for quality, scale in QUALITY_LADDER:
        answer = await cdp.call("Page.captureScreenshot", {
            "format": "jpeg", "quality": quality, "captureBeyondViewport": request.full_page,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": scale}},
            session_id=session_id)  # fmt: skip
        jpeg = base64.b64decode(answer.get("data", ""))
        if len(jpeg) <= request.max_bytes:
            return Shot(
                jpeg, round(width * scale), round(height * scale), page_height, request.url,
                request.device.name, progress.status, tuple(progress.console_errors),
                progress.failed_requests, quality,
            )  # fmt: skip
    raise CaptureFailed(
        f"the screenshot does not fit in {request.max_bytes} bytes even at low quality; "
        "try full_page=false"
    )
