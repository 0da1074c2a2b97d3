"""Real template, real runtime, real Vite and real QA tools: write -> QA fails -> self-heal ->
QA passes -> the dev server serves the change."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from amicable_protocol.messages import UserData
from amicable_testing.fake_anthropic import Reply, Text, ToolUse

pytestmark = pytest.mark.slow


async def test_self_heal_on_the_real_template(
    fake_llm: Any, make_engine: Any, host: Any, vite_runtime: Any
) -> None:
    client, ws, preview_port = vite_runtime
    host.runtime = client
    app = (ws / "src" / "App.tsx").read_text()
    broken = app.replace("Your app starts here", "Hello from the agent 4711").replace(
        "export default function App() {", 'const answer: number = "oops"\n\nexport default function App() {'
    )  # fmt: skip
    fake, url = fake_llm
    fake.add(
        Reply([Text("Updating the heading."), ToolUse("write_file", {"file_path": "/src/App.tsx", "content": broken})]),
        Reply([Text("Done.")]),
        Reply([ToolUse("edit_file", {"file_path": "/src/App.tsx",
                                     "old_string": 'const answer: number = "oops"\n\n', "new_string": ""})]),
        Reply([Text("Fixed the type error.")]),
    )  # fmt: skip
    engine = make_engine(url, qa_enabled=True, qa_commands=("npm run -s typecheck",))
    await engine.run_user_turn(host, UserData(session_id="sess-1", text="change the heading"))

    errors = host.of("error")
    assert [e.data.error for e in errors] == ["qa_failed"]
    assert "TS2322" in (errors[0].data.detail or "")
    assert len(fake.requests) == 4
    assert "QA checks passed" in host.traces("reasoning_summary")[0].text
    async with httpx.AsyncClient() as http:
        served = await http.get(f"http://127.0.0.1:{preview_port}/src/App.tsx", timeout=30)
    assert served.status_code == 200
    assert "Hello from the agent 4711" in served.text
    assert "oops" not in served.text


async def test_dev_server_stamps_source_locations_and_the_build_does_not(
    vite_runtime: Any,
) -> None:
    """The template's amicable-source plugin: file:line on HTML elements in dev, none in
    production; components get no stray prop."""
    _, ws, preview_port = vite_runtime
    async with httpx.AsyncClient() as http:
        served = await http.get(f"http://127.0.0.1:{preview_port}/src/App.tsx", timeout=30)
        main = await http.get(f"http://127.0.0.1:{preview_port}/src/main.tsx", timeout=30)
    assert served.status_code == 200
    lines = (ws / "src" / "App.tsx").read_text().splitlines()
    h1 = next(i for i, line in enumerate(lines, 1) if "<h1" in line)
    assert f'"data-amicable-source": "src/App.tsx:{h1}"' in served.text
    assert served.text.count('"data-amicable-source"') == 4  # main, h1, p, button
    # <StrictMode> and <App /> are components: left alone.
    assert "data-amicable-source" not in main.text

    build = await trio.run_process(
        ["node", "node_modules/vite/bin/vite.js", "build", "--logLevel", "error"],
        cwd=ws, capture_stdout=True, capture_stderr=True, check=False, start_new_session=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr.decode()[-2000:]
    bundles = list((ws / "dist" / "assets").glob("*.js"))
    assert bundles
    text = "".join(p.read_text() for p in bundles)
    assert "Your app starts here" in text
    assert "data-amicable-source" not in text
