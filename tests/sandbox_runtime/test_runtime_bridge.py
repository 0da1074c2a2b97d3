"""The templates' runtime bridge (amicable_templates/bridge/, written into every browser stack)
in real Chromium.

A parent page on one origin embeds a child page on another origin, as the editor embeds the
preview. The bridge must report errors and navigation to exactly the parent origin named by
``amicableParentOrigin``, answer probes, and tell nothing to any other origin.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "libs/templates/src/amicable_templates/stacks/vite"
BRIDGE = ROOT / "libs/templates/src/amicable_templates/bridge/amicable-runtime.js"
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

PARENT = """<!doctype html><html><body>
<script>
window.__msgs = [];
window.addEventListener("message", (e) => window.__msgs.push({origin: e.origin, data: e.data}));
</script>
<iframe id="preview" src="CHILD_URL"></iframe>
</body></html>"""

CHILD = """<!doctype html><html><head>
<script src="/amicable-runtime.js"></script>
</head><body><p>child</p>
<script>
console.error("boom", {detail: 42});
Promise.reject(new Error("rejected on purpose"));
setTimeout(() => { throw new Error("thrown on purpose"); }, 0);
setTimeout(() => history.pushState({}, "", "/next/page?x=1"), 50);
</script>
</body></html>"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[tuple[str, str, Path, Path]]:
    parent_dir, child_dir = tmp_path / "parent", tmp_path / "child"
    parent_dir.mkdir()
    child_dir.mkdir()
    (child_dir / "amicable-runtime.js").write_bytes(BRIDGE.read_bytes())
    (child_dir / "child.html").write_text(CHILD)
    servers = []
    for directory in (parent_dir, child_dir):
        handler = functools.partial(_Quiet, directory=str(directory))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    # Two origins: 127.0.0.1 for the "editor", localhost for the "preview".
    parent_origin = f"http://127.0.0.1:{servers[0].server_address[1]}"
    child_origin = f"http://localhost:{servers[1].server_address[1]}"
    try:
        yield parent_origin, child_origin, parent_dir, child_dir
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _with_page(scenario: Callable[[Any], None]) -> None:
    """Run ``scenario(page)`` in real Chromium on a thread of its own.

    Playwright's sync API refuses to start while another sync Playwright (e.g. the editor
    tests' session-wide browser) is active on this thread, so each run gets a fresh thread.
    """
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `make test` installs the Debian package")
    from playwright.sync_api import sync_playwright

    def run() -> None:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                scenario(browser.new_page())
            finally:
                browser.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result()


def test_template_loads_the_bridge_first() -> None:
    html = (TEMPLATE / "index.html").read_text()
    assert html.index('src="/amicable-runtime.js"') < html.index('src="/src/main.tsx"')


def _messages(page: Any, parent_origin: str, child_origin: str, parent_dir: Path, claimed: str):
    child_url = f"{child_origin}/child.html?amicableParentOrigin={claimed}"
    (parent_dir / "index.html").write_text(PARENT.replace("CHILD_URL", child_url))
    page.goto(f"{parent_origin}/index.html")
    return child_url


def test_bridge_reports_errors_and_location_to_the_editor_origin(
    sites: tuple[str, str, Path, Path],
) -> None:
    _with_page(lambda page: _reports_errors_and_location(page, sites))


def _reports_errors_and_location(page: Any, sites: tuple[str, str, Path, Path]) -> None:
    parent_origin, child_origin, parent_dir, _ = sites
    _messages(page, parent_origin, child_origin, parent_dir, parent_origin)
    page.wait_for_function(
        "() => window.__msgs.some(m => m.data.type === 'amicable_location'"
        " && m.data.path === '/next/page?x=1')"
    )
    page.wait_for_function(
        "() => window.__msgs.filter(m => m.data.type === 'amicable_runtime_error').length >= 3"
    )
    msgs = page.evaluate("window.__msgs")
    assert {m["origin"] for m in msgs} == {child_origin}
    errors = {
        m["data"]["payload"]["kind"]: m["data"]["payload"]
        for m in msgs
        if m["data"]["type"] == "amicable_runtime_error"
    }
    assert errors["console_error"]["message"] == "boom"
    assert "42" in errors["console_error"]["args_preview"]
    assert errors["unhandled_rejection"]["message"] == "rejected on purpose"
    assert "thrown on purpose" in errors["window_error"]["message"]
    assert errors["window_error"]["stack"]
    assert errors["window_error"]["url"].startswith(f"{child_origin}/child.html")

    # The editor's probe is answered with the same probe id.
    page.evaluate(
        "document.getElementById('preview').contentWindow.postMessage("
        f"{{type: 'amicable_runtime_probe', probe_id: 'p-1'}}, '{child_origin}')"
    )
    page.wait_for_function(
        "() => window.__msgs.some(m => m.data.type === 'amicable_runtime_probe_ack'"
        " && m.data.probe_id === 'p-1')"
    )


def test_bridge_tells_nothing_to_another_origin(sites: tuple[str, str, Path, Path]) -> None:
    _with_page(lambda page: _tells_nothing_to_another_origin(page, sites))


def _tells_nothing_to_another_origin(page: Any, sites: tuple[str, str, Path, Path]) -> None:
    parent_origin, child_origin, parent_dir, _ = sites
    # The preview was opened with somebody else's origin: postMessage must not reach us.
    _messages(page, parent_origin, child_origin, parent_dir, "http://evil.example")
    frame = page.frame_locator("#preview")
    frame.locator("p").wait_for()
    page.wait_for_timeout(300)  # give would-be messages the chance to arrive
    assert page.evaluate("window.__msgs") == []


