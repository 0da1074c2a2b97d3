"""The full flow in real Chromium against `amicable up` with the fake Anthropic server.

Real agent, real preview router, real sandbox runtime and Vite; only the model is fake (the
real `anthropic` client talks to `amicable_testing.fake_anthropic` via
ANTHROPIC_BASE_URL). One test walks a person's session: create a project with a first prompt,
watch the turn stream with tool cards, see the preview change, resize it, edit a file in the
code pane and see the preview update, approve and reject a command, stop a turn, reload
mid-turn.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from amicable_testing.fake_anthropic import Reply, Text, ToolUse
from conftest import PREVIEW_TIMEOUT_MS, AmicableUp, screenshot
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

APP = """export default function App() {{
  return (
    <main style={{{{ fontFamily: 'system-ui', padding: 32 }}}}>
      <h1 id="title">{title}</h1>
    </main>
  )
}}
"""


HAND_EDIT = 'export default function App() {\n  return <h1 id="title">Edited by hand</h1>\n}\n'


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))


def respond(body: dict[str, Any]) -> Reply:
    """The scripted model: what to answer depends on the last message."""
    messages = body.get("messages") or [{"content": ""}]
    content = messages[-1].get("content", "")
    if isinstance(content, list) and any(b.get("type") == "tool_result" for b in content):
        results = [b for b in content if b.get("type") == "tool_result"]
        if any(b.get("is_error") for b in results):
            return Reply([Text("Skipped the command as you asked.")])
        return Reply([Text("Done: the change is in place.")])
    text = _text_of(content)
    if "approve" in text:
        return Reply(
            [Text("I need to run a command first."), ToolUse("execute", {"command": "echo ok"})]
        )
    if "slow" in text:
        return Reply([Text("Working slowly" + " and steadily" * 80, chunk=6)], delay_s=0.1)
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


class RealStack(AmicableUp):
    """`amicable up` with the scripted model, where running a command needs approval."""

    def __init__(self, data_dir: Path, responder: Any = respond) -> None:
        super().__init__(
            data_dir, responder, env={"DEEPAGENTS_HITL_INTERRUPT_ON_JSON": '["execute"]'}
        )


@pytest.fixture
def real_stack(amicable_up: Any, tmp_path: Path) -> RealStack:
    stack: RealStack = amicable_up(RealStack(tmp_path / "data"))
    return stack


def send(page: Any, text: str) -> None:
    expect(page.get_by_test_id("chat-send")).to_be_visible(timeout=60_000)
    box = page.get_by_test_id("chat-input")
    box.fill(text)
    box.press("Enter")
    expect(page.get_by_test_id("user-message").last).to_have_text(text)


def test_full_flow_against_amicable_up(stack_page: Any, real_stack: RealStack) -> None:
    page = stack_page(real_stack)
    title = page.frame_locator("[data-testid=preview-frame]").locator("#title")
    page.goto("/")
    page.get_by_test_id("new-project-name").fill("Real stack")
    page.get_by_test_id("new-project-prompt").fill("Title: Hello from the real stack")
    page.get_by_test_id("new-project").click()
    expect(page).to_have_url(re.compile(r"/p/real-stack$"))
    expect(page.get_by_test_id("provisioning")).to_be_visible()

    # First prompt: streamed text, a write_file card, the preview shows the new title.
    expect(page.get_by_test_id("preview-frame")).to_be_visible(timeout=PREVIEW_TIMEOUT_MS)
    expect(page.get_by_test_id("user-message").first).to_have_text(
        "Title: Hello from the real stack"
    )
    bubble = page.get_by_test_id("assistant-message").first
    expect(bubble).to_contain_text("I'll set the title to Hello from the real stack")
    expect(bubble.locator("[data-tool=write_file]")).to_have_attribute("data-status", "ok")
    expect(bubble).to_contain_text("Done: the change is in place.")
    expect(title).to_have_text("Hello from the real stack", timeout=PREVIEW_TIMEOUT_MS)
    expect(page.get_by_test_id("chat-send")).to_be_visible()
    screenshot(page, "real-stack-editor")

    # Device toggle resizes the iframe.
    page.get_by_test_id("device-mobile").click()
    frame = page.get_by_test_id("preview-frame")
    expect(frame).to_have_css("width", "390px")
    page.get_by_test_id("device-desktop").click()

    # Edit the file in the code pane; Vite updates the preview.
    page.get_by_test_id("tab-code").click()
    tree = page.get_by_test_id("file-tree")
    tree.locator("[data-path='/src']").click()
    tree.locator("[data-path='/src/App.tsx']").click()
    expect(page.locator(".cm-content")).to_contain_text("Hello from the real stack")
    page.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    # insert_text, not type: typing would trigger CodeMirror's bracket and tag completion.
    page.keyboard.insert_text(HAND_EDIT)
    page.get_by_test_id("code-save").click()
    expect(page.get_by_test_id("code-message")).to_contain_text("Saved /src/App.tsx")
    workspace = next(real_stack.data_dir.glob("sandboxes/*/workspace"))
    assert (workspace / "src" / "App.tsx").read_text() == HAND_EDIT
    page.get_by_test_id("tab-preview").click()
    expect(title).to_have_text("Edited by hand", timeout=PREVIEW_TIMEOUT_MS)

    # Download the project's files: a zip named after the slug, without node_modules.
    with page.expect_download() as download_info:
        page.get_by_test_id("download").click()
    download = download_info.value
    assert download.suggested_filename == "real-stack.zip"
    with zipfile.ZipFile(download.path()) as zf:
        names = zf.namelist()
        assert zf.read("src/App.tsx").decode() == HAND_EDIT
    assert "package.json" in names
    assert not [n for n in names if n.startswith("node_modules/")]

    # History: restore the first turn's checkpoint; the hand edit is saved before.
    first_turn = "Title: Hello from the real stack"
    page.get_by_test_id("history").click()
    history = page.get_by_test_id("history-panel")
    checkpoints = history.get_by_test_id("checkpoint")
    expect(checkpoints.first).to_contain_text(first_turn)
    expect(checkpoints.last).to_contain_text("Project created")
    # Escape closes only the dialog on top (the confirmation), not the history under it.
    checkpoints.first.get_by_test_id("checkpoint-restore").click()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("restore-confirm")).to_be_hidden()
    expect(history).to_be_visible()
    checkpoints.first.get_by_test_id("checkpoint-restore").click()
    page.get_by_test_id("restore-confirm").get_by_test_id("dialog-confirm").click()
    expect(history.get_by_test_id("history-message")).to_contain_text(f"Restored to “{first_turn}”")
    expect(checkpoints.first).to_contain_text(f"Restored to: {first_turn}")
    expect(checkpoints.nth(1)).to_contain_text("Changes before restore")
    screenshot(page, "real-stack-history")
    page.keyboard.press("Escape")
    expect(history).to_be_hidden()
    expect(page.get_by_test_id("chat-notice").last).to_contain_text("restored")
    expect(title).to_have_text("Hello from the real stack", timeout=PREVIEW_TIMEOUT_MS)
    restored = (workspace / "src" / "App.tsx").read_text()
    assert restored == APP.format(title="Hello from the real stack")

    # Approve, then reject, a command the agent wants to run.
    send(page, "please approve: run a command")
    panel = page.get_by_test_id("hitl-panel")
    expect(panel).to_contain_text("echo ok")
    expect(page.get_by_test_id("chat-input")).to_be_disabled()
    panel.get_by_test_id("hitl-approve").click()
    expect(page.get_by_test_id("assistant-message").last).to_contain_text(
        "Done: the change is in place."
    )
    send(page, "approve another command")
    panel = page.get_by_test_id("hitl-panel")
    panel.get_by_test_id("hitl-reject-message").fill("not now")
    panel.get_by_test_id("hitl-reject").click()
    expect(page.get_by_test_id("assistant-message").last).to_contain_text("Skipped")

    # Stop a running turn.
    send(page, "a slow answer")
    expect(page.get_by_test_id("assistant-message").last).to_contain_text("and steadily")
    page.get_by_test_id("chat-cancel").click()
    expect(page.get_by_test_id("chat-send")).to_be_visible()

    # Reload mid-turn: the turn keeps streaming into the reloaded page.
    send(page, "another slow answer")
    last = page.get_by_test_id("assistant-message").last
    expect(last).to_contain_text("and steadily")
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    expect(page.get_by_test_id("chat-cancel")).to_be_visible()
    streamed = page.get_by_test_id("assistant-message").last
    expect(streamed).to_contain_text("and steadily and steadily and steadily")
    page.get_by_test_id("chat-cancel").click()
    expect(page.get_by_test_id("chat-send")).to_be_visible()
