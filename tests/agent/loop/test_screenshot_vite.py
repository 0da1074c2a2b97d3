"""The model writes an element and sees it: the real template on real Vite, through the real
preview router, captured by a real Chromium, with the fake model driving the turn.

Cost: one real runtime + Vite (node_modules from the shared cache) and one Chromium, ~15 s.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

import pytest
from amicable_agent.browser import BrowserConfig, open_preview_browser
from amicable_agent.browser.process import find_chromium
from amicable_protocol.messages import UserData
from amicable_testing.fake_anthropic import Reply, Text, ToolUse
from amicable_testing.model_script import tool_results_with_images
from amicable_testing.preview_stack import open_preview_stack
from PIL import Image

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (make apt-deps)"),
]

PLANTED = """export default function App() {
  return (
    <div
      id="planted"
      style={{ position: "fixed", left: 0, top: 0, width: 300, height: 200,
               background: "rgb(0, 200, 0)", zIndex: 1000 }}
    />
  );
}
"""


def center(result: dict[str, Any]) -> tuple[tuple[int, int, int], tuple[int, int]]:
    image_block = result["content"][1]
    jpeg = base64.b64decode(image_block["source"]["data"])
    with Image.open(io.BytesIO(jpeg)) as image:
        rgb = image.convert("RGB")
        value = rgb.getpixel((150, 100))
        assert isinstance(value, tuple)
        return (value[0], value[1], value[2]), rgb.size


def green(color: tuple[int, int, int]) -> bool:
    return abs(color[0]) <= 30 and abs(color[1] - 200) <= 30 and color[2] <= 30


async def test_the_model_sees_the_element_it_just_wrote(
    fake_llm: Any, make_engine: Any, host: Any, vite_runtime: Any
) -> None:
    client, ws, preview_port = vite_runtime
    ws_path: Path = ws
    host.runtime = client
    fake, url = fake_llm
    shot = "capture_preview_screenshot"
    fake.add(
        Reply([ToolUse(shot, {"path": "/", "full_page": False})]),
        Reply([ToolUse("write_file", {"file_path": "/src/App.tsx", "content": PLANTED})]),
        Reply([ToolUse(shot, {"path": "/", "full_page": False}),
               ToolUse(shot, {"path": "/", "full_page": False, "device": "mobile"})]),
        Reply([Text("The green block is there.")]),
    )  # fmt: skip
    async with (
        open_preview_stack({"demo": f"http://127.0.0.1:{preview_port}"}) as stack,
        open_preview_browser(BrowserConfig(), stack.address()) as browser,
    ):
        assert browser is not None
        host.preview = browser.camera("demo")
        await make_engine(url).run_user_turn(host, UserData(session_id="sess-1", text="go"))
    assert "rgb(0, 200, 0)" in (ws_path / "src" / "App.tsx").read_text()
    (before,) = tool_results_with_images(fake.view(1)["messages"])
    desktop, mobile = tool_results_with_images(fake.view(3)["messages"])
    for result in (before, desktop, mobile):
        assert not result["is_error"], result["content"]
        assert "HTTP 200" in result["content"][0]["text"]
    color, size = center(before)
    assert not green(color)  # the template's own page
    color, size = center(desktop)
    assert green(color), color
    assert size == (1280, 800)
    color, size = center(mobile)
    assert green(color), color
    assert size == (390, 844)
