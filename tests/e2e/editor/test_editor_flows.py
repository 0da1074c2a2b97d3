"""End-to-end: the built editor in real Chromium against the scripted fake agent."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import trio
from conftest import FakeAgentHandle, provisioned_project, screenshot
from playwright.sync_api import expect


def open_editor(page: Any, slug: str) -> None:
    page.goto(f"/p/{slug}")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    expect(page.get_by_test_id("preview-frame")).to_be_visible()


def send(page: Any, text: str) -> None:
    """Type a prompt and press Enter once no turn is running (Send is shown, not Stop)."""
    expect(page.get_by_test_id("chat-send")).to_be_visible()
    box = page.get_by_test_id("chat-input")
    expect(box).to_be_enabled()
    box.fill(text)
    box.press("Enter")


def heading(page: Any) -> Any:
    return page.frame_locator("[data-testid=preview-frame]").locator("#heading")


def test_create_project_streams_a_turn_and_updates_the_preview(
    page: Any, fake_agent: FakeAgentHandle
) -> None:
    provisioned_project(fake_agent, "Recipe box")
    page.goto("/")
    expect(page.get_by_test_id("project-item")).to_have_count(1)
    page.get_by_test_id("new-project-prompt").fill("Welcome to the habit tracker")
    page.get_by_test_id("new-project-name").fill("Habit tracker")
    screenshot(page, "projects")
    gate = fake_agent.call(trio.Event)
    fake_agent.call(setattr, fake_agent.agent, "provisioning_gate", gate)
    page.get_by_test_id("new-project").click()

    expect(page).to_have_url(re.compile(r"/p/habit-tracker$"))
    expect(page.get_by_test_id("provisioning")).to_be_visible()
    expect(page.get_by_test_id("stage-starting_runtime")).to_have_class(re.compile("active"))
    expect(page.get_by_test_id("stage-creating")).to_have_class(re.compile("done"))
    screenshot(page, "provisioning")
    fake_agent.call(gate.set)

    # The first prompt is sent once the sandbox is ready; text streams, tools show as cards.
    expect(page.get_by_test_id("user-message")).to_have_text("Welcome to the habit tracker")
    bubble = page.get_by_test_id("assistant-message").last
    expect(bubble).to_contain_text("I'll update the heading")
    expect(page.get_by_test_id("chat-cancel")).to_be_visible()
    write_card = bubble.locator("[data-testid=tool-card][data-tool=write_file]")
    expect(write_card).to_have_attribute("data-status", "ok")
    expect(bubble.get_by_test_id("ui-steps")).to_contain_text("Update the heading")
    expect(bubble).to_have_attribute("data-final", "true")
    expect(bubble).to_contain_text("the heading is updated")
    expect(bubble.get_by_test_id("usage")).to_contain_text("1,200 in")
    expect(bubble.get_by_test_id("reasoning")).to_contain_text("What Amicable saw")
    expect(page.get_by_test_id("chat-send")).to_be_visible()

    # update_completed reloads the preview, which now shows the change.
    expect(heading(page)).to_have_text("Welcome to the habit tracker")
    write_card.locator(".tool-head").click()
    expect(write_card.get_by_test_id("tool-body")).to_contain_text("/src/App.tsx")
    screenshot(page, "editor-chat")
    page.get_by_test_id("theme-toggle").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    screenshot(page, "editor-chat-dark")


def test_device_toggles_resize_the_preview(page: Any, fake_agent: FakeAgentHandle) -> None:
    project = provisioned_project(fake_agent, "Devices")
    open_editor(page, project.slug)
    frame = page.get_by_test_id("preview-frame")
    inner_width = page.frame_locator("[data-testid=preview-frame]").locator("#width")
    desktop = frame.bounding_box()["width"]
    assert desktop > 800

    page.get_by_test_id("device-mobile").click()
    expect(inner_width).to_have_text("width 390")
    # 8px device bezel on each side, scaled down to fit the stage's height (see data-scale).
    scale = float(frame.get_attribute("data-scale") or "1")
    assert round(frame.bounding_box()["width"]) == round((390 + 16) * scale)
    screenshot(page, "preview-mobile")

    page.get_by_test_id("device-tablet").click()
    expect(inner_width).to_have_text("width 768")

    page.get_by_test_id("device-desktop").click()
    expect(inner_width).to_have_text(f"width {round(desktop)}")

    # Narrow windows stack the chat under the preview instead of squeezing both.
    page.set_viewport_size({"width": 760, "height": 900})
    chat = page.locator(".chat-panel").bounding_box()
    preview = frame.bounding_box()
    assert chat["y"] >= preview["y"] + preview["height"] - 1
    assert chat["width"] == pytest.approx(760, abs=1)
    screenshot(page, "editor-narrow")


def test_code_pane_edit_save_conflict_and_agent_notice(
    page: Any, fake_agent: FakeAgentHandle
) -> None:
    project = provisioned_project(fake_agent, "Code pane")
    open_editor(page, project.slug)
    page.get_by_test_id("tab-code").click()
    tree = page.get_by_test_id("file-tree")
    tree.locator("[data-path='/src']").click()
    tree.locator("[data-path='/src/App.tsx']").click()
    editor = page.locator(".cm-content")
    expect(editor).to_contain_text("Hello from Amicable")

    # Edit and save; the preview shows the saved file.
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("export default () => <h1>Edited in the code pane</h1>;\n")
    expect(page.get_by_test_id("code-dirty")).to_be_visible()
    screenshot(page, "code-pane")
    page.get_by_test_id("code-save").click()
    expect(page.get_by_test_id("code-message")).to_contain_text("Saved /src/App.tsx")
    page.get_by_test_id("tab-preview").click()
    page.get_by_test_id("preview-reload").click()
    expect(heading(page)).to_have_text("Edited in the code pane")

    # Someone else writes the file: saving now asks before overwriting.
    def change_on_disk() -> None:
        project.files["/src/App.tsx"] = "export default () => <h1>Changed elsewhere</h1>;\n"

    fake_agent.call(change_on_disk)
    page.get_by_test_id("tab-code").click()
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.insert_text("// mine\n")
    page.get_by_test_id("code-save").click()
    dialog = page.get_by_test_id("conflict-dialog")
    expect(dialog).to_be_visible()
    screenshot(page, "code-conflict")
    dialog.get_by_test_id("dialog-confirm").click()
    expect(page.get_by_test_id("code-message")).to_contain_text("Saved")
    saved = fake_agent.call(lambda: project.files["/src/App.tsx"])
    assert saved == "export default () => <h1>Edited in the code pane</h1>;\n// mine\n"

    # The agent rewrites the open file: the pane says so.
    send(page, "Agent heading")
    expect(page.get_by_test_id("code-agent-changed")).to_be_visible()
    page.get_by_test_id("code-reload").click()
    expect(page.locator(".cm-content")).to_contain_text("Agent heading")


def test_code_pane_creates_renames_and_deletes_files(
    page: Any, fake_agent: FakeAgentHandle
) -> None:
    project = provisioned_project(fake_agent, "Files")
    open_editor(page, project.slug)
    page.get_by_test_id("tab-code").click()
    page.get_by_test_id("code-new-file").click()
    page.get_by_test_id("prompt-input").fill("notes.md")
    page.get_by_test_id("dialog-confirm").click()
    expect(page.get_by_test_id("code-path")).to_contain_text("/notes.md")
    page.get_by_test_id("code-rename").click()
    page.get_by_test_id("prompt-input").fill("todo.md")
    page.get_by_test_id("dialog-confirm").click()
    expect(page.get_by_test_id("file-tree").locator("[data-path='/todo.md']")).to_be_visible()
    page.get_by_test_id("code-delete").click()
    page.get_by_test_id("dialog-confirm").click()
    expect(page.get_by_test_id("file-tree").locator("[data-path='/todo.md']")).to_have_count(0)
    files = fake_agent.call(lambda: sorted(project.files))
    assert "/todo.md" not in files
    assert "/notes.md" not in files


def test_hitl_approve_edit_and_reject(page: Any, fake_agent: FakeAgentHandle) -> None:
    project = provisioned_project(fake_agent, "Approvals")
    open_editor(page, project.slug)

    send(page, "please approve a build")
    panel = page.get_by_test_id("hitl-panel")
    expect(panel).to_contain_text("npm run build")
    expect(page.get_by_test_id("chat-input")).to_be_disabled()
    screenshot(page, "approval")
    panel.get_by_test_id("hitl-approve").click()
    expect(panel).to_have_count(0)
    bubble = page.get_by_test_id("assistant-message").last
    expect(bubble).to_contain_text("Approved: ran npm run build")
    expect(bubble.locator("[data-tool=execute]")).to_have_attribute("data-status", "ok")
    expect(page.get_by_test_id("chat-input")).to_be_enabled()

    # Edit the arguments: invalid JSON blocks approval, a valid edit is sent as `edit`.
    send(page, "approve with a different command")
    panel = page.get_by_test_id("hitl-panel")
    panel.get_by_test_id("hitl-edit").click()
    args = panel.get_by_test_id("hitl-edit-args")
    args.fill("{not json")
    expect(panel.get_by_test_id("hitl-edit-error")).to_be_visible()
    expect(panel.get_by_test_id("hitl-approve")).to_be_disabled()
    args.fill('{"command": "npm run lint"}')
    panel.get_by_test_id("hitl-approve").click()
    expect(page.get_by_test_id("assistant-message").last).to_contain_text(
        "Approved: ran npm run lint"
    )

    send(page, "approve it again")
    panel = page.get_by_test_id("hitl-panel")
    panel.get_by_test_id("hitl-reject-message").fill("not now")
    panel.get_by_test_id("hitl-reject").click()
    bubble = page.get_by_test_id("assistant-message").last
    expect(bubble).to_contain_text("rejected")
    expect(bubble.locator("[data-tool=execute]")).to_have_attribute("data-status", "error")

    decisions = fake_agent.call(
        lambda: [
            m["data"]["response"]["decisions"]
            for m in project.received
            if m["type"] == "hitl_response"
        ]
    )
    assert decisions == [
        [{"type": "approve"}],
        [
            {
                "type": "edit",
                "edited_action": {"name": "execute", "args": {"command": "npm run lint"}},
            }
        ],
        [{"type": "reject", "message": "not now"}],
    ]


def test_stop_cancels_the_running_turn(page: Any, fake_agent: FakeAgentHandle) -> None:
    project = provisioned_project(fake_agent, "Stop")
    open_editor(page, project.slug)
    send(page, "a slow one")
    bubble = page.get_by_test_id("assistant-message").last
    expect(bubble).to_contain_text("tick 2")
    page.get_by_test_id("chat-cancel").click()
    # One calm note, not an error (the agent's `cancelled` error and the local Stop agree).
    expect(page.get_by_test_id("stopped-note")).to_have_count(1)
    expect(page.get_by_test_id("error-message")).to_have_count(0)
    expect(page.get_by_test_id("chat-send")).to_be_visible()
    expect(page.get_by_test_id("chat-input")).to_be_enabled()
    sent = fake_agent.call(lambda: [m["type"] for m in project.received])
    assert "cancel" in sent


def test_reload_mid_turn_reattaches_to_the_running_turn(
    page: Any, fake_agent: FakeAgentHandle
) -> None:
    project = provisioned_project(fake_agent, "Reload")
    open_editor(page, project.slug)
    send(page, "another slow one")
    expect(page.get_by_test_id("assistant-message").last).to_contain_text("tick 3")
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    bubble = page.get_by_test_id("assistant-message").last
    # History (the prompt) is restored and the same turn keeps streaming into the page.
    expect(page.get_by_test_id("user-message")).to_have_text("another slow one")
    expect(bubble).to_contain_text("tick 8")
    expect(page.get_by_test_id("chat-cancel")).to_be_visible()
    page.get_by_test_id("chat-input").press("Escape")  # Esc stops, like the Stop button
    expect(page.get_by_test_id("chat-send")).to_be_visible()


def test_errors_are_readable(page: Any, fake_agent: FakeAgentHandle) -> None:
    project = provisioned_project(fake_agent, "Errors")
    open_editor(page, project.slug)
    send(page, "this will fail")
    error = page.get_by_test_id("error-message")
    expect(error).to_have_attribute("data-code", "qa_failed")
    expect(error).to_contain_text("Ask the agent to fix the errors")
    expect(error.get_by_test_id("qa-results")).to_contain_text("npm run build")


def test_projects_rename_and_delete_with_confirmation(
    page: Any, fake_agent: FakeAgentHandle
) -> None:
    provisioned_project(fake_agent, "Old name")
    provisioned_project(fake_agent, "Keep me")
    page.goto("/")
    items = page.get_by_test_id("project-item")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("Keep me")  # most recent first

    target = items.filter(has_text="Old name")
    target.get_by_test_id("project-rename").click()
    page.get_by_test_id("rename-input").fill("New name")
    page.get_by_test_id("rename-save").click()
    expect(page.get_by_test_id("project-item").filter(has_text="New name")).to_contain_text(
        "/new-name"
    )

    page.get_by_test_id("project-item").filter(has_text="New name").get_by_test_id(
        "project-delete"
    ).click()
    page.get_by_test_id("dialog-cancel").click()
    expect(page.get_by_test_id("project-item")).to_have_count(2)
    page.get_by_test_id("project-item").filter(has_text="New name").get_by_test_id(
        "project-delete"
    ).click()
    page.get_by_test_id("dialog-confirm").click()
    expect(page.get_by_test_id("project-item")).to_have_count(1)
    page.reload()
    expect(page.get_by_test_id("project-item")).to_have_count(1)
    assert fake_agent.call(lambda: [p.name for p in fake_agent.agent.projects.values()]) == [
        "Keep me"
    ]


# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a5f1d3e10000000049454e44ae426082"
)


def test_keyboard_and_image_attachments(page: Any, fake_agent: FakeAgentHandle) -> None:
    project = provisioned_project(fake_agent, "Attachments")
    open_editor(page, project.slug)
    page.get_by_test_id("chat-attach-input").set_input_files(
        files=[{"name": "dot.png", "mimeType": "image/png", "buffer": PNG}]
    )
    expect(page.get_by_test_id("attachments").locator("img")).to_have_count(1)
    box = page.get_by_test_id("chat-input")
    box.fill("line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    box.press("Enter")
    expect(page.get_by_test_id("user-message").locator("img")).to_have_count(1)
    expect(page.get_by_test_id("assistant-message").last).to_have_attribute("data-final", "true")

    users = fake_agent.call(lambda: [m["data"] for m in project.received if m["type"] == "user"])
    assert len(users) == 1
    assert users[0]["text"] == "line one\nline two"
    blocks = users[0]["content_blocks"]
    assert blocks[0] == {"type": "text", "text": "line one\nline two"}
    assert blocks[1]["type"] == "image"
    assert blocks[1]["mime_type"] == "image/png"
    assert base64.b64decode(blocks[1]["base64"]) == PNG
    assert users[0]["ui_context"] == {
        "active_view": "preview",
        "preview_path": "/",
        "device_type": "desktop",
    }
    assert users[0]["session_id"] == project.project_id


def test_reconnects_after_an_abnormal_close_and_sends_init_again(
    page: Any, fake_agent: FakeAgentHandle
) -> None:
    project = provisioned_project(fake_agent, "Reconnect")
    open_editor(page, project.slug)
    send(page, "drop the connection please")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "waiting")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    inits = fake_agent.call(lambda: [m for m in project.received if m["type"] == "init"])
    assert len(inits) == 2
    assert all(m["data"]["session_id"] == project.project_id for m in inits)
    # The restored session still works.
    send(page, "Back again")
    expect(heading(page)).to_have_text("Back again")


def test_preview_runtime_errors_are_forwarded_once(page: Any, fake_agent: FakeAgentHandle) -> None:
    project = provisioned_project(fake_agent, "Runtime errors")
    open_editor(page, project.slug)
    address = page.get_by_test_id("preview-path")
    address.fill("/boom")
    address.press("Enter")
    frame = page.frame_locator("[data-testid=preview-frame]")
    expect(frame.locator("#path")).to_have_text("/boom")

    def runtime_errors() -> list[dict[str, Any]]:
        return [m["data"] for m in project.received if m["type"] == "runtime_error"]

    # The fake answers a runtime_error with runtime_auto_heal_paused: wait for that bubble.
    expect(page.get_by_test_id("error-message")).to_have_attribute(
        "data-code", "runtime_auto_heal_paused"
    )
    reports = fake_agent.call(runtime_errors)
    assert len(reports) == 1
    error = reports[0]["error"]
    assert error["kind"] == "window_error"
    assert error["message"] == "boom is not defined"
    assert error["fingerprint"].startswith("rt_")

    # The same error again (preview reload) is not reported twice.
    page.get_by_test_id("preview-reload").click()
    expect(frame.locator("#path")).to_have_text("/boom")
    send(page, "Still fine")
    expect(page.get_by_test_id("assistant-message").last).to_have_attribute("data-final", "true")
    assert len(fake_agent.call(runtime_errors)) == 1
    expect(page.get_by_test_id("error-message")).to_have_count(1)


def test_a_preview_without_the_runtime_bridge_is_reported_once(
    page: Any, fake_agent: FakeAgentHandle
) -> None:
    project = provisioned_project(fake_agent, "Bridge probe")
    open_editor(page, project.slug)
    frame_el = page.get_by_test_id("preview-frame")
    frame = page.frame_locator("[data-testid=preview-frame]")

    def runtime_errors() -> list[dict[str, Any]]:
        return [m["data"]["error"] for m in project.received if m["type"] == "runtime_error"]

    # A page with the real bridge answers the probe: nothing is reported.
    expect(frame.locator("#path")).to_have_text("/")
    expect(frame_el).to_have_attribute("data-bridge", "ok")
    assert fake_agent.call(runtime_errors) == []

    # A page without it: after the retry, exactly one runtime_bridge_missing.
    address = page.get_by_test_id("preview-path")
    address.fill("/no-bridge")
    address.press("Enter")
    expect(frame.locator("#path")).to_have_text("/no-bridge")
    expect(frame_el).to_have_attribute("data-bridge", "missing", timeout=15_000)
    expect(page.get_by_test_id("error-message")).to_have_attribute(
        "data-code", "runtime_auto_heal_paused"
    )
    reports = fake_agent.call(runtime_errors)
    assert [r["kind"] for r in reports] == ["runtime_bridge_missing"]
    assert reports[0]["url"].split("?")[0].endswith("/no-bridge")
    assert reports[0]["extra"]["trigger"] == "load"
    assert reports[0]["extra"]["probe_id"].startswith("probe_")
    assert "amicable-runtime.js" in reports[0]["message"]

    # Reloading the same broken page is de-duplicated; going back to a bridged page is quiet.
    page.get_by_test_id("preview-reload").click()
    expect(frame_el).to_have_attribute("data-bridge", "missing", timeout=15_000)
    address.fill("/")
    address.press("Enter")
    expect(frame.locator("#path")).to_have_text("/")
    expect(frame_el).to_have_attribute("data-bridge", "ok")
    assert len(fake_agent.call(runtime_errors)) == 1
    expect(page.get_by_test_id("error-message")).to_have_count(1)
