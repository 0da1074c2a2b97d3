"""The agent's one headless Chromium and its bounded pool of pages.

:func:`open_preview_browser` owns the browser: it is started on the first capture (an agent
that never takes a screenshot never pays for it), restarted on the next capture after it died,
and killed when the block ends. At most ``max_pages`` captures run at once, each on its own
page; an idle page is kept for the next capture (warm: its renderer, caches and connections
stay), a page that failed or timed out is closed.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

import attrs
import trio

from .capture import DEVICES, Progress, ShotRequest, prepare_page, shoot, watching
from .cdp import Event
from .errors import BrowserCrashed, BrowserUnavailable, CaptureFailed, CdpError
from .process import Chromium, find_chromium, open_chromium

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .capture import Shot
    from .config import BrowserConfig
    from .urls import PreviewAddress

log = logging.getLogger(__name__)

_CLEANUP_TIMEOUT_S = 3.0


@attrs.frozen
class BrowserStatistics:
    """An immutable snapshot of the browser's counters."""

    running: bool
    pid: int | None
    launches: int
    crashes: int
    captures: int
    failures: int
    pages_open: int
    pages_idle: int


@attrs.define(eq=False)
class _Page:
    target_id: str
    session_id: str
    events: trio.MemoryReceiveChannel[Event]


@attrs.define(eq=False)
class _Generation:
    """One run of the Chromium process and the pages opened in it."""

    chromium: Chromium
    context_id: str
    user_agent: str
    idle: list[_Page] = attrs.field(factory=list)
    pages: int = 0

    @property
    def alive(self) -> bool:
        return not self.chromium.cdp.closed


