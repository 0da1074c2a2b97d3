"""Accessibility checks for the editor e2e tests: axe-core in the page, overflow, themes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import ROOT, screenshot
from playwright.sync_api import expect

AXE = ROOT / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
PHONES = ({"width": 390, "height": 844}, {"width": 360, "height": 740})


def _axe_source() -> str:
    if not AXE.is_file():
        raise AssertionError("axe-core is missing: run `make node-deps` (frontend devDependency)")
    return AXE.read_text()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())
    # Colours are measured as they end up: no half-finished theme transition or blinking dot.
    page.evaluate(
        """() => {
          if (document.getElementById('a11y-still')) return;
          const style = document.createElement('style');
          style.id = 'a11y-still';
          style.textContent = '*, *::before, *::after { transition: none !important; animation: none !important; }';
          document.head.appendChild(style);
        }"""
    )
    result = page.evaluate(
        """async () => {
          const r = await window.axe.run(document, {resultTypes: ['violations']});
          return r.violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))
          }));
        }"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def assert_accessible(page: Any, screen: str) -> None:
    """No serious or critical axe-core violation on `screen` (a name for the failure message)."""
    found = axe_violations(page)
    lines = [
        f"{v['id']} ({v['impact']}): {v['help']}\n    "
        + "\n    ".join(f"{n['target']}: {n['summary']}" for n in v["nodes"][:6])
        for v in found
    ]
    assert not found, f"axe-core on {screen}:\n" + "\n".join(lines)


def set_theme(page: Any, theme: str) -> None:
    """Switch the editor to `theme` the way a person does (the toggle), if it is not already."""
    if page.evaluate("document.documentElement.dataset.theme") == theme:
        pass
    elif page.get_by_test_id("theme-toggle").count() > 0:
        page.get_by_test_id("theme-toggle").click()
    else:  # the sign-in screen has no toggle: the choice a person made earlier is remembered
        page.evaluate(f"localStorage.setItem('amicable-theme', '{theme}')")
        page.reload()
    page.wait_for_function(f"document.documentElement.dataset.theme === '{theme}'")


def both_themes(page: Any, screen: str, reopen: Callable[[], None] | None = None) -> None:
    """axe-core on `screen` in the dark and the light theme, ending in the theme it started in.

    For a dialog (which covers the theme toggle) pass `reopen`: the dialog is closed with
    Escape, the theme switched with the toggle, and `reopen` opens it again.
    """
    start = page.evaluate("document.documentElement.dataset.theme") or "dark"
    other = "light" if start == "dark" else "dark"
    assert_accessible(page, f"{screen} ({start})")
    for theme in (other, start):
        if reopen is not None:
            for _ in range(3):  # a confirmation may sit on top of another dialog
                if page.locator("[role=dialog]").count() == 0:
                    break
                page.keyboard.press("Escape")
            expect(page.locator("[role=dialog]")).to_have_count(0)
        set_theme(page, theme)
        if reopen is not None:
            reopen()
            expect(page.locator("[role=dialog]").first).to_be_visible()
        if theme == other:
            assert_accessible(page, f"{screen} ({other})")


def assert_no_overflow(page: Any, screen: str) -> None:
    """Nothing sticks out sideways: the page is no wider than the viewport."""
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{screen}: page is {width[0]} px wide in a {width[1]} px viewport"


def phone_shots(page: Any, screen: str, restore: dict[str, int] | None = None) -> None:
    """Screenshots at 390 and 360 px wide, each without horizontal overflow."""
    for size in PHONES:
        page.set_viewport_size(size)
        page.wait_for_timeout(50)  # one layout pass after the resize (not a timing assertion)
        assert_no_overflow(page, f"{screen} at {size['width']} px")
        screenshot(page, f"phone-{size['width']}-{screen}")
    if restore:
        page.set_viewport_size(restore)
