"""End-to-end in real Chromium: the per-project model picker, the running cost and a
reached spend budget, against the scripted fake agent."""

from __future__ import annotations

import time
from typing import Any

from conftest import FakeAgentHandle, provisioned_project, screenshot
from playwright.sync_api import expect
from test_editor_flows import open_editor, send

MODELS = [
    {"id": "anthropic:claude-sonnet-4-5", "label": "Claude Sonnet 4.5", "provider": "anthropic",
     "images": True, "price_input_per_mtok": 3.0, "price_output_per_mtok": 15.0},
    {"id": "local", "label": "Qwen 2.5 Coder (Ollama)", "provider": "openai", "images": False,
     "context_window": 32768, "price_input_per_mtok": 0.0, "price_output_per_mtok": 0.0},
]  # fmt: skip


def _frames(agent: FakeAgentHandle, project: Any, kind: str) -> list[dict[str, Any]]:
    return agent.call(lambda: [m for m in project.received if m.get("type") == kind])


def test_the_picker_chooses_the_projects_model_and_the_cost_adds_up(
    page: Any, fake_agent: FakeAgentHandle
) -> None:
    fake_agent.call(setattr, fake_agent.agent, "models", MODELS)
    project = provisioned_project(fake_agent, "Model picker")
    open_editor(page, project.slug)
    picker = page.get_by_test_id("model-picker")
    expect(picker).to_have_value("anthropic:claude-sonnet-4-5")
    expect(picker.locator("option")).to_have_text(
        ["Claude Sonnet 4.5 · $3/$15 per Mtok", "Qwen 2.5 Coder (Ollama)"]
    )
    expect(page.get_by_test_id("usage-total")).to_have_text("Project: $0.0000 · 0 in · 0 out")

    picker.select_option("local")
    # The choice goes to the agent at once (init), so it is the project's even before a prompt.
    deadline = time.monotonic() + 10
    while _frames(fake_agent, project, "init")[-1]["data"].get("model") != "local":
        assert time.monotonic() < deadline, "the picker's init never arrived"
        page.wait_for_timeout(20)
    send(page, "Make the heading blue")
    expect(page.get_by_test_id("assistant-message").last).to_have_attribute("data-final", "true")
    users = _frames(fake_agent, project, "user")
    assert users[-1]["data"]["model"] == "local"
    total = page.get_by_test_id("usage-total")
    expect(total).to_have_text("Project: $0.0123 · 2,000 in · 340 out")
    expect(total).to_have_attribute("title", "Last turn: 1,200 in · 340 out · $0.0123")
    screenshot(page, "model-picker")

    # A reload shows the stored choice; the running cost continues.
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    expect(page.get_by_test_id("model-picker")).to_have_value("local")
    expect(page.get_by_test_id("usage-total")).to_contain_text("Project: $0.0123")
    send(page, "Another change")
    expect(page.get_by_test_id("usage-total")).to_have_text("Project: $0.0246 · 4,000 in · 680 out")

    # A used-up budget is explained in the chat with the agent's own sentence.
    send(page, "one more, over budget")
    error = page.get_by_test_id("error-message").last
    expect(error).to_contain_text("A spend budget is used up")
    expect(error).to_contain_text("Your daily budget of $0.02 is used up")
    expect(page.get_by_test_id("chat-send")).to_be_visible()


def test_an_agent_without_models_shows_no_picker(page: Any, fake_agent: FakeAgentHandle) -> None:
    project = provisioned_project(fake_agent, "No picker")
    open_editor(page, project.slug)
    send(page, "Make the heading blue")
    expect(page.get_by_test_id("usage-total")).to_have_text("1,200 in · 340 out · $0.0123")
    expect(page.get_by_test_id("model-picker")).to_have_count(0)
    assert "model" not in _frames(fake_agent, project, "user")[-1]["data"]
