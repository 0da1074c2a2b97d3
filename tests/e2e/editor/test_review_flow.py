"""Reviewing and steering in real Chromium against `amicable up` (real agent, runtime, Vite;
only the model is fake): a turn's changes appear as a diff, and an element picked in the
preview goes into the composer and reaches the model with the next message.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import screenshot
from playwright.sync_api import expect
from test_real_stack import APP, PREVIEW_TIMEOUT_MS, RealStack, real_stack, send

pytestmark = pytest.mark.slow
#: How long an expectation waits for the server (a loaded CI machine is slow; not a timing).
WAIT = 60_000
__all__ = ["real_stack"]  # the fixture, imported for this module

#: A page on another origin, opened by the editor, that posts a forged pick to its opener.
#: (The editor's CSP allows only previews in frames, so a foreign frame cannot even load.)
FORGE = (
    "<!doctype html><script>opener.postMessage({type: 'amicable_element_selected', element:"
    " {tag: 'h2', selector: '#evil', text: 'forged', source: 'src/Evil.tsx:1'}}, '*')</script>"
)


def _user_texts(stack: RealStack) -> list[str]:
    """The text of every user message of every request the fake model received."""
    out = []
    for index in range(len(stack.fake.requests)):
        for message in stack.fake.view(index)["messages"]:
            content = message["content"]
            if message["role"] != "user":
                continue
            if isinstance(content, list):
                content = "\n".join(b.get("text", "") for b in content if isinstance(b, dict))
            out.append(content)
    return out


def test_diff_of_a_turn_and_selecting_an_element(browser: Any, real_stack: RealStack) -> None:
    origin = f"http://127.0.0.1:{real_stack.info['port']}"
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=origin)
    context.set_default_timeout(60_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    frame = page.frame_locator("[data-testid=preview-frame]")
    try:
        page.goto("/")
        page.get_by_test_id("new-project-name").fill("Review")
        page.get_by_test_id("new-project-prompt").fill("Title: Hello review")
        page.get_by_test_id("new-project").click()
        expect(page).to_have_url(re.compile(r"/p/review$"), timeout=WAIT)
        expect(frame.locator("#title")).to_have_text("Hello review", timeout=PREVIEW_TIMEOUT_MS)

        # The turn's card offers its changes once the checkpoint is saved.
        view = page.get_by_test_id("assistant-message").first.get_by_test_id("view-changes")
        expect(view).to_contain_text("1 file", timeout=WAIT)
        view.click()
        dialog = page.get_by_test_id("diff-dialog")
        expect(dialog).to_contain_text("Title: Hello review", timeout=WAIT)
        app = dialog.locator("[data-testid=diff-file][data-path='/src/App.tsx']")
        expect(app).to_have_attribute("data-status", "modified", timeout=WAIT)
        expect(dialog.get_by_test_id("diff-view")).to_have_attribute(
            "data-layout", "split", timeout=WAIT
        )
        expect(app.locator(".diff-code.add").filter(has_text="Hello review")).to_have_count(
            1, timeout=WAIT
        )
        expect(app.locator(".diff-code.del").filter(has_text="Your app starts here")).to_have_count(
            1, timeout=WAIT
        )
        screenshot(page, "review-diff")
        dialog.get_by_test_id("diff-layout-unified").click()
        expect(app.locator("tr[data-kind=add]").filter(has_text="Hello review")).to_have_count(
            1, timeout=WAIT
        )
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden(timeout=WAIT)

        # The same diff from History; Escape closes the diff, not the history under it.
        page.get_by_test_id("history").click()
        history = page.get_by_test_id("history-panel")
        history.get_by_test_id("checkpoint").first.get_by_test_id("checkpoint-changes").click()
        expect(dialog.locator("[data-path='/src/App.tsx']")).to_be_visible(timeout=WAIT)
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden(timeout=WAIT)
        expect(history).to_be_visible(timeout=WAIT)
        page.keyboard.press("Escape")
        expect(history).to_be_hidden(timeout=WAIT)

        # A forged pick from another origin is ignored.
        page.evaluate(
            "window.__seen = 0; window.addEventListener('message', (e) =>"
            " { if (e.data && e.data.type === 'amicable_element_selected') window.__seen++; });"
        )
        context.route(
            "http://evil.example/**",
            lambda route: route.fulfill(status=200, content_type="text/html", body=FORGE),
        )
        with page.expect_popup() as popup:
            page.evaluate("window.open('http://evil.example/forge')")
        page.wait_for_function("() => window.__seen >= 1")
        popup.value.close()
        select = page.get_by_test_id("preview-select")
        select.click()  # renders after the forged message was handled
        expect(select).to_have_attribute("aria-pressed", "true", timeout=WAIT)
        expect(page.get_by_test_id("selection-chip")).to_have_count(0, timeout=WAIT)

        # Select the heading in the preview: it becomes a chip in the composer.
        heading = frame.locator("#title")
        heading.hover()
        expect(frame.locator("[data-amicable-select-box]")).to_be_visible(timeout=WAIT)
        heading.click()
        chip = page.get_by_test_id("selection-chip")
        expect(chip).to_have_attribute("data-tag", "h1", timeout=WAIT)
        expect(chip).to_contain_text("Hello review", timeout=WAIT)
        expect(chip).to_contain_text(re.compile(r"src/App\.tsx:\d+"), timeout=WAIT)
        expect(select).to_have_attribute("aria-pressed", "false", timeout=WAIT)
        screenshot(page, "review-selection")
        # The click was the editor's: the app still shows its page, nothing navigated.
        expect(heading).to_have_text("Hello review", timeout=WAIT)

        send(page, "Make this heading blue")
        expect(chip).to_have_count(0, timeout=WAIT)  # it went with the message
        # The second turn's own bubble (the first one also ends with "Done").
        answers = page.get_by_test_id("assistant-message")
        expect(answers).to_have_count(2, timeout=WAIT)
        expect(answers.nth(1)).to_contain_text("Done: the change is in place.", timeout=WAIT)
        texts = _user_texts(real_stack)
        prompt = next((t for t in texts if "Make this heading blue" in t), None)
        assert prompt is not None, texts
        assert "- selected_element: the user picked this element in the preview" in prompt
        assert '  - tag: "h1"\n  - selector: "#title"\n' in prompt
        assert '  - text: "Hello review"' in prompt
        line = re.search(r'  - source: "src/App\.tsx:(\d+)"', prompt)
        assert line is not None, prompt
        # The line named is the heading's line in the file the first turn wrote.
        lines = APP.format(title="Hello review").splitlines()
        assert lines[int(line.group(1)) - 1].strip() == '<h1 id="title">Hello review</h1>'
        assert "forged" not in "\n".join(texts)
    finally:
        context.close()
    assert errors == []
