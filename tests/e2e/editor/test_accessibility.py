"""Accessibility and phones, in real Chromium against the fake agent: axe-core finds no serious
or critical violation on any screen in either theme; dialogs take and give back the focus;
destructive confirmations start on Cancel; the view tabs follow the arrow keys; every screen
fits a 390 and a 360 px wide phone without sideways scrolling; the device preview is scaled
to fit instead of cut off. (Sign-in, Share and History with a real agent live in
test_accessibility_real.py.)"""

from __future__ import annotations

from typing import Any

from a11y import assert_no_overflow, both_themes, phone_shots
from conftest import FakeAgentHandle, provisioned_project, screenshot
from playwright.sync_api import expect

DESKTOP = {"width": 1440, "height": 900}


def focused_testid(page: Any) -> str | None:
    value: str | None = page.evaluate("document.activeElement?.dataset?.testid ?? null")
    return value


def within_viewport(page: Any, testid: str) -> None:
    """The control is on screen (not pushed off the right edge of a phone)."""
    box = page.get_by_test_id(testid).bounding_box()
    width = page.evaluate("window.innerWidth")
    assert box is not None, f"{testid} is not rendered"
    assert box["x"] >= 0, f"{testid} is off screen: {box}"
    assert box["x"] + box["width"] <= width, f"{testid} is off screen: {box}"


def test_projects_page_and_delete_confirmation(page: Any, fake_agent: FakeAgentHandle) -> None:
    provisioned_project(fake_agent, "Recipe box")
    page.goto("/")
    expect(page.get_by_test_id("project-item")).to_have_count(1)
    expect(page.locator("h1")).to_have_count(1)
    both_themes(page, "projects")

    delete = page.get_by_test_id("project-delete")

    def open_delete() -> None:
        delete.focus()
        page.keyboard.press("Enter")

    open_delete()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    # The safe default: Enter right away cancels instead of deleting.
    assert focused_testid(page) == "dialog-cancel"
    both_themes(page, "delete confirmation", reopen=open_delete)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert focused_testid(page) == "dialog-cancel", "Tab left the dialog"
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert focused_testid(page) == "project-delete", "focus did not return to the opener"
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("project-item")).to_have_count(1)

    phone_shots(page, "projects", restore=DESKTOP)
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_test_id("project-delete").click()
    phone_shots(page, "delete-confirmation", restore=DESKTOP)


def test_editor_screens_pass_axe_and_the_tabs_rove(page: Any, fake_agent: FakeAgentHandle) -> None:
    project = provisioned_project(fake_agent, "Access")
    page.goto(f"/p/{project.slug}")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    expect(page.get_by_test_id("preview-frame")).to_be_visible()
    expect(page.locator("h1")).to_have_text("Access")
    both_themes(page, "editor, empty chat")

    # A running turn: typing dots, Stop, a spinning tool card.
    box = page.get_by_test_id("chat-input")
    box.fill("a slow answer")
    box.press("Enter")
    expect(page.get_by_test_id("chat-cancel")).to_be_visible()
    both_themes(page, "editor, turn running")
    page.get_by_test_id("chat-cancel").click()
    expect(page.get_by_test_id("chat-send")).to_be_visible()

    box.fill("Title for the preview")
    box.press("Enter")
    expect(page.get_by_test_id("assistant-message").last).to_have_attribute("data-final", "true")
    expect(page.get_by_test_id("chat-send")).to_be_visible()
    both_themes(page, "editor with tool cards")

    # The scrollable chat list is reachable from the keyboard.
    page.get_by_test_id("chat-list").focus()
    assert focused_testid(page) == "chat-list"

    # Preview/Code tabs: one Tab stop, arrows move and select.
    preview_tab = page.get_by_test_id("tab-preview")
    expect(preview_tab).to_have_attribute("tabindex", "0")
    expect(page.get_by_test_id("tab-code")).to_have_attribute("tabindex", "-1")
    preview_tab.focus()
    page.keyboard.press("ArrowRight")
    assert focused_testid(page) == "tab-code"
    expect(page.get_by_test_id("tab-code")).to_have_attribute("aria-selected", "true")
    tree = page.get_by_test_id("file-tree")
    tree.locator("[data-path='/src']").click()
    tree.locator("[data-path='/src/App.tsx']").click()
    expect(page.locator(".cm-content")).to_have_attribute("aria-label", "Contents of /src/App.tsx")
    expect(page.locator(".cm-content")).to_contain_text("Title for the preview")
    both_themes(page, "code pane")

    # The conflict dialog: a diff, Cancel first, trapped focus, Escape back to Save.
    def change_on_disk() -> None:
        project.files["/src/App.tsx"] = "export default () => <h1>Changed elsewhere</h1>;\n"

    fake_agent.call(change_on_disk)
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.insert_text("// mine\n")
    dialog = page.get_by_test_id("conflict-dialog")

    def open_conflict() -> None:
        page.get_by_test_id("code-save").focus()
        page.keyboard.press("Enter")
        expect(dialog.get_by_test_id("conflict-diff")).to_contain_text("Changed elsewhere")

    open_conflict()
    assert focused_testid(page) == "dialog-cancel"
    both_themes(page, "conflict dialog", reopen=open_conflict)
    screenshot(page, "code-conflict-diff")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert focused_testid(page) == "code-save"

    # The new-file prompt dialog.
    def open_new_file() -> None:
        page.get_by_test_id("code-new-file").click()
        expect(page.get_by_test_id("prompt-input")).to_be_focused()

    open_new_file()
    both_themes(page, "new file dialog", reopen=open_new_file)
    page.keyboard.press("Escape")
    page.get_by_test_id("tab-code").focus()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_test_id("tab-preview")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_test_id("preview-frame")).to_be_visible()


