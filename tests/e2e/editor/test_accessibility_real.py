"""Accessibility with the real agent: the sign-in screen and the Share dialog (logins on, fake
OpenID provider, faked sandboxes), and — against `amicable up` with the fake model — a
keyboard-only walk from creating a project to restoring a checkpoint, with axe-core on the
History dialog and its confirmation in both themes and on a phone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import test_login_and_share as logins  # type: ignore[import-not-found]
import test_real_stack as real  # type: ignore[import-not-found]
from a11y import assert_accessible, assert_no_overflow, both_themes, phone_shots
from amicable_testing.logins import ALICE
from conftest import CHROMIUM, screenshot
from playwright.sync_api import expect

DESKTOP = {"width": 1440, "height": 900}


@pytest.fixture
def login_site(tmp_path: Path) -> Any:
    site = logins.LoginSite(tmp_path / "data")
    site.start()
    yield site
    site.stop()


@pytest.fixture
def real_stack(tmp_path: Path) -> Any:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed")
    stack = real.RealStack(tmp_path / "data")
    stack.start()
    yield stack
    stack.stop()
    assert stack.returncode == 0, "amicable up did not stop cleanly"


def focused(page: Any) -> str | None:
    value: str | None = page.evaluate("document.activeElement?.dataset?.testid ?? null")
    return value


def tab_to(page: Any, testid: str, text: str | None = None, limit: int = 80) -> None:
    """Press Tab until the focused element has `testid` (and, if given, sits in a row with `text`)."""
    check = """([testid, text]) => {
      const el = document.activeElement;
      if (!el || el.dataset.testid !== testid) return false;
      return text === null || (el.closest('li')?.textContent ?? '').includes(text);
    }"""
    for _ in range(limit):
        if page.evaluate(check, [testid, text]):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {testid} ({text}); focus is on {focused(page)}")


@pytest.mark.slow
def test_sign_in_screen_and_share_dialog(browser: Any, login_site: Any) -> None:
    context = browser.new_context(viewport=DESKTOP, base_url=login_site.origin)
    context.set_default_timeout(20000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto("/")
        expect(page.get_by_test_id("sign-in")).to_be_visible()
        expect(page.locator("h1")).to_have_count(1)
        both_themes(page, "sign-in")
        phone_shots(page, "sign-in", restore=DESKTOP)

        login_site.login_as(ALICE)
        page.get_by_test_id("sign-in-button").click()
        page.get_by_test_id("user-menu").wait_for()
        page.get_by_test_id("new-project-name").fill("Shared board")
        page.get_by_test_id("new-project-prompt").fill("A board")
        page.get_by_test_id("new-project").click()
        page.wait_for_url("**/p/shared-board")
        share = page.get_by_test_id("share")

        def open_share() -> None:
            share.focus()
            page.keyboard.press("Enter")
            expect(page.get_by_test_id("member").first).to_be_visible()

        open_share()
        dialog = page.get_by_role("dialog")
        assert dialog.evaluate("d => d.contains(document.activeElement)"), "focus is not in Share"
        both_themes(page, "share dialog", reopen=open_share)
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert focused(page) == "share", "focus did not return to Share"

        page.get_by_test_id("user-menu").click()
        expect(page.get_by_test_id("user-menu-panel")).to_be_visible()
        assert_accessible(page, "user menu")
        page.keyboard.press("Escape")

        page.set_viewport_size({"width": 390, "height": 844})
        open_share()
        phone_shots(page, "share-dialog", restore=DESKTOP)
    finally:
        context.close()
    assert errors == []


@pytest.mark.slow
def test_keyboard_only_create_prompt_history_restore(browser: Any, real_stack: Any) -> None:
    origin = f"http://127.0.0.1:{real_stack.info['port']}"
    context = browser.new_context(viewport=DESKTOP, base_url=origin)
    context.set_default_timeout(60_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    keys = page.keyboard
    try:
        # Create a project with a first prompt: keyboard only.
        page.goto("/")
        tab_to(page, "new-project-prompt")
        keys.type("Title: First by keyboard")
        tab_to(page, "new-project-name")
        keys.type("Keys")
        tab_to(page, "new-project")
        keys.press("Enter")
        expect(page).to_have_url(re.compile(r"/p/keys$"))
        last = page.get_by_test_id("assistant-message").last
        expect(last).to_contain_text("Done", timeout=real.PREVIEW_TIMEOUT_MS)
        expect(page.get_by_test_id("chat-send")).to_be_visible(timeout=real.PREVIEW_TIMEOUT_MS)

        # A second prompt, typed and sent from the keyboard.
        tab_to(page, "chat-input")
        keys.type("Title: Second by keyboard")
        keys.press("Enter")
        expect(page.get_by_test_id("user-message").last).to_have_text("Title: Second by keyboard")
        expect(page.get_by_test_id("assistant-message").last).to_contain_text(
            "Done", timeout=real.PREVIEW_TIMEOUT_MS
        )
        expect(page.get_by_test_id("chat-send")).to_be_visible()
        both_themes(page, "editor after two turns (real agent)")

        # History, from the keyboard: focus moves in, Tab reaches the first turn's Restore.
        tab_to(page, "history")
        keys.press("Enter")
        history = page.get_by_test_id("history-panel")
        expect(history.get_by_test_id("checkpoint").first).to_contain_text("Second by keyboard")
        assert history.evaluate("d => d.contains(document.activeElement)"), "focus not in History"

        def open_history() -> None:
            page.get_by_test_id("history").focus()
            keys.press("Enter")
            expect(history.get_by_test_id("checkpoint").first).to_be_visible()

        both_themes(page, "history dialog", reopen=open_history)
        screenshot(page, "history-keyboard")
        tab_to(page, "checkpoint-restore", text="First by keyboard")
        keys.press("Enter")
        confirm = page.get_by_test_id("restore-confirm")
        expect(confirm).to_be_visible()
        assert focused(page) == "dialog-confirm"  # not destructive: a restore can be undone

        def open_confirm() -> None:
            open_history()
            history.get_by_test_id("checkpoint").filter(
                has_text="First by keyboard"
            ).get_by_test_id("checkpoint-restore").focus()
            keys.press("Enter")
            expect(confirm).to_be_visible()

        both_themes(page, "restore confirmation", reopen=open_confirm)
        # Tab stays in the confirmation (Cancel ↔ Restore), then Enter restores.
        keys.press("Tab")
        keys.press("Tab")
        assert focused(page) == "dialog-confirm"
        keys.press("Enter")
        expect(history.get_by_test_id("history-message")).to_contain_text(
            "Restored to “Title: First by keyboard”"
        )
        keys.press("Escape")
        expect(history).to_be_hidden()
        assert focused(page) == "history", "focus did not return to the History button"
        expect(page.get_by_test_id("chat-notice").last).to_contain_text("restored")

        # On a phone the History dialog fits: every Restore can be reached and pressed.
        page.set_viewport_size({"width": 360, "height": 740})
        page.get_by_test_id("history").click()
        restore = history.get_by_test_id("checkpoint-restore").last
        restore.scroll_into_view_if_needed()
        box = restore.bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= 360
        assert box["y"] + box["height"] <= 740
        assert_no_overflow(page, "history at 360")
        phone_shots(page, "history", restore=DESKTOP)
    finally:
        context.close()
    assert errors == []
