"""Checkpoints are taken in the background: a slow one never holds up the next prompt, an
interrupted turn's files get their own "interrupted: …" checkpoint, and a restore waits for
the checkpoint still being taken. The real server and LLM loop against the fake model, tools
in a workspace runtime with real git whose commits can be held at a gate."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from amicable_agent.config import AgentConfig
from amicable_agent.loop.models import ModelSpec
from amicable_agent.sandboxes.base import SandboxHandle
from amicable_agent.server import serve
from amicable_agent.sessions.checkpoint_queue import merged_title
from amicable_protocol import unstructure
from amicable_protocol.messages import decode_server_message
from amicable_testing import FakeSandboxBackend, ws_send
from amicable_testing.fake_anthropic import Reply, Text, ToolUse
from amicable_testing.workspace_runtime import WorkspaceRuntime
from trio_websocket import open_websocket_url

BIG = 1536 * 1024 * 1024  # sparse
#: AMICABLE_CHECKPOINT_MAX_FILE_BYTES of the test agent.
LIMIT = 1024 * 1024


class GatedRuntime(WorkspaceRuntime):
    """A workspace runtime whose ``git commit`` scripts wait while :attr:`gate` is closed
    (a checkpoint that takes as long as the test wants)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = trio.Event()
        self.gate.set()
        self.held = trio.Event()

    def close_gate(self) -> None:
        self.gate = trio.Event()
        self.held = trio.Event()

    async def exec(self, command: str, **kwargs: Any) -> Any:
        if " commit " in command and not self.gate.is_set():
            self.held.set()
            await self.gate.wait()
        return await super().exec(command, **kwargs)


@pytest.fixture
def runtime(workspace: Path) -> GatedRuntime:
    return GatedRuntime(workspace)


@pytest.fixture
def engine_overrides() -> Any:
    """Extra engine settings for the fake model's URL (tests parametrise this fixture)."""
    return lambda fake, url: {}


@pytest.fixture
async def agent_http(
    nursery: trio.Nursery,
    tmp_path: Path,
    fake_llm: Any,
    make_engine: Any,
    runtime: GatedRuntime,
    engine_overrides: Any,
) -> int:
    fake, llm_url = fake_llm
    engine = make_engine(llm_url, qa_enabled=False, **engine_overrides(fake, llm_url))

    @asynccontextmanager
    async def factory(handle: SandboxHandle) -> AsyncIterator[WorkspaceRuntime]:
        await trio.lowlevel.checkpoint()
        yield runtime

    config = AgentConfig(
        host="127.0.0.1", port=0, internal_port=0, data_dir=tmp_path / "data",
        preview_base_domain="preview.localhost", preview_public_port=8123,
        checkpoint_max_file_bytes=LIMIT,
    )  # fmt: skip

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(
            config, backend=FakeSandboxBackend(), engine=engine, runtime_factory=factory,
            task_status=task_status,
        )  # fmt: skip

    ports = await nursery.start(run)
    return int(ports.public)


def write(path: str, content: str) -> ToolUse:
    return ToolUse("write_file", {"file_path": path, "content": content})


def is_checkpoint(msg: Any) -> bool:
    return str(msg.type) == "trace_event" and msg.data.tool_name == "checkpoint"


async def read_until(ws: Any, predicate: Any, seen: list[Any]) -> Any:
    """Read into ``seen`` until a message matches ``predicate``; returns that message."""
    with trio.fail_after(30):
        while True:
            msg = decode_server_message(await ws.get_message())
            seen.append(msg)
            if predicate(msg):
                return msg


def of_type(type_: str) -> Any:
    return lambda msg: str(msg.type) == type_


def sparse(path: Path, size: int) -> None:
    with path.open("wb") as f:
        f.truncate(size)


def tracked(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files"], check=True, capture_output=True, text=True
    ).stdout
    return sorted(out.split())


def test_merged_title_names_every_turn() -> None:
    assert merged_title(["Make it blue"]) == "Make it blue"
    assert merged_title(["Make it blue", "interrupted: Add a footer"]) == (
        "Make it blue; interrupted: Add a footer"
    )


