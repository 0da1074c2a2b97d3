"""Screenshots in turns: the tool's image reaches the model, auto-heal turns carry one, QA
can show the result once, old screenshots leave the history. Real Chromium, real router, a
scripted site; the fake model API.

Cost: three tests start a Chromium (~2 s each); the rest is pure.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import pytest
import trio
from amicable_agent.browser import BrowserConfig, open_preview_browser
from amicable_agent.browser.process import find_chromium
from amicable_agent.loop.visual import SCREENSHOT_MARK, SHED_TEXT, shed_old_screenshots
from amicable_protocol.messages import RuntimeErrorData, RuntimeErrorInfo, UserData
from amicable_testing.fake_anthropic import Reply, Text, ToolUse
from amicable_testing.model_script import tool_results_with_images
from amicable_testing.preview_stack import StubSite, open_preview_stack

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

browser_needed = pytest.mark.skipif(find_chromium() is None, reason="needs Chromium")
PAGE = b"<!doctype html><body style='margin:0;background:rgb(0,0,200)'><h1>stub</h1></body>"


@pytest.fixture
async def camera(nursery: trio.Nursery) -> AsyncIterator[Any]:
    site = StubSite({"/": (200, "text/html", PAGE), "/broken": (200, "text/html", PAGE)})
    port = await nursery.start(site.serve)
    async with (
        open_preview_stack({"demo": f"http://127.0.0.1:{port}"}) as stack,
        open_preview_browser(BrowserConfig(), stack.address()) as browser,
    ):
        assert browser is not None
        yield browser.camera("demo")


def images_in(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, dict):
        if content.get("type") == "image":
            return [content]
        return images_in(content.get("content"))
    if isinstance(content, list):
        return [image for item in content for image in images_in(item)]
    return []


@pytest.mark.slow
@browser_needed
async def test_an_autoheal_turn_carries_a_screenshot(
    fake_llm: Any, make_engine: Any, host: Any, camera: Any
) -> None:
    host.preview = camera
    fake, url = fake_llm
    fake.add(Reply([Text("Fixed.")]), Reply([Text("Fixed again.")]))
    error = RuntimeErrorInfo(kind="window_error", message="TypeError: x is undefined",
                             url="http://demo.preview.localhost:5173/broken?tab=1")  # fmt: skip
    engine = make_engine(url, auto_heal_cooldown_s=0)
    await engine.run_runtime_error(host, RuntimeErrorData(session_id="sess-1", error=error))
    request = fake.view(0)["messages"][-1]
    (image,) = images_in(request["content"])
    jpeg = base64.b64decode(image["source"]["data"])
    assert jpeg[:2] == b"\xff\xd8"
    text = request["content"][0]["text"]
    assert "TypeError: x is undefined" in text
    assert f"{SCREENSHOT_MARK}http://demo.preview.localhost:" in text
    assert "/broken?tab=1 (desktop, 1280x800 JPEG" in text  # the failing page, its viewport
    tools = {t["name"] for t in fake.view(0)["tools"]}
    assert "capture_preview_screenshot" in tools
    assert "capture_preview_screenshot" in fake.view(0)["system"][0]["text"]

    # Switched off: the same error goes without an image.
    engine = make_engine(url, auto_heal_cooldown_s=0, autoheal_screenshot=False)
    await engine.run_runtime_error(host, RuntimeErrorData(session_id="sess-1", error=error))
    assert images_in(fake.view(1)["messages"][-1]["content"]) == []


@pytest.mark.slow
@browser_needed
async def test_the_tool_result_is_text_and_image_and_qa_looks_once(
    fake_llm: Any, make_engine: Any, host: Any, camera: Any
) -> None:
    host.preview = camera
    fake, url = fake_llm
    fake.add(
        Reply([ToolUse("capture_preview_screenshot", {"path": "/", "device": "mobile"}),
               ToolUse("write_file", {"file_path": "/src/x.ts", "content": "x"})]),
        Reply([Text("Done.")]),
        Reply([Text("Looks right.")]),
    )  # fmt: skip
    engine = make_engine(url, qa_enabled=True, qa_commands=("true",), qa_screenshot=True)
    await engine.run_user_turn(host, UserData(session_id="sess-1", text="go"))
    results = tool_results_with_images(fake.view(1)["messages"])
    shot = results[0]["content"]
    assert shot[0]["type"] == "text"
    assert "mobile, 390x" in shot[0]["text"]
    assert shot[1]["type"] == "image"
    # The trace shows the call like any other, without the image data.
    ends = [t for t in host.traces("tool_end") if t.tool_name == "capture_preview_screenshot"]
    assert ends
    assert "base64" not in str(ends[0].output)
    # QA passed, so the model was shown the result once, then answered.
    assert len(fake.requests) == 3
    look = fake.view(2)["messages"][-1]
    assert look["content"][0]["text"].startswith("QA passed. " + SCREENSHOT_MARK)
    assert len(images_in(look["content"])) == 1
    assert host.types()[-1] == "update_completed"


@pytest.mark.slow
@browser_needed
async def test_a_failed_screenshot_is_an_error_result(
    fake_llm: Any, make_engine: Any, host: Any, camera: Any
) -> None:
    host.preview = camera
    fake, url = fake_llm
    fake.add(Reply([ToolUse("capture_preview_screenshot", {"path": "http://evil.com/"}),
                    ToolUse("capture_preview_screenshot", {"device": "watch"})]),
             Reply([Text("ok")]))  # fmt: skip
    await make_engine(url).run_user_turn(host, UserData(session_id="sess-1", text="go"))
    first, second = fake.view(1)["messages"][-1]["content"]
    assert first["is_error"]
    assert "not URLs" in first["content"]
    assert second["is_error"]
    assert "device" in second["content"]


async def test_without_a_browser_the_tool_is_not_offered(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    fake.add(Reply([Text("hi")]))
    await make_engine(url).run_user_turn(host, UserData(session_id="sess-1", text="go"))
    tools = {t["name"] for t in fake.view(0)["tools"]}
    assert "capture_preview_screenshot" not in tools
    assert not {"web_fetch", "web_search"} & tools  # off unless enabled


def shot_blocks(n: int) -> list[dict[str, Any]]:
    return [{"type": "text", "text": f"{SCREENSHOT_MARK}/ #{n}"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                         "data": f"IMG{n}"}}]  # fmt: skip


def test_only_the_newest_screenshots_stay_in_the_history() -> None:
    own = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "MINE"}}
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "like this"}, own]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a",
                                      "content": shot_blocks(1)}]},
        {"role": "user", "content": shot_blocks(2)},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "b",
                                      "content": shot_blocks(3)}]},
    ]  # fmt: skip
    assert shed_old_screenshots(messages) == 1
    assert messages[1]["content"][0]["content"][1] == {"type": "text", "text": SHED_TEXT}
    assert messages[2]["content"][1]["source"]["data"] == "IMG2"
    assert messages[3]["content"][0]["content"][1]["source"]["data"] == "IMG3"
    assert messages[0]["content"][1] is own  # the person's image is theirs to keep
    assert shed_old_screenshots(messages) == 0
