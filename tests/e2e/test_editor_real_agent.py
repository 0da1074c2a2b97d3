"""The built editor in real Chromium against the real product (`amicable up`: agent, preview
router, sandbox runtime, Vite): create a project in the UI and see the live preview."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_templates import registry

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CACHE = ROOT / ".cache" / "node_modules"


class AmicableUp:
    """`amicable up` as a child process, driven from a Trio loop in a background thread
    (Playwright's sync API owns the test's thread)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.info: dict[str, Any] = {}
        self.returncode: int | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        ready = self.data_dir.parent / f"up-{uuid.uuid4().hex}.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AMICABLE_", "ANTHROPIC_"))}
        env.update(AMICABLE_WARM_POOL_SIZE="0", AMICABLE_NODE_MODULES_CACHE_DIR=str(CACHE))
        argv = [
            str(Path(sys.executable).parent / "amicable"),
            "up",
            "--data-dir",
            str(self.data_dir),
        ]
        argv += ["--port", "0", "--preview-port", "0", "--ready-file", str(ready)]
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    argv,
                    env=env,
                    check=False,
                    start_new_session=True,
                    cwd=str(ROOT),
                )
            )
            with trio.fail_after(180):
                # The child writes the file; there is nothing else to wait on.
                while not ready.exists():
                    if process.returncode is not None:
                        raise RuntimeError("amicable up exited early")
                    await trio.sleep(0.1)
            self.info = json.loads(ready.read_text())
            self._ready.set()
            await self._stop.wait()
            process.send_signal(signal.SIGINT)
            with trio.move_on_after(60):
                await process.wait()
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            self.returncode = process.returncode

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(200) or self._error is not None:
            raise RuntimeError("amicable up did not start") from self._error

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(90)


@pytest.fixture
def product(tmp_path: Path) -> Iterator[AmicableUp]:
    if not (ROOT / "frontend" / "dist" / "index.html").is_file():
        pytest.fail("frontend/dist is not built: run `make frontend`")
    up = AmicableUp(tmp_path / "data")
    up.start()
    yield up
    up.stop()
    assert up.returncode == 0


def test_create_project_in_the_editor_shows_the_live_preview(product: AmicableUp) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is not installed (`make test` installs it)")
    # Playwright's sync API cannot start while another sync Playwright is active on this
    # thread (the editor tests keep a session-wide browser), so the browser gets its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        errors = pool.submit(_create_project_and_see_preview, product.info["url"]).result()
    assert errors == []


def _create_project_and_see_preview(url: str) -> list[str]:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
            headless=True,
        )
        context = browser.new_context(base_url=url)
        context.set_default_timeout(20000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/")
        page.get_by_test_id("new-project-name").fill("Real preview")
        page.get_by_test_id("new-project").click()
        expect(page).to_have_url(re.compile(r"/p/real-preview$"))
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        frame = page.frame_locator("[data-testid=preview-frame]")
        expect(frame.locator("h1")).to_have_text("Your app starts here", timeout=240000)
        box = page.get_by_test_id("chat-input")
        expect(box).to_be_enabled()
        box.fill("Make it blue")
        box.press("Enter")
        expect(page.get_by_text(re.compile("ANTHROPIC_API_KEY")).first).to_be_visible()
        # the dialog offers the agent's templates (GET /api/templates), and another stack works
        page.goto("/")
        choice = page.get_by_test_id("new-project-template")
        expect(choice.locator("option")).to_have_count(len(registry().ids))
        offered = [o.get_attribute("value") for o in choice.locator("option").all()]
        assert offered == list(registry().ids)
        page.get_by_test_id("new-project-name").fill("Hono api")
        choice.select_option("hono")
        page.get_by_test_id("new-project").click()
        expect(page).to_have_url(re.compile(r"/p/hono-api$"))
        frame = page.frame_locator("[data-testid=preview-frame]")
        expect(frame.locator("h1")).to_have_text("Your API starts here", timeout=240000)
        context.close()
        browser.close()
    return errors
