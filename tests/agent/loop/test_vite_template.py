"""Real template, real runtime, real Vite and real QA tools: write -> QA fails -> self-heal ->
QA passes -> the dev server serves the change."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
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