class PreviewBrowser:
    """Screenshots of previews; create it with :func:`open_preview_browser`."""

    def __init__(
        self, config: BrowserConfig, address: PreviewAddress, binary: str, nursery: trio.Nursery
    ) -> None:
        self.config = config
        self.address = address
        self._binary = binary
        self._nursery = nursery
        self._slots = trio.Semaphore(config.max_pages)
        self._launch_lock = trio.Lock()
        self._current: _Generation | None = None
        self._launches = self._crashes = self._captures = self._failures = 0

    def camera(self, label: str) -> PreviewCamera:
        """This browser pointed at the preview of ``label`` (a project's slug)."""
        return PreviewCamera(self, label)

    def statistics(self) -> BrowserStatistics:
        """Counters and the current process (``/readyz``, metrics, tests)."""
        gen = self._current if self._current is not None and self._current.alive else None
        return BrowserStatistics(
            running=gen is not None, pid=gen.chromium.pid if gen else None,
            launches=self._launches, crashes=self._crashes, captures=self._captures,
            failures=self._failures, pages_open=gen.pages if gen else 0,
            pages_idle=len(gen.idle) if gen else 0,
        )  # fmt: skip

    async def capture(
        self,
        label: str,
        path: str = "/",
        *,
        device: str = "desktop",
        full_page: bool = True,
        timeout_s: float = 15.0,
    ) -> Shot:
        """A screenshot of ``path`` in the preview of ``label``.

        The whole capture (a browser launch included) is bounded by ``timeout_s``. When the
        browser dies during the capture it is started again and the capture retried once,
        within the same deadline.

        Raises:
            PreviewPathRefused: ``path`` leaves the preview.
            CaptureFailed: the page did not load in time, failed to load, or crashed.
            BrowserUnavailable: Chromium could not be started.
            BrowserCrashed: it died twice.

        Cancellation: the page in use is closed; the browser keeps running.
        """
        url = self.address.url_for(label, path)
        if device not in DEVICES:
            raise CaptureFailed(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
        deadline = trio.current_time() + timeout_s
        for attempt in (1, 2):
            progress = Progress()
            try:
                with trio.fail_at(deadline):
                    shot = await self._capture_once(url, device, full_page, progress)
            except BrowserCrashed:
                self._crashes += 1
                if attempt == 2 or trio.current_time() >= deadline:
                    self._failures += 1
                    raise
                log.warning("the preview browser died during a capture; starting it again")
                continue
            except trio.TooSlowError:
                self._failures += 1
                raise CaptureFailed(_timeout_text(url, timeout_s, progress)) from None
            except (CaptureFailed, BrowserUnavailable):
                self._failures += 1
                raise
            except CdpError as exc:
                self._failures += 1
                raise CaptureFailed(f"capturing {url} failed: {exc.message}") from exc
            self._captures += 1
            return shot
        raise AssertionError("unreachable")

    async def _capture_once(
        self, url: str, device: str, full_page: bool, progress: Progress
    ) -> Shot:
        async with self._slots:
            gen = await self._generation()
            page = gen.idle.pop() if gen.idle else await self._new_page(gen)
            progress.main_frame = page.target_id
            request = ShotRequest(
                url, DEVICES[device], full_page, max_bytes=self.config.max_bytes,
                settle_s=self.config.settle_s, desktop_user_agent=gen.user_agent,
            )  # fmt: skip
            try:
                shot = await shoot(
                    gen.chromium.cdp, page.session_id, page.events, request, progress
                )
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self._close_page(gen, page)
                raise
            await self._rest_page(gen, page)
            return shot

    async def _generation(self) -> _Generation:
        async with self._launch_lock:
            if self._current is not None and self._current.alive:
                return self._current
            self._current = None
            gen: _Generation = await self._nursery.start(self._run_generation)
            self._current = gen
            return gen

    async def _run_generation(self, *, task_status: trio.TaskStatus[_Generation]) -> None:
        self._launches += 1
        async with open_chromium(
            self._binary,
            self.address.resolver_rules(),
            launch_timeout_s=self.config.launch_timeout_s,
            sandbox=self.config.sandbox,
        ) as chromium:
            cdp = chromium.cdp
            version = await cdp.call("Browser.getVersion")
            agent = str(version.get("userAgent", "")).replace("HeadlessChrome", "Chrome")
            context = await cdp.call("Target.createBrowserContext")
            context_id = str(context["browserContextId"])
            await cdp.call("Browser.setDownloadBehavior",
                           {"behavior": "deny", "browserContextId": context_id})  # fmt: skip
            task_status.started(_Generation(chromium, context_id, agent))
            await cdp.wait_closed()

    async def _new_page(self, gen: _Generation) -> _Page:
        cdp = gen.chromium.cdp
        target = await cdp.call(
            # Its own window: a background tab would not paint, and captures run side by side.
            "Target.createTarget",
            {"url": "about:blank", "browserContextId": gen.context_id, "newWindow": True},
        )
        target_id = str(target["targetId"])
        attached = await cdp.call("Target.attachToTarget", {"targetId": target_id, "flatten": True})
        session_id = str(attached["sessionId"])
        page = _Page(target_id, session_id, cdp.open_session(session_id))
        gen.pages += 1
        try:
            await prepare_page(cdp, session_id)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._close_page(gen, page)
            raise
        return page

    async def _rest_page(self, gen: _Generation, page: _Page) -> None:
        """Park the page on ``about:blank`` (its load seen) and keep it for the next capture."""
        progress = Progress(main_frame=page.target_id)

        async def blank() -> None:
            answer = await gen.chromium.cdp.call(
                "Page.navigate", {"url": "about:blank"}, session_id=page.session_id
            )
            progress.loader_id = str(answer.get("loaderId", ""))
            if progress.loader_id:
                await progress.wait_loaded()

        try:
            with trio.fail_after(_CLEANUP_TIMEOUT_S):
                await watching(page.events, progress, blank)
        except (trio.TooSlowError, BrowserCrashed, CdpError):
            await self._close_page(gen, page)
            return
        if gen.alive:
            gen.idle.append(page)

    async def _close_page(self, gen: _Generation, page: _Page) -> None:
        gen.pages -= 1
        cdp = gen.chromium.cdp
        cdp.close_session(page.session_id)
        if not gen.alive:
            return
        with trio.move_on_after(_CLEANUP_TIMEOUT_S):
            with suppress(BrowserCrashed, CdpError):
                await cdp.call("Target.closeTarget", {"targetId": page.target_id})


@attrs.frozen
class PreviewCamera:
    """A :class:`PreviewBrowser` pointed at one session's preview (what a turn uses)."""

    browser: PreviewBrowser
    label: str

    def url_for(self, path: str = "/") -> str:
        """The URL a capture of ``path`` loads (raises ``PreviewPathRefused``)."""
        return self.browser.address.url_for(self.label, path)

    async def capture(
        self, path: str = "/", *, device: str = "desktop", full_page: bool = True,
        timeout_s: float = 15.0,
    ) -> Shot:  # fmt: skip
        """See :meth:`PreviewBrowser.capture`."""
        return await self.browser.capture(
            self.label, path, device=device, full_page=full_page, timeout_s=timeout_s
        )


def _timeout_text(url: str, timeout_s: float, progress: Progress) -> str:
    if progress.done_loading:
        text = f"capturing {url} took longer than {timeout_s:g} s"
    else:
        text = f"{url} did not finish loading within {timeout_s:g} s"
    if progress.status is not None:
        text += f" (HTTP {progress.status})"
    if progress.console_errors:
        text += "; console errors: " + " | ".join(progress.console_errors[:3])
    return text


@asynccontextmanager
async def open_preview_browser(
    config: BrowserConfig, address: PreviewAddress
) -> AsyncIterator[PreviewBrowser | None]:
    """The preview browser, or None when screenshots are off or no Chromium is found.

    Cancellation: leaving the block kills Chromium (its process group) and removes its
    temporary profile; running captures are cancelled.
    """
    if not config.enabled:
        yield None
        return
    binary = find_chromium(config.chromium_path)
    if binary is None:
        log.warning(
            "screenshots are off: no Chromium found (%s); set AMICABLE_CHROMIUM_PATH",
            config.chromium_path or "chromium, chromium-browser, google-chrome on PATH",
        )
        yield None
        return
    async with trio.open_nursery() as nursery:
        browser = PreviewBrowser(config, address, binary, nursery)
        try:
            yield browser
        finally:
            nursery.cancel_scope.cancel()
