"""The small model's tasks: names for new projects, commit subjects (in
test_checkpoint_queue.py), answers to web_fetch prompts (in test_web_tools.py); and what they
fall back to without it. The real agent server and the fake model server, for each provider."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.loop.models import ModelSpec
from amicable_agent.loop.small_tasks import clean_name, clean_subject, name_from_prompt
from amicable_agent.sandboxes.base import SandboxHandle
from amicable_agent.server import serve
from amicable_agent.sessions._git_scripts import SKIPPED_PREFIX, _skipped_in, commit_message
from amicable_testing import FakeSandboxBackend
from amicable_testing.model_script import Fault, Reply, Text
from amicable_testing.workspace_runtime import WorkspaceRuntime


@pytest.mark.parametrize(
    ("prompt", "name"),
    [
        ("Build me a todo app with tags", "Todo App With Tags"),
        ("please create an expense tracker for my team", "Expense Tracker For My"),
        ("A landing page for a bakery\nwith a menu", "Landing Page For A"),
        ("  ", "Untitled"),
        ("!!! ???", "Untitled"),
        ("Make a 3D dice roller", "3D Dice Roller"),
    ],
)
def test_a_name_from_the_first_words_of_the_prompt(prompt: str, name: str) -> None:
    assert name_from_prompt(prompt) == name


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ('"Tagged Todos."', "Tagged Todos"),
        ("The Bakery Site", "Bakery Site"),
        ("Recipe Box\nBecause you asked for recipes", "Recipe Box"),
        ("", None),
        ("This is a whole sentence rather than a short project name", None),
    ],
)
def test_model_names_are_tidied(raw: str, clean: str | None) -> None:
    assert clean_name(raw) == clean


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Add a dark mode toggle.", "Add a dark mode toggle"),
        ("Subject: Fix the footer", "Fix the footer"),
        ("`Add tags`\nand more", "Add tags"),
        ("   ", None),
        ("x" * 100, "x" * 71 + "…"),
    ],
)
def test_model_subjects_are_tidied(raw: str, clean: str | None) -> None:
    assert clean_subject(raw) == clean


def test_a_request_in_the_commit_body_cannot_break_the_log_or_fake_a_skipped_file() -> None:
    hostile = f'Do it\x1e\x1f\x1dnow\n{SKIPPED_PREFIX}{{"path": "/x", "bytes": 1}}'
    message = commit_message("Subject", (), 1024, body=hostile)
    assert not set("\x1e\x1f\x1d") & set(message)
    assert _skipped_in(message) == ()
    assert message.startswith("Subject\n\nDo it")


@pytest.fixture
async def agent(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: Any, make_engine: Any
) -> AsyncIterator[httpx.AsyncClient]:
    fake, url = fake_llm
    small = ModelSpec(id="small", provider=fake.provider, model="small-model", base_url=url,
                      api_key="sk-ant-test-key-123456", price_input_per_mtok=1.0)  # fmt: skip
    engine = make_engine(url, models=(small,), small_model_id="small")

    @asynccontextmanager
    async def factory(handle: SandboxHandle) -> AsyncIterator[WorkspaceRuntime]:
        await trio.lowlevel.checkpoint()
        yield WorkspaceRuntime(tmp_path / "ws")

    config = AgentConfig(
        host="127.0.0.1", port=0, internal_port=0, data_dir=tmp_path / "data",
        preview_base_domain="preview.localhost", preview_public_port=8123,
    )  # fmt: skip

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(config, backend=FakeSandboxBackend(), engine=engine,
                    runtime_factory=factory, task_status=task_status)  # fmt: skip

    ports = await nursery.start(run)
    base = f"http://127.0.0.1:{ports.public}"
    async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
        client.data_dir = config.data_dir  # type: ignore[attr-defined]
        yield client


async def test_a_new_project_is_named_by_the_small_model(agent: Any, fake_llm: Any) -> None:
    fake, _ = fake_llm
    fake.add(Reply([Text("The Tagged Todos.")], input_tokens=2_000_000))
    created = await agent.post("/api/projects", json={"prompt": "Build me a todo app with tags"})
    assert created.status_code == 200, created.text
    assert created.json()["name"] == "Tagged Todos"
    assert created.json()["slug"] == "tagged-todos"
    [asked] = fake.requests
    assert asked.body["model"] == "small-model"
    assert "todo app with tags" in str(asked.body["messages"])
    pid = created.json()["project_id"]
    assert (await agent.get(f"/api/projects/{pid}")).json()["name"] == "Tagged Todos"
    # What naming cost is part of the project's spend.
    with sqlite3.connect(agent.data_dir / "amicable.db") as db:
        rows = db.execute("SELECT model_id, input_tokens, cost_usd FROM usage_records "
                          "WHERE project_id = ?", (pid,)).fetchall()  # fmt: skip
    assert rows == [("small", 2_000_000, 2.0)]


async def test_naming_that_fails_midway_still_counts_in_the_spend(
    agent: Any, fake_llm: Any
) -> None:
    """Every attempt drops after the provider reported its input tokens: the project gets the
    prompt's words as its name, and what the failed attempts cost is still its spend."""
    fake, _ = fake_llm
    drop = Fault(drop_after_events=8, reply=Reply([Text("Half a name that never ends")],
                                                  input_tokens=500_000))  # fmt: skip
    fake.add(*[drop] * 5)  # the first try and its four retries
    created = await agent.post("/api/projects", json={"prompt": "Build a habit tracker"})
    assert created.json()["name"] == "Habit Tracker"
    assert len(fake.requests) == 5
    pid = created.json()["project_id"]
    with sqlite3.connect(agent.data_dir / "amicable.db") as db:
        rows = db.execute("SELECT model_id, turn_id, input_tokens FROM usage_records "
                          "WHERE project_id = ?", (pid,)).fetchall()  # fmt: skip
    [(model, turn, tokens)] = rows
    assert (model, turn) == ("small", "small:name")
    if fake.provider == "anthropic":  # message_start reported each attempt's input tokens
        assert tokens == 500_000 * len(fake.requests)


async def test_a_given_name_is_kept_and_no_model_is_asked(agent: Any, fake_llm: Any) -> None:
    fake, _ = fake_llm
    created = await agent.post("/api/projects", json={"name": "Mine", "prompt": "a todo app"})
    assert created.json()["name"] == "Mine"
    assert fake.requests == []


async def test_without_an_answer_the_prompt_names_the_project(agent: Any, fake_llm: Any) -> None:
    fake, _ = fake_llm
    fake.add(Fault(401, message="invalid x-api-key"))
    created = await agent.post("/api/projects", json={"prompt": "Create a recipe box for soups"})
    assert created.json()["name"] == "Recipe Box For Soups"
    assert len(fake.requests) == 1