OVERLAY_CHILD = """<!doctype html><html><head>
<script src="/amicable-runtime.js"></script>
</head><body><p>child</p>
<script>
customElements.define("vite-error-overlay", class extends HTMLElement {
  constructor() {
    super();
    this.attachShadow({mode: "open"}).innerHTML =
      '<pre class="message-body">Unexpected token (3:7) in /app/src/App.tsx</pre>' +
      '<div class="file">/srv/data/sandboxes/sb-1/workspace/src/App.tsx:3:7</div>';
  }
});
setTimeout(() => document.body.appendChild(document.createElement("vite-error-overlay")), 20);
</script>
</body></html>"""


def test_bridge_shows_project_paths_in_vites_overlay(sites: tuple[str, str, Path, Path]) -> None:
    _with_page(lambda page: _overlay_paths(page, sites))


def _overlay_paths(page: Any, sites: tuple[str, str, Path, Path]) -> None:
    parent_origin, child_origin, parent_dir, child_dir = sites
    (child_dir / "overlay.html").write_text(OVERLAY_CHILD)
    child_url = f"{child_origin}/overlay.html?amicableParentOrigin={parent_origin}"
    (parent_dir / "index.html").write_text(PARENT.replace("CHILD_URL", child_url))
    page.goto(f"{parent_origin}/index.html")
    page.wait_for_function(
        "() => window.__msgs.some(m => m.data.type === 'amicable_runtime_error'"
        " && m.data.payload.kind === 'vite_error')"
    )
    msgs = page.evaluate("window.__msgs")
    (error,) = [
        m["data"]["payload"]
        for m in msgs
        if m["data"].get("payload", {}).get("kind") == "vite_error"
    ]
    assert error["message"] == "Unexpected token (3:7) in /src/App.tsx"
    assert error["stack"] == "/src/App.tsx:3:7"
    shown = page.frame_locator("#preview").locator("vite-error-overlay .message-body")
    assert shown.inner_text() == "Unexpected token (3:7) in /src/App.tsx"


SELECT_CHILD = """<!doctype html><html><head>
<script src="/amicable-runtime.js"></script>
</head><body>
<main><section>
<h1 data-amicable-source="src/App.tsx:7">Pick   me</h1>
<button id="b" onclick="window.clicks = (window.clicks || 0) + 1">Press</button>
<p>one</p><p>two</p>
</section></main>
</body></html>"""


def test_select_mode_reports_the_clicked_element_to_the_editor_only(
    sites: tuple[str, str, Path, Path],
) -> None:
    _with_page(lambda page: _select_mode(page, sites))


def _select_mode(page: Any, sites: tuple[str, str, Path, Path]) -> None:
    parent_origin, child_origin, parent_dir, child_dir = sites
    (child_dir / "select.html").write_text(SELECT_CHILD)
    child_url = f"{child_origin}/select.html?amicableParentOrigin={parent_origin}"
    (parent_dir / "index.html").write_text(PARENT.replace("CHILD_URL", child_url))
    page.goto(f"{parent_origin}/index.html")
    frame = page.frame_locator("#preview")
    frame.locator("h1").wait_for()
    child = next(f for f in page.frames if f.url.startswith(child_origin))

    def post_from_parent(enabled: bool) -> None:
        page.evaluate(
            "([origin, enabled]) => document.getElementById('preview').contentWindow"
            ".postMessage({type: 'amicable_select_mode', enabled}, origin)",
            [child_origin, enabled],
        )

    # A page of another origin (here: the preview itself, as a nested window of a foreign
    # page would) cannot turn Select mode on: clicks still reach the app.
    child.evaluate("window.postMessage({type: 'amicable_select_mode', enabled: true}, '*')")
    frame.locator("#b").click()
    assert child.evaluate("window.clicks") == 1
    assert child.evaluate("document.documentElement.style.cursor") == ""

    post_from_parent(True)
    child.wait_for_function("() => document.documentElement.style.cursor === 'crosshair'")
    frame.locator("p").nth(1).hover()
    box = frame.locator("[data-amicable-select-box]")
    box.wait_for()
    # The click picks the element; the app's own handler never runs.
    frame.locator("#b").click()
    page.wait_for_function(
        "() => window.__msgs.some(m => m.data.type === 'amicable_element_selected')"
    )
    assert child.evaluate("window.clicks") == 1
    post_from_parent(True)
    child.wait_for_function("() => document.documentElement.style.cursor === 'crosshair'")
    frame.locator("h1").click()
    page.wait_for_function(
        "() => window.__msgs.filter(m => m.data.type === 'amicable_element_selected').length === 2"
    )
    picks = [
        m
        for m in page.evaluate("window.__msgs")
        if m["data"]["type"] == "amicable_element_selected"
    ]
    assert {m["origin"] for m in picks} == {child_origin}
    button, heading = (m["data"]["element"] for m in picks)
    assert button == {"tag": "button", "text": "Press", "selector": "#b"}
    assert heading == {
        "tag": "h1",
        "text": "Pick me",
        "selector": "body > main:nth-of-type(1) > section:nth-of-type(1) > h1:nth-of-type(1)",
        "source": "src/App.tsx:7",
    }
    # The selector finds the element again; Select mode ended with the pick.
    assert (
        child.evaluate(f"document.querySelector({heading['selector']!r}).textContent")
        == "Pick   me"
    )
    assert child.evaluate("document.documentElement.style.cursor") == ""

    # Escape leaves Select mode and says so.
    post_from_parent(True)
    child.wait_for_function("() => document.documentElement.style.cursor === 'crosshair'")
    frame.locator("h1").press("Escape")
    page.wait_for_function(
        "() => window.__msgs.some(m => m.data.type === 'amicable_select_cancelled')"
    )