async def test_a_slow_checkpoint_does_not_hold_up_the_next_turn(
    agent_http: int, fake_llm: Any, workspace: Path, runtime: GatedRuntime
) -> None:
    fake, _ = fake_llm
    sid = str(uuid.uuid4())
    base = f"/api/sandbox/{sid}/checkpoints"
    seen: list[Any] = []
    async with (
        open_websocket_url(f"ws://127.0.0.1:{agent_http}/") as ws,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent_http}", trust_env=False) as c,
        trio.open_nursery() as nursery,
    ):
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        await read_until(ws, of_type("init"), seen)
        assert len((await c.get(base)).json()["checkpoints"]) == 1  # the API waits for it
        sparse(workspace / "big.bin", BIG)  # made during the turn, as a model's command would
        sparse(workspace / "mid.bin", 2 * LIMIT)  # under the default limit, over the configured

        runtime.close_gate()
        fake.add(Reply([write("/src/App.tsx", "one\n")]), Reply([Text("Done.")]))
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "Make it one"}})
        await read_until(ws, of_type("update_completed"), seen)
        with trio.fail_after(30):
            await runtime.held.wait()  # the first turn's checkpoint is being taken

        fake.add(Reply([Text("Sure.")]))
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "Say hi"}})
        started = await read_until(ws, of_type("update_in_progress"), seen)
        await read_until(ws, of_type("update_completed"), seen)
        assert not runtime.gate.is_set()  # the checkpoint is still held

        # A restore waits for that checkpoint instead of saving the turn's files as
        # "Changes before restore".
        [baseline] = (await c.get(base)).json()["checkpoints"]
        restored: list[httpx.Response] = []

        async def restore_baseline() -> None:
            restored.append(await c.post(f"{base}/{baseline['sha']}/restore"))

        nursery.start_soon(restore_baseline)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert not restored
        runtime.gate.set()
        made = await read_until(ws, is_checkpoint, seen)

    # The second turn started (and ended) before the slow checkpoint was done.
    assert seen.index(started) < seen.index(made)
    assert made.data.output["title"] == "Make it one"
    assert sorted(made.data.output["skipped"], key=lambda s: s["path"]) == [
        {"path": "/big.bin", "bytes": BIG},
        {"path": "/mid.bin", "bytes": 2 * LIMIT},
    ]
    assert "big.bin" in made.data.text
    assert not {"big.bin", "mid.bin"} & set(tracked(workspace))
    assert not list((workspace / ".git" / "objects").rglob("tmp_*"))
    [response] = restored
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["saved"] is None  # the turn's files were already in their own checkpoint
    assert body["restored_to"]["title"] == "Project created"


async def test_an_interrupted_turn_gets_its_own_checkpoint(
    agent_http: int, fake_llm: Any, workspace: Path
) -> None:
    fake, _ = fake_llm
    sid = str(uuid.uuid4())
    seen: list[Any] = []
    hold = trio.Event()
    async with (
        open_websocket_url(f"ws://127.0.0.1:{agent_http}/") as ws,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent_http}", trust_env=False) as c,
    ):
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        await read_until(ws, of_type("init"), seen)
        fake.add(
            Reply([write("/src/Half.tsx", "half\n")]),
            Reply([Text("Still" + " working" * 20, chunk=4)], hold=hold),
        )
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "Rebuild it"}})
        await read_until(ws, of_type("agent_partial"), seen)  # the file is written by now
        await ws_send(ws, {"type": "cancel", "data": {"session_id": sid}})
        await read_until(ws, of_type("update_completed"), seen)
        first = await read_until(ws, is_checkpoint, seen)
        assert first.data.output["title"] == "interrupted: Rebuild it"

        fake.add(Reply([write("/src/Next.tsx", "next\n")]), Reply([Text("Done.")]))
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "Add Next"}})
        await read_until(ws, is_checkpoint, seen)
        listed = (await c.get(f"/api/sandbox/{sid}/checkpoints")).json()["checkpoints"]
        hold.set()
    assert [(e["title"], e["files_changed"]) for e in listed] == [
        ("Add Next", 1),
        ("interrupted: Rebuild it", 1),
        ("Project created", 3),
    ]


def with_small_model(fake: Any, url: str) -> dict[str, Any]:
    """A second configured model, on the same fake server, for small tasks."""
    spec = ModelSpec(id="small", provider=fake.provider, model="small-model", base_url=url,
                     api_key="sk-ant-test-key-123456")  # fmt: skip
    return {"models": (spec,), "small_model_id": "small"}


LONG_REQUEST = (
    "Please build me a todo list where every item can carry coloured tags, and let me filter "
    "the list by tag from a row of chips above it"
)


@pytest.mark.parametrize("engine_overrides", [with_small_model])
async def test_the_small_model_writes_the_subject_of_a_long_request(
    agent_http: int, fake_llm: Any, workspace: Path
) -> None:
    fake, _ = fake_llm
    sid = str(uuid.uuid4())
    seen: list[Any] = []
    fake.add(Reply([write("/src/App.tsx", "tags\n")]), Reply([Text("Done.")]),
             Reply([Text('"Add a tagged todo list with filters."')], input_tokens=120))  # fmt: skip
    async with open_websocket_url(f"ws://127.0.0.1:{agent_http}/") as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        await read_until(ws, of_type("init"), seen)
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": LONG_REQUEST}})
        made = await read_until(ws, is_checkpoint, seen)
    asked = fake.requests[-1].body
    assert asked["model"] == "small-model"
    assert not asked.get("tools")
    assert "coloured tags" in str(asked["messages"])
    assert made.data.output["title"] == "Add a tagged todo list with filters"
    done = await trio.run_process(["git", "-C", str(workspace), "log", "-1", "--format=%B"],
                                  capture_stdout=True)  # fmt: skip
    subject, _, body = done.stdout.decode().partition("\n\n")
    assert subject == "Add a tagged todo list with filters"
    assert LONG_REQUEST in " ".join(body.split())  # the request itself stays in the message


