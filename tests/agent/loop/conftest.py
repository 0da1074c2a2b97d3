"""Helpers for the agent-loop tests: an in-memory store and session host, the fake model.

Every test that uses ``fake_llm`` and ``make_engine`` runs twice: against the fake Messages
API (``anthropic``) and the fake Chat Completions API (``openai``), driven by the same
script; ``fake.view(i)`` reads request ``i`` in the Messages format either way.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from amicable_agent.loop.engine import Engine
from amicable_agent.loop.llm import LlmClient
from amicable_agent.loop.settings import LoopSettings
from amicable_agent.sandboxes.runtime_client import open_runtime_client
from amicable_protocol.messages import (
    MessageType,
    PermissionMode,
    ProjectInfo,
    ServerMessage,
    ThinkingLevel,
    server_message_to_json,
)
from amicable_testing import MemorySpend
from amicable_testing.fake_anthropic import FakeAnthropic
from amicable_testing.fake_openai import FakeOpenAI
from amicable_testing.model_script import ScriptedServer
from amicable_testing.workspace_runtime import WorkspaceRuntime


class MemoryStore(MemorySpend):
    """A ConversationStore in memory; values are deep-copied like a real store would."""

    def __init__(self) -> None:
        super().__init__()
        self.conversations: dict[str, list[dict[str, Any]]] = {}
        self.chat: dict[str, list[tuple[str, str]]] = {}
        self.state: dict[tuple[str, str], Any] = {}
        self.saves = 0

    async def load_conversation(self, project_id: str) -> list[dict[str, Any]]:
        await trio.lowlevel.checkpoint()
        return copy.deepcopy(self.conversations.get(project_id, []))

    async def save_conversation(self, project_id: str, messages: list[dict[str, Any]]) -> None:
        await trio.lowlevel.checkpoint()
        json.dumps(messages)  # must be JSON
        self.saves += 1
        self.conversations[project_id] = copy.deepcopy(messages)

    async def append_chat(self, project_id: str, role: str, text: str) -> None:
        await trio.lowlevel.checkpoint()
        self.chat.setdefault(project_id, []).append((role, text))

    async def load_state(self, project_id: str, key: str) -> Any:
        await trio.lowlevel.checkpoint()
        return copy.deepcopy(self.state.get((project_id, key)))

    async def save_state(self, project_id: str, key: str, value: Any) -> None:
        await trio.lowlevel.checkpoint()
        if value is None:
            self.state.pop((project_id, key), None)
        else:
            json.dumps(value)
            self.state[(project_id, key)] = copy.deepcopy(value)


PROJECT = ProjectInfo("proj-1", "Demo", "demo", "vite-react")


@attrs.define
class Host:
    """A SessionHost that records every message it would broadcast."""

    runtime: Any
    store: MemoryStore
    permission_mode: PermissionMode = "default"
    thinking_level: ThinkingLevel = "none"
    session_id: str = "sess-1"
    project: ProjectInfo = PROJECT
    sent: list[ServerMessage] = attrs.field(factory=list)
    changed: trio.Event = attrs.field(factory=trio.Event)
    preview: Any = None  # a PreviewCamera when the test gives the turn a browser

    async def send(self, type: MessageType, data: Any, *, msg_id: str | None = None) -> None:
        await trio.lowlevel.checkpoint()
        kwargs = {"msg_id": msg_id} if msg_id else {}
        msg = ServerMessage(type=type, data=data, session_id=self.session_id,
                            **({"id": kwargs["msg_id"]} if kwargs else {}))  # fmt: skip
        server_message_to_json(msg)  # must encode
        self.sent.append(msg)
        self.changed.set()
        self.changed = trio.Event()

    def types(self) -> list[str]:
        return [str(m.type) for m in self.sent]

    def of(self, type_: str) -> list[ServerMessage]:
        return [m for m in self.sent if str(m.type) == type_]

    def traces(self, phase: str) -> list[Any]:
        return [m.data for m in self.of("trace_event") if m.data.phase == phase]  # type: ignore[union-attr]

    async def wait_for(self, predicate: Any) -> None:
        with trio.fail_after(30):
            while not predicate(self):
                await self.changed.wait()


PROVIDERS = ("anthropic", "openai")


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    """The model provider a turn test runs against (each test runs once per provider)."""
    return str(request.param)


@pytest.fixture
async def fake_llm(nursery: trio.Nursery, provider: str) -> tuple[ScriptedServer, str]:
    fake: ScriptedServer = FakeAnthropic() if provider == "anthropic" else FakeOpenAI()
    base_url = await nursery.start(fake.serve)
    return fake, base_url


def error_text(fake: ScriptedServer, text: str) -> str:
    """A failed tool result's text as the model receives it: Chat Completions has no
    ``is_error``, so the text says so."""
    if fake.provider == "openai" and not text.startswith("Error"):
        return f"Error: {text}"
    return text


def continued_text(fake: ScriptedServer, index: int) -> str:
    """The partial answer request ``index`` asks the model to continue (Messages: the
    assistant prefill; Chat Completions: the assistant message before the request to go
    on)."""
    messages = fake.view(index)["messages"]
    last = messages[-1] if fake.provider == "anthropic" else messages[-2]
    assert last["role"] == "assistant", messages[-2:]
    return str(last["content"][0]["text"])


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "App.tsx").write_text(
        "export default function App() {\n  return <h1>Hi</h1>;\n}\n"
    )
    (root / "AGENTS.md").write_text("Always use TypeScript.\n")
    (root / "package.json").write_text(json.dumps({"name": "demo", "scripts": {}}))
    return root


def settings_for(base_url: str, provider: str = "anthropic", **overrides: Any) -> LoopSettings:
    base: dict[str, Any] = {
        "provider": provider,
        "model": "gpt-4.1" if provider == "openai" else "claude-sonnet-5-5",
        "api_key": "sk-ant-test-key-123456",
        "base_url": base_url,
        "llm_retry_base_s": 0.01,
        "llm_retry_max_s": 0.05,
        "partial_interval_s": 0.0,
        "qa_enabled": False,
    }
    base.update(overrides)
    return LoopSettings(**base)


@pytest.fixture
async def make_engine(provider: str) -> AsyncIterator[Any]:
    engines: list[Engine] = []

    def make(base_url: str, **overrides: Any) -> Engine:
        settings = settings_for(base_url, provider, **overrides)
        engine = Engine(settings, llm=LlmClient(settings))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.aclose()


@pytest.fixture
def host(workspace: Path) -> Host:
    return Host(runtime=WorkspaceRuntime(workspace), store=MemoryStore())


TOKEN = "loop-test-token-0123456789"


@pytest.fixture
async def real_runtime_url(
    nursery: trio.Nursery, workspace: Path, tmp_path: Path
) -> AsyncIterator[str]:
    ready = tmp_path / "ready.json"
    exe = str(Path(sys.executable).parent / "amicable-sandbox-runtime")
    env = {**os.environ, "AMICABLE_RUNTIME_TOKEN": TOKEN, "AMICABLE_RUNTIME_HOST": "127.0.0.1"}
    proc = await trio.lowlevel.open_process(
        [exe, "--no-preview", "--port", "0", "--ready-file", str(ready), "--workspace",
         str(workspace)],
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        with trio.fail_after(30):
            while not ready.exists():
                await trio.sleep(0.05)
        port = json.loads(ready.read_text())["port"]
        yield f"http://127.0.0.1:{port}"
    finally:
        with trio.CancelScope(shield=True):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@pytest.fixture
async def real_runtime(real_runtime_url: str) -> AsyncIterator[Any]:
    """The real HTTP runtime client connected to :func:`real_runtime_url`."""
    async with open_runtime_client(real_runtime_url, TOKEN) as client:
        yield client


# --- a real template with real Vite (used by test_vite_template and test_screenshot_vite) ---

REPO = Path(__file__).resolve().parents[3]
VITE_TOKEN = "vite-test-token-0123456789"
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
    env = {**os.environ, "AMICABLE_RUNTIME_TOKEN": VITE_TOKEN, "AMICABLE_RUNTIME_HOST": "127.0.0.1",
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
        async with open_runtime_client(f"http://127.0.0.1:{port}", VITE_TOKEN) as client:
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
