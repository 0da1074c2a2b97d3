"""Models that call tools badly get a clear tool error back, never a crashed turn (both
providers: models behind OpenAI-compatible servers do this more often)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amicable_protocol.messages import UserData
from amicable_testing.model_script import Reply, Text, ToolUse


def _results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"]


async def test_bad_tool_calls_are_answered_with_tool_errors(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    fake.add(
        Reply([
            ToolUse("write_file", {}, raw_input='{"file_path": "/src/a.ts", "content": "x'),
            ToolUse("read_file", {}),
            ToolUse("make_coffee", {"size": "L"}),
            ToolUse("", {"path": "/"}),
            ToolUse("write_file", {}, raw_input="[1, 2]"),
        ]),
        Reply([Text("Sorry, let me try again properly.")]),
    )  # fmt: skip
    await make_engine(url).run_user_turn(host, UserData(session_id="sess-1", text="go"))

    results = _results(fake.view(1))
    assert [r["is_error"] for r in results] == [True] * 5
    broken, empty, unknown, nameless, not_object = (r["content"] for r in results)
    assert broken.startswith("Error: the arguments of this write_file call are not a valid JSON")
    assert "Call write_file again with a JSON object" in broken
    assert empty.startswith(
        "Error: read_file needs the argument(s) file_path (this call had: none)"
    )
    assert unknown.startswith("Error: unknown tool 'make_coffee'. The tools are: ls, read_file")
    assert nameless.startswith("Error: this tool call names no tool.")
    assert "not a valid JSON object" in not_object
    assert not (workspace / "src" / "a.ts").exists()
    assert len(host.traces("tool_error")) == 5
    assert host.traces("tool_start") == []  # nothing ran
    assert host.of("error") == []
    assert host.types()[-1] == "update_completed"
    assert host.of("agent_final")[0].data.text == "Sorry, let me try again properly."
    # The stored conversation stays valid for either provider: every call has its result.
    stored = host.store.conversations["proj-1"]
    calls = [b["id"] for b in stored[1]["content"] if b["type"] == "tool_use"]
    answered = [b["tool_use_id"] for b in stored[2]["content"] if b["type"] == "tool_result"]
    assert calls == answered
    assert len(set(calls)) == 5
