"""Pure logic of the preview browser: path jail, host-resolver rules, pipe framing, the event
bookkeeping of one capture. No event loop, no Chromium."""

from __future__ import annotations

import pytest
from amicable_agent.browser import PreviewAddress, PreviewPathRefused, jail_path
from amicable_agent.browser.capture import Progress, is_noise
from amicable_agent.browser.cdp import NulFramer
from amicable_agent.browser.errors import BrowserCrashed


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/", "/"), ("", "/"), ("about", "/about"), ("/a/b/", "/a/b/"), ("/a/./b", "/a/b"),
     ("/a/../b", "/b"), ("/a/%2e%2e/b", "/b"), ("/x?q=1#top", "/x?q=1#top"), ("?tab=2", "/?tab=2"),
     ("#/route", "/#/route"), ("/a//b", "/a/b")],
)  # fmt: skip
def test_paths_stay_inside_the_preview(path: str, expected: str) -> None:
    assert jail_path(path) == expected


HOSTILE_PATHS = [
    "http://evil.com/", "https://demo.preview.localhost/", "//evil.com/x", "///evil.com",
    "javascript:alert(1)", "data:text/html,hi", "file:///etc/passwd", "/..", "/../etc/passwd",
    "..", "/a/../../b", "/%2e%2e/x", "/%2E%2E/%2E%2E/x", "\\\\evil.com\\x", "/\\evil.com",
    "/a b", "/a\nb", "/a\x00", "x" * 3000, "mailto:x@y", "http:evil.com",
]  # fmt: skip


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_paths_are_refused(path: str) -> None:
    with pytest.raises(PreviewPathRefused):
        jail_path(path)
    address = PreviewAddress("preview.localhost", lambda label: f"http://{label}.x/")
    with pytest.raises(PreviewPathRefused):
        address.url_for("demo", path)


def test_urls_go_through_the_router_with_the_preview_host() -> None:
    public = PreviewAddress(
        "preview.example.com", lambda label: f"https://{label}.preview.example.com/"
    )
    assert public.url_for("demo", "/a?b") == "https://demo.preview.example.com/a?b"
    assert public.resolver_rules() == "MAP * ~NOTFOUND, EXCLUDE *.preview.example.com"
    routed = PreviewAddress(
        "preview.example.com", public.public_url, "http://amicable-preview-router.ns.svc:80"
    )
    # Plain HTTP to the router's Service, Host = the preview host as a person's browser sends it.
    assert routed.url_for("demo", "/") == "http://demo.preview.example.com:80/"
    assert routed.resolver_rules() == (
        "MAP *.preview.example.com amicable-preview-router.ns.svc, MAP * ~NOTFOUND"
    )
    v6 = PreviewAddress("p.test", public.public_url, "http://[::1]:8080")
    assert v6.resolver_rules() == "MAP *.p.test [::1], MAP * ~NOTFOUND"


def test_framer_splits_on_nul_across_chunks() -> None:
    framer = NulFramer(max_bytes=64)
    assert framer.feed(b'{"id":1}\0{"id"') == [b'{"id":1}']
    assert framer.feed(b":2}\0\0") == [b'{"id":2}', b""]
    with pytest.raises(BrowserCrashed):
        framer.feed(b"x" * 65)


def test_progress_counts_only_the_new_document() -> None:
    progress = Progress(main_frame="F")
    progress.loader_id = "new"
    progress.note("Page.lifecycleEvent", {"name": "load", "frameId": "F", "loaderId": "old"})
    progress.note("Page.lifecycleEvent", {"name": "load", "frameId": "child", "loaderId": "new"})
    assert not progress.done_loading  # a late load of about:blank, or of an iframe
    progress.note("Network.responseReceived",
                  {"type": "Document", "frameId": "F", "loaderId": "new",
                   "response": {"status": 502}})  # fmt: skip
    progress.note("Page.lifecycleEvent", {"name": "load", "frameId": "F", "loaderId": "new"})
    assert progress.done_loading
    assert progress.status == 502


def test_progress_keeps_the_app_errors_not_the_noise() -> None:
    progress = Progress(main_frame="F")
    progress.note("Runtime.consoleAPICalled",
                  {"type": "error", "args": [{"value": "bad"}, {"description": "Error: x"}]})  # fmt: skip
    progress.note("Runtime.consoleAPICalled", {"type": "log", "args": [{"value": "fine"}]})
    progress.note("Runtime.exceptionThrown",
                  {"exceptionDetails": {"exception": {"description": "TypeError: y"}}})  # fmt: skip
    progress.note("Runtime.consoleAPICalled",
                  {"type": "error", "args": [{"value": "[vite] failed to connect to websocket."}]})  # fmt: skip
    progress.note("Log.entryAdded", {"entry": {"level": "error", "source": "network",
                                               "text": "Failed to load resource"}})  # fmt: skip
    progress.note("Network.loadingFailed", {"canceled": False})
    assert progress.console_errors == ["bad Error: x", "TypeError: y"]
    assert progress.failed_requests == 1
    assert is_noise("WebSocket connection to 'wss://demo.preview.example.com/' failed")
    for i in range(20):
        progress.note("Runtime.exceptionThrown", {"exceptionDetails": {"text": f"e{i} " * 200}})
    assert len(progress.console_errors) == 10
    assert all(len(e) <= 300 for e in progress.console_errors)
