"""Real template, real runtime, real Vite and real QA tools: write -> QA fails -> self-heal ->
QA passes -> the dev server serves the change."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from amicable_agent.sandboxes.runtime_client import open_runtime_client
from amicable_protocol.messages import UserData
from amicable_testing.fake_anthropic import Reply, Text, ToolUse

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
TOKEN = "vite-test-token-0123456789"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def vite_runtime(tmp_path: Path) -> AsyncIterator[tuple[Any, Path, int]]:
    ws = tmp_path / "app"
    # node_modules come from the runtime's cache (npm ci once per package-lock hash).
    await trio.run_process(
        [str(BIN / "amicable-sandbox-runtime"), "init-workspace", str(ws),
         "--cache-dir", str(REPO / ".cache" / "node_modules")],
        stdout=-3, start_new_session=True,
    )  # fmt: skip
    ready = tmp_path / "ready.json"
    preview_port = _free_port()
    env = {**os.environ, "AMICABLE_RUNTIME_TOKEN": TOKEN, "AMICABLE_RUNTIME_HOST": "127.0.0.1",
           "AMICABLE_PREVIEW_HOST": "127.0.0.1", "AMICABLE_PREVIEW_PORT": str(preview_port)}  # fmt: skip
    proc = await trio.lowlevel.open_process(
        [str(BIN / "amicable-sandbox-runtime"), "--port", "0", "--ready-file", str(ready),
         "--workspace", str(ws)],
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        with trio.fail_after(60):
            while not ready.exists():
                await trio.sleep(0.05)
        port = json.loads(ready.read_text())["port"]
        async with open_runtime_client(f"http://127.0.0.1:{port}", TOKEN) as client:
            with trio.fail_after(120):
                while not (await client.preview_status()).ready:
                    await trio.sleep(0.2)
            yield client, ws, preview_port
    finally:
        with trio.CancelScope(shield=True):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with trio.move_on_after(10):
                await proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


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
