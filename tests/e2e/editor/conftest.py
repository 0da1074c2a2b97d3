"""Fixtures for the editor end-to-end tests: the built editor, a fake agent, real Chromium."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the fake importable

from editor_fake_agent import FakeAgent, FakeProject, serve

ROOT = Path(__file__).resolve().parents[3]
FRONTEND = ROOT / "frontend"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The committed docs/screenshots change only on purpose (AMICABLE_UPDATE_SCREENSHOTS=1);
# ordinary runs write to the gitignored artifacts/ folder so `make test` leaves no diff.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("AMICABLE_UPDATE_SCREENSHOTS") == "1"
    else ROOT / "artifacts" / "screenshots"
)


def _dist() -> Path:
    """frontend/dist, built by `make frontend` (a step of `make test`)."""
    dist = FRONTEND / "dist"
    if not (dist / "index.html").is_file():
        pytest.fail("frontend/dist is not built: run `make frontend`")
    return dist


class FakeAgentHandle:
    """A FakeAgent served from a background thread running its own Trio loop."""

    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent
        self.origin = ""
        self.preview_origin = ""
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with trio.open_nursery() as nursery:
                    self.origin, self.preview_origin = await nursery.start(serve, self.agent)
                    self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError("fake agent did not start") from self._error

    def call(self, fn: Any, *args: Any) -> Any:
        """Run sync `fn(*args)` on the server's Trio thread (state is not thread-safe)."""
        assert self._token is not None

        async def wrapper() -> Any:
            return fn(*args)

        return trio.from_thread.run(wrapper, trio_token=self._token)

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(10)


@pytest.fixture
def fake_agent() -> Iterator[FakeAgentHandle]:
    handle = FakeAgentHandle(FakeAgent(_dist()))
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, fake_agent: FakeAgentHandle) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, base_url=fake_agent.origin
    )
    context.set_default_timeout(15000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == [], f"uncaught errors in the editor: {errors}"


def screenshot(page: Any, name: str) -> None:
    """Save <name>.png (docs/screenshots with AMICABLE_UPDATE_SCREENSHOTS=1; the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def provisioned_project(agent: FakeAgentHandle, name: str) -> FakeProject:
    """A project whose sandbox already exists (opening it skips provisioning)."""

    def make() -> FakeProject:
        p = agent.agent.create_project(name)
        p.provisioned = True
        return p

    project: FakeProject = agent.call(make)
    return project