@pytest.mark.parametrize("engine_overrides", [with_small_model])
async def test_a_short_request_stays_the_subject_and_costs_no_call(
    agent_http: int, fake_llm: Any
) -> None:
    fake, _ = fake_llm
    sid = str(uuid.uuid4())
    seen: list[Any] = []
    fake.add(Reply([write("/src/App.tsx", "blue\n")]), Reply([Text("Done.")]))
    async with open_websocket_url(f"ws://127.0.0.1:{agent_http}/") as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        await read_until(ws, of_type("init"), seen)
        await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": "Make it blue"}})
        made = await read_until(ws, is_checkpoint, seen)
    assert made.data.output["title"] == "Make it blue"
    assert all(r.body["model"] != "small-model" for r in fake.requests)


def checkpoint_sha(turn: dict[str, Any]) -> str | None:
    """The sha of the ``checkpoint`` ``trace_event`` of a stored turn (None: it has none)."""
    shas = [
        e["data"]["output"]["sha"]
        for e in turn["events"]
        if e["type"] == "trace_event" and e["data"]["tool_name"] == "checkpoint"
    ]
    assert len(shas) <= 1
    return shas[0] if shas else None


async def test_the_init_reply_does_not_wait_for_the_baseline(
    agent_http: int, runtime: GatedRuntime
) -> None:
    sid = str(uuid.uuid4())
    seen: list[Any] = []
    runtime.close_gate()  # the baseline's git commit waits until the gate opens
    async with (
        open_websocket_url(f"ws://127.0.0.1:{agent_http}/") as ws,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent_http}", trust_env=False) as c,
    ):
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        await read_until(ws, of_type("init"), seen)  # answered while git is held
        with trio.fail_after(30):
            await runtime.held.wait()  # the worker makes the baseline after the reply
        runtime.gate.set()
        # not cut short by the reply: the history API waits for it and finds it
        listed = (await c.get(f"/api/sandbox/{sid}/checkpoints")).json()["checkpoints"]
    assert [e["title"] for e in listed] == ["Project created"]


async def test_a_reopened_project_shows_each_turns_checkpoint(
    agent_http: int, fake_llm: Any, runtime: GatedRuntime
) -> None:
    fake, _ = fake_llm
    sid = str(uuid.uuid4())
    seen: list[Any] = []
    async with (
        open_websocket_url(f"ws://127.0.0.1:{agent_http}/") as ws,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent_http}", trust_env=False) as c,
    ):
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        await read_until(ws, of_type("init"), seen)
        # the baseline is made after INIT's reply; the history API waits for it
        assert len((await c.get(f"/api/sandbox/{sid}/checkpoints")).json()["checkpoints"]) == 1
        runtime.close_gate()
        # "One" gets a checkpoint of its own (held); "Two" and "Three" end meanwhile and are
        # taken together by the next one.
        for n, text in enumerate(["One", "Two", "Three"]):
            fake.add(Reply([write(f"/src/{text}.tsx", f"{n}\n")]), Reply([Text("Done.")]))
            await ws_send(ws, {"type": "user", "data": {"session_id": sid, "text": text}})
            await read_until(ws, of_type("turn_ended"), seen)
            if n == 0:
                with trio.fail_after(30):
                    await runtime.held.wait()
        runtime.gate.set()
        first = await read_until(ws, is_checkpoint, seen)
        merged = await read_until(ws, is_checkpoint, seen)
        page = (await c.get(f"/api/projects/{sid}/turns")).json()

    assert first.data.output["title"] == "One"
    assert merged.data.output["title"] == "Two; Three"
    # Read back after a reload: each checkpoint is on the last turn it saved, as it was live.
    turns = page["turns"]
    assert [t["events"][0]["data"]["text"] for t in turns] == ["One", "Two", "Three"]
    assert [checkpoint_sha(t) for t in turns] == [
        first.data.output["sha"],
        None,
        merged.data.output["sha"],
    ]
    # ...after the turn's end, as the editor saw it; and the INIT of a reopened tab agrees.
    assert turns[0]["events"][-1]["type"] == "trace_event"
    assert turns[0]["events"][-2]["type"] == "turn_ended"
    async with open_websocket_url(f"ws://127.0.0.1:{agent_http}/") as ws:
        await ws_send(ws, {"type": "init", "data": {"session_id": sid}})
        init = await read_until(ws, of_type("init"), [])
    assert [checkpoint_sha(unstructure(t)) for t in init.data.turns] == [
        first.data.output["sha"],
        None,
        merged.data.output["sha"],
    ]