def test_phone_layout_and_the_scaled_device_preview(page: Any, fake_agent: FakeAgentHandle) -> None:
    project = provisioned_project(fake_agent, "A project with quite a long name for a phone")
    page.goto(f"/p/{project.slug}")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    box = page.get_by_test_id("chat-input")
    box.fill("Title on a phone")
    box.press("Enter")
    expect(page.get_by_test_id("assistant-message").last).to_have_attribute("data-final", "true")

    # Desktop: the Mobile frame (390×844 + bezel) is scaled into the stage, not cut off.
    page.get_by_test_id("device-mobile").click()
    frame = page.get_by_test_id("preview-frame")
    inner = page.frame_locator("[data-testid=preview-frame]").locator("#width")
    expect(inner).to_have_text("width 390")  # the app still sees a 390 px wide phone
    stage = page.locator(".preview-stage").bounding_box()
    shown = frame.bounding_box()
    assert stage is not None
    assert shown is not None
    assert shown["y"] + shown["height"] <= stage["y"] + stage["height"] + 1, (shown, stage)
    assert shown["x"] >= stage["x"] - 1
    assert shown["x"] + shown["width"] <= stage["x"] + stage["width"] + 1
    assert abs(shown["width"] / shown["height"] - 406 / 860) < 0.01
    assert float(frame.get_attribute("data-scale") or "1") < 1
    screenshot(page, "preview-mobile-scaled")
    page.get_by_test_id("device-desktop").click()

    for width, height in ((390, 844), (360, 740)):
        page.set_viewport_size({"width": width, "height": height})
        # One pane at a time: Chat, Preview and Code as tabs; header controls stay on screen.
        page.get_by_test_id("phone-tab-chat").click()
        expect(page.get_by_test_id("chat-input")).to_be_visible()
        expect(page.get_by_test_id("preview-frame")).to_be_hidden()
        for control in ("download", "theme-toggle", "history"):
            within_viewport(page, control)
        assert_no_overflow(page, f"chat at {width}")
        screenshot(page, f"phone-{width}-chat")
        page.get_by_test_id("phone-tab-chat").focus()
        page.keyboard.press("ArrowRight")
        expect(page.get_by_test_id("phone-tab-preview")).to_be_focused()
        expect(page.get_by_test_id("preview-frame")).to_be_visible()
        expect(page.get_by_test_id("chat-input")).to_be_hidden()
        assert_no_overflow(page, f"preview at {width}")
        screenshot(page, f"phone-{width}-preview")
        page.keyboard.press("ArrowRight")
        tree = page.get_by_test_id("file-tree")
        if tree.locator("[data-path='/src/App.tsx']").count() == 0:
            tree.locator("[data-path='/src']").click()
        tree.locator("[data-path='/src/App.tsx']").click()
        expect(page.locator(".cm-content")).to_contain_text("Title on a phone")
        assert_no_overflow(page, f"code at {width}")
        screenshot(page, f"phone-{width}-code")
        page.get_by_test_id("history").click()
        expect(page.get_by_test_id("history-panel")).to_be_visible()
        within_viewport(page, "history-close")
        assert_no_overflow(page, f"history at {width}")
        page.keyboard.press("Escape")
    both_themes(page, "editor on a phone")
    phone_shots(page, "editor")
