"""The chat as it happened, in real Chromium against `amicable up` with the fake model.

Real agent, router, sandbox runtime and Vite; only the model is fake (and, for a while,
"down": it drops every connection). One walk through a project: the first prompt sent with
Enter from the projects page; a reload shows the tool cards and the turn's cost again; a
second tab and a reload mid-turn both show the running turn with Stop and the queued prompts
(one removed from the other tab); Stop closes the turn once, calmly; an unreachable model is
a readable error whose Retry works once the model is back; a broken save shows a banner over
the preview whose "Fix it" starts a visible, system-authored repair turn.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from amicable_testing.fake_anthropic import Fault, Reply, Text, ToolUse
from conftest import CHROMIUM, screenshot
from playwright.sync_api import expect
from test_real_stack import APP, PREVIEW_TIMEOUT_MS, RealStack, _text_of

pytestmark = pytest.mark.slow

BROKEN = 'export default function App() {\n  return <h1 id="title">Broken\n}\n'


class Model:
    """The scripted model; ``down`` makes it drop every connection (an unreachable API)."""

    def __init__(self) -> None:
        self.down = threading.Event()

    def __call__(self, body: dict[str, Any]) -> Reply | Fault:
        if self.down.is_set():
            return Fault(drop_after_events=0)
        messages = body.get("messages") or [{"content": ""}]
        content = messages[-1].get("content", "")
        if isinstance(content, list) and any(b.get("type") == "tool_result" for b in content):
            return Reply([Text("Done: the change is in place.")])
        text = _text_of(content)
        if "Runtime error detected" in text:
            title = "Fixed by the agent"
        elif "slow" in text:
            return Reply([Text("Working slowly" + " and steadily" * 120, chunk=6)], delay_s=0.1)
        else:
            match = re.search(r"Title: (.+)", text)
            title = match.group(1).strip() if match else "Hello"
        return Reply(
            [
                Text(f"I'll set the title to **{title}**."),
                ToolUse(
                    "write_file", {"file_path": "/src/App.tsx", "content": APP.format(title=title)}
                ),
            ]
        )


@pytest.fixture
def chat_stack(tmp_path: Path) -> Any:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed")
    model = Model()
    # The default retries (about 15 s of backoff while the model is down): with fewer, a
    # stale pooled connection after Stop failed a later turn for good now and then.
    stack = RealStack(tmp_path / "data", responder=model)
    stack.start()
    yield stack, model
    stack.stop()
    assert stack.returncode == 0, "amicable up did not stop cleanly"


def send(page: Any, text: str) -> None:
    box = page.get_by_test_id("chat-input")
    box.fill(text)
    box.press("Enter")


def open_tab(context: Any, url: str) -> Any:
    tab = context.new_page()
    tab.goto(url)
    expect(tab.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    return tab


def test_the_chat_as_it_happened(browser: Any, chat_stack: Any) -> None:
    stack, model = chat_stack
    origin = f"http://127.0.0.1:{stack.info['port']}"
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=origin)
    context.set_default_timeout(60_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    title = page.frame_locator("[data-testid=preview-frame]").locator("#title")
    # Real turns on a loaded 2-core machine: assertions wait like the actions do.
    expect.set_options(timeout=60_000)
    try:
        # The first prompt goes with Enter, as in the chat.
        page.goto("/")
        page.get_by_test_id("new-project-name").fill("Chat")
        page.get_by_test_id("new-project-prompt").fill("Title: First version")
        page.get_by_test_id("new-project-prompt").press("Enter")
        expect(page).to_have_url(re.compile(r"/p/chat$"))
        expect(page.get_by_test_id("preview-frame")).to_be_visible(timeout=PREVIEW_TIMEOUT_MS)
        bubble = page.get_by_test_id("assistant-message").first
        expect(bubble.locator("[data-tool=write_file]")).to_have_attribute("data-status", "ok")
        expect(bubble.get_by_test_id("usage")).to_contain_text(re.compile(r"\d in · \d+ out · \$"))
        usage_before = bubble.get_by_test_id("usage").inner_text()
        expect(title).to_have_text("First version", timeout=PREVIEW_TIMEOUT_MS)

        # Reopen: the same chat, tool card, cost and all (not plain text).
        url = page.url
        page.reload()
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        expect(page.get_by_test_id("user-message").first).to_have_text("Title: First version")
        bubble = page.get_by_test_id("assistant-message").first
        expect(bubble.locator("[data-tool=write_file]")).to_have_attribute("data-status", "ok")
        expect(bubble).to_contain_text("I'll set the title to First version")
        expect(bubble.get_by_test_id("usage")).to_have_text(usage_before)
        expect(bubble.get_by_test_id("reasoning")).to_contain_text("What Amicable saw")
        screenshot(page, "chat-reopened")

        # A slow turn; a second tab shows it running, with Stop.
        send(page, "a slow answer")
        expect(page.get_by_test_id("assistant-message").last).to_contain_text("and steadily")
        other = open_tab(context, url)
        expect(other.get_by_test_id("chat-cancel")).to_be_visible()
        expect(other.get_by_test_id("user-message").last).to_have_text("a slow answer")
        expect(other.get_by_test_id("assistant-message").last).to_contain_text("and steadily")

        # Prompts sent meanwhile are queued, in every tab; one is removed from the other tab.
        send(page, "Title: Queued one")
        send(other, "Title: Never mind")
        for tab in (page, other):
            expect(tab.get_by_test_id("queued-prompt")).to_have_count(2)
        expect(page.get_by_test_id("chat-input")).to_have_value("")
        other.get_by_test_id("queued-prompt").filter(has_text="Never mind").get_by_test_id(
            "queued-remove"
        ).click()
        for tab in (page, other):
            expect(tab.get_by_test_id("queued-prompt")).to_have_count(1)
            expect(tab.get_by_test_id("queued-prompt")).to_contain_text("Queued one")

        # Reload mid-turn: the running turn, Stop and the queue come back.
        page.reload()
        expect(page.get_by_test_id("chat-cancel")).to_be_visible()
        expect(page.get_by_test_id("user-message").last).to_have_text("a slow answer")
        expect(page.get_by_test_id("queued-prompt")).to_contain_text("Queued one")
        screenshot(page, "chat-reload-mid-turn")

        # Stop from the other tab: one calm note, then the queued prompt runs.
        other.get_by_test_id("chat-cancel").click()
        for tab in (page, other):
            expect(tab.get_by_test_id("stopped-note")).to_have_count(1)
            expect(tab.get_by_test_id("user-message").last).to_have_text("Title: Queued one")
            expect(tab.get_by_test_id("queued-prompt")).to_have_count(0)
        expect(title).to_have_text("Queued one", timeout=PREVIEW_TIMEOUT_MS)
        expect(page.get_by_test_id("chat-send")).to_be_visible()
        shown = page.get_by_test_id("error-message").all_inner_texts()
        assert shown == [], shown
        other.close()

        # The model is down: a readable error with Retry, and no cost line for it.
        usage_lines = page.get_by_test_id("usage").count()
        model.down.set()
        send(page, "Title: After the outage")
        error = page.get_by_test_id("error-message").last
        expect(error).to_contain_text("The model could not be reached")
        expect(error).not_to_contain_text("llm")
        expect(page.get_by_test_id("chat-send")).to_be_visible()
        assert (
            page.get_by_test_id("usage").count() == usage_lines
        )  # none for a turn without a model
        model.down.clear()
        error.get_by_test_id("error-retry").click()
        expect(page.get_by_test_id("user-message").last).to_have_text("Title: After the outage")
        expect(title).to_have_text("After the outage", timeout=PREVIEW_TIMEOUT_MS)
        screenshot(page, "chat-retry")

        # A broken save: a banner over the preview, and "Fix it" starts a visible repair turn.
        expect(page.get_by_test_id("chat-send")).to_be_visible()
        page.get_by_test_id("tab-code").click()
        tree = page.get_by_test_id("file-tree")
        tree.locator("[data-path='/src']").click()
        tree.locator("[data-path='/src/App.tsx']").click()
        expect(page.locator(".cm-content")).to_contain_text("After the outage")
        page.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(BROKEN)
        page.get_by_test_id("code-save").click()
        expect(page.get_by_test_id("code-message")).to_contain_text("Saved /src/App.tsx")
        page.get_by_test_id("tab-preview").click()
        banner = page.get_by_test_id("preview-error")
        expect(banner).to_be_visible(timeout=PREVIEW_TIMEOUT_MS)
        expect(banner).not_to_contain_text("/workspace/")
        expect(banner).not_to_contain_text("/app/src")
        screenshot(page, "chat-preview-error")
        banner.get_by_test_id("preview-fix").click()
        fix = page.get_by_test_id("user-message").last
        expect(fix).to_have_attribute("data-author", "system")
        expect(fix).to_contain_text("Fix this error in the preview")
        expect(fix.get_by_test_id("system-prompt-label")).to_be_visible()
        expect(title).to_have_text("Fixed by the agent", timeout=PREVIEW_TIMEOUT_MS)
        expect(banner).to_be_hidden()
    finally:
        expect.set_options(timeout=5_000)  # Playwright's default, for the other tests
        context.close()
    assert errors == []
