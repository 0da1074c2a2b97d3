"""The turn engine end to end against a fake model API and a real local workspace.

Each test runs against both providers (``conftest.provider``): the fake Messages API and the
fake Chat Completions API play the same script.
"""

from __future__ import annotations

import itertools
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.loop.engine import Engine
from amicable_protocol.messages import UserData
from amicable_testing.fake_anthropic import Fault, Reply, Text, ToolUse

from .conftest import continued_text


def user(text: str) -> UserData:
    return UserData(session_id="sess-1", text=text)


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    last = body["messages"][-1]
    assert last["role"] == "user"
    return [b for b in last["content"] if b.get("type") == "tool_result"]


async def test_prompt_writes_a_file_with_the_documented_wire_order(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    fake.add(
        Reply([Text("I'll add a greeting page."),
               ToolUse("write_file", {"file_path": "/src/Hello.tsx", "content": "export const Hello = 1;\n"})]),
        Reply([Text("Added **Hello**.")]),
    )  # fmt: skip
    engine: Engine = make_engine(url)
    await engine.run_user_turn(host, user("add a hello page"))

    assert (workspace / "src" / "Hello.tsx").read_text() == "export const Hello = 1;\n"
    types = host.types()
    assert types[0] == "update_in_progress"
    assert types[-4:] == ["agent_final", "trace_event", "usage", "update_completed"]
    assert types.index("agent_partial") < types.index("update_file")
    assert [m.data.text for m in host.of("update_file")] == ["Writing /src/Hello.tsx"]
    start, end = host.traces("tool_start")[0], host.traces("tool_end")[0]
    assert start.tool_name == end.tool_name == "write_file"
    assert start.run_id == end.run_id
    assert start.assistant_msg_id
    final = host.of("agent_final")[0]
    assert final.data.text == "I'll add a greeting page.\n\nAdded **Hello**."
    partials = [m.data.text for m in host.of("agent_partial")]
    assert all(b.startswith(a) for a, b in itertools.pairwise(partials))
    assert {m.id for m in host.of("agent_partial")} == {final.id}
    assert host.traces("reasoning_summary")[0].text.startswith("I updated /src/Hello.tsx")
    usage = host.of("usage")[0].data
    assert usage.input_tokens == 200
    assert usage.cost_usd > 0
    # The second request carries the tool result; the system prompt and the tools are set.
    second = fake.view(1)
    assert tool_results(second)[0]["content"].startswith("Wrote 24 bytes")
    assert {t["name"] for t in second["tools"]} == {
        "ls", "read_file", "write_file", "edit_file", "glob", "grep", "execute"}  # fmt: skip
    first_user = fake.view(0)["messages"][0]["content"]
    assert first_user == "add a hello page"
    assert "Always use TypeScript." in fake.view(0)["system"][0]["text"]
    headers = fake.requests[0].headers
    assert "sk-ant-test-key-123456" in headers.get("x-api-key", headers.get("authorization", ""))
    # The conversation and the user-visible history are stored.
    stored = host.store.conversations["proj-1"]
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    history = await engine.history(host)
    assert [(h.role, h.text) for h in history] == [
        ("user", "add a hello page"), ("assistant", final.data.text)]  # fmt: skip


async def test_tool_errors_go_back_to_the_model(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    fake.add(
        Reply([ToolUse("edit_file", {"file_path": "/src/App.tsx", "old_string": "<h2>",
                                     "new_string": "<h3>"}),
               ToolUse("edit_file", {"file_path": "/src/Missing.tsx", "old_string": "a",
                                     "new_string": "b"}),
               ToolUse("read_file", {"file_path": "/src/App.tsx", "offset": 1, "limit": 1}),
               ToolUse("write_file", {"file_path": "/node_modules/x/index.js", "content": "x"}),
               ToolUse("execute", {"command": "rm -rf / --no-preserve-root"}),
               ToolUse("nonexistent_tool", {})]),
        Reply([Text("Sorry, nothing matched.")]),
    )  # fmt: skip
    engine = make_engine(url)
    await engine.run_user_turn(host, user("change the heading"))
    results = tool_results(fake.view(1))
    assert [r["is_error"] for r in results] == [True, True, False, True, True, True]
    assert "exactly once" in results[0]["content"]
    assert "not found" in results[1]["content"]
    assert results[2]["content"] == "     2\t  return <h1>Hi</h1>;\n… 1 more lines (use offset=2)"
    assert "Policy denied: writes not allowed for /node_modules/" in results[3]["content"]
    assert "forbidden pattern" in results[4]["content"]
    assert "unknown tool" in results[5]["content"]
    assert not (workspace / "node_modules").exists()
    assert len(host.traces("tool_error")) == 5
    assert host.of("update_completed")


async def test_edit_file_replace_all_and_conflict_on_several_matches(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    (workspace / "src" / "x.ts").write_text("a a a\n")
    fake, url = fake_llm
    fake.add(
        Reply([ToolUse("edit_file", {"file_path": "/src/x.ts", "old_string": "a", "new_string": "b"})]),
        Reply([ToolUse("edit_file", {"file_path": "/src/x.ts", "old_string": "a", "new_string": "b",
                                     "replace_all": True})]),
        Reply([Text("ok")]),
    )  # fmt: skip
    await make_engine(url).run_user_turn(host, user("rename"))
    assert "occurs 3 times" in tool_results(fake.view(1))[0]["content"]
    assert tool_results(fake.view(2))[0]["content"] == "Edited /src/x.ts: 3 replacement(s)"
    assert (workspace / "src" / "x.ts").read_text() == "b b b\n"


async def test_secrets_and_base64_are_redacted_in_traces(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    blob = "QUJD" * 200
    content = f"ANTHROPIC_API_KEY=sk-ant-test-key-123456\nimg={blob}\n" + "x y " * 1000
    fake.add(Reply([ToolUse("write_file", {"file_path": "/.env", "content": content})]),
             Reply([Text("ok")]))  # fmt: skip
    await make_engine(url).run_user_turn(host, user("store key"))
    traced = str(host.traces("tool_start")[0].input)
    assert "sk-ant-test-key-123456" not in traced
    assert blob not in traced
    assert "[REDACTED]" in traced
    assert "base64 data" in traced
    assert "more chars" in traced


async def test_tool_results_reach_the_model_without_secret_values(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    """What a command prints goes to the model provider and the editor: secrets in it are
    replaced whole, also one with a comma inside (the trace redactor once stopped there)."""
    jwt = '{"type":"HS256","key":"jwt-key-2b9d,with-a-comma"}'
    (workspace / "leak.txt").write_text(
        f"HASURA_GRAPHQL_JWT_SECRET={jwt}\n"
        "export AWS_SECRET_ACCESS_KEY='aws-secret-1a2b3c4d5e6f'\n"
        "DATABASE_URL=postgresql://app:pg-pass-778899@db:5432/app\n"
        "echo key jwt-key-2b9d,with-a-comma and sk-openai-9f8e7d6c5b4a\n"
        "const token = getToken();\n"
    )
    fake, url = fake_llm
    fake.add(Reply([ToolUse("read_file", {"file_path": "/leak.txt"}),
                    ToolUse("execute", {"command": "cat leak.txt"})]),
             Reply([Text("ok")]))  # fmt: skip
    engine = make_engine(url, known_secrets=(jwt, "jwt-key-2b9d,with-a-comma",
                                             "sk-openai-9f8e7d6c5b4a"))  # fmt: skip
    await engine.run_user_turn(host, user("show me"))
    sent = str(tool_results(fake.view(1))) + str([t.output for t in host.traces("tool_end")])
    for secret in ("jwt-key", "with-a-comma", "aws-secret-1a2b", "pg-pass-7788", "sk-openai"):
        assert secret not in sent
    assert "[REDACTED]" in sent
    assert "const token = getToken();" in str(tool_results(fake.view(1))), (
        "code the model reads keeps its assignments"
    )


async def test_retries_keep_streamed_text(fake_llm: Any, make_engine: Any, host: Any) -> None:
    fake, url = fake_llm
    fake.add(
        Fault(429, retry_after=0.01),
        Fault(529),
        Fault(500),
        Fault(drop_after_events=8, reply=Reply([Text("Here is the first part of the answer")])),
        Reply([Text(" and the rest.")]),
    )
    await make_engine(url).run_user_turn(host, user("explain"))
    assert len(fake.requests) == 5
    assert fake.dropped_streams == 1
    # The retry after the drop continues the text already streamed.
    shown = continued_text(fake, 4)
    assert shown
    assert "Here is the first part of the answer".startswith(shown)
    final = host.of("agent_final")[0].data.text
    assert final == shown + " and the rest."
    partials = [m.data.text for m in host.of("agent_partial")]
    assert all(b.startswith(a.rstrip()) for a, b in itertools.pairwise(partials))
    assert not host.of("error")
    stored = host.store.conversations["proj-1"]
    assert stored[-1] == {"role": "assistant", "content": [{"type": "text", "text": final}]}


async def test_retries_are_shown_to_the_editor_and_logged(
    fake_llm: Any, make_engine: Any, host: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = fake_llm
    fake.add(
        Fault(drop_after_events=8, reply=Reply([Text("Here is the first part of the answer")])),
        Fault(529),
        Reply([Text(" and the rest.")]),
    )
    caplog.set_level(logging.INFO, logger="amicable_agent.loop.llm")
    await make_engine(url).run_user_turn(host, user("explain"))

    # The status line says what happens while the retries wait, and is cleared after.
    statuses = [m.data.text for m in host.of("update_file")]
    assert len(statuses) == 3, statuses
    assert re.fullmatch(
        r"Connection to the model API dropped, retrying 1/4 in [\d.]+ s", statuses[0]
    )
    assert re.fullmatch(r"Model API busy \(overloaded\), retrying 2/4 in [\d.]+ s", statuses[1])
    assert statuses[2] == ""
    types = host.types()
    assert types.index("update_in_progress") < types.index("update_file")
    assert types.index("update_file") < types.index("agent_final")
    # One log line per failed attempt, with the HTTP status and the provider's request id.
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2, warned
    assert re.search(r"dropped \(HTTP 200, request-id req_fake\d+, .*after \d+ events\)", warned[0])
    assert "retrying 1/4" in warned[0]
    detail = "error type overloaded_error" if fake.provider == "anthropic" else "fake failure"
    assert re.search(rf"\(HTTP 529, request-id req_fake\d+, {detail}\)", warned[1])
    assert "retrying 2/4" in warned[1]
    assert all("sk-ant-test-key" not in r.getMessage() for r in caplog.records)


async def test_a_final_model_failure_is_logged(
    fake_llm: Any, make_engine: Any, host: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = fake_llm
    fake.add(*[Fault(500, message="boom")] * 2)
    detail = "error type api_error" if fake.provider == "anthropic" else "boom"
    caplog.set_level(logging.INFO, logger="amicable_agent.loop.llm")
    await make_engine(url, llm_max_retries=1).run_user_turn(host, user("hi"))
    assert host.of("error")[0].data.error == "llm_api_error"
    [status] = [m.data.text for m in host.of("update_file")]
    assert status.startswith("Model API error (500), retrying 1/1 in ")
    [failed] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "failed for good after 2 attempts" in failed
    assert re.search(rf"\(HTTP 500, request-id req_fake\d+, {detail}\)", failed)


# The SDK raises on an SSE ``error`` event while its own SSE generators are suspended; trio
# then warns when they are garbage-collected (an SDK quirk, harmless: the response is closed).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_overloaded_error_event_mid_stream_is_retried(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    fake.add(
        Fault(529, error_after_events=6, reply=Reply([Text("Streaming along nicely")])),
        Reply([Text(" until the end.")]),
    )
    await make_engine(url).run_user_turn(host, user("go"))
    assert len(fake.requests) == 2
    final = host.of("agent_final")[0].data.text
    assert final.startswith("Streaming")
    assert final.endswith(" until the end.")
    assert not host.of("error")


async def test_gives_up_after_the_last_retry_with_an_error(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    fake.add(*[Fault(529, message="Overloaded")] * 3)
    await make_engine(url, llm_max_retries=2).run_user_turn(host, user("hi"))
    assert len(fake.requests) == 3
    error = host.of("error")[0].data
    assert error.error == "llm_overloaded"
    assert "529" in (error.detail or "")
    assert host.types()[-1] == "update_completed"
    # The error bubble says it (with Retry); no second note, no summary, no usage of nothing.
    assert host.of("agent_final") == []
    assert host.traces("reasoning_summary") == []
    assert "model API failed" in str(host.store.conversations["proj-1"][-1]["content"])


async def test_non_retryable_api_error_is_reported_at_once(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    fake.add(Fault(401, message="invalid x-api-key"))
    await make_engine(url).run_user_turn(host, user("hi"))
    assert len(fake.requests) == 1
    assert host.of("error")[0].data.error == "llm_auth_failed"
    assert host.types()[-1] == "update_completed"


async def test_tool_call_budget_stops_the_turn(fake_llm: Any, make_engine: Any, host: Any) -> None:
    fake, url = fake_llm
    fake.responder = lambda body: Reply([Text("Again."), ToolUse("ls", {"path": "/"})])
    await make_engine(url, turn_max_tool_calls=3).run_user_turn(host, user("loop forever"))
    assert len(fake.requests) == 3
    assert len(host.traces("tool_end")) == 3
    final = host.of("agent_final")[0].data.text
    assert "budget of 3 tool calls" in final
    assert host.types()[-1] == "update_completed"
    stored = host.store.conversations["proj-1"]
    assert stored[-1]["role"] == "assistant"
    assert "budget" in stored[-1]["content"][0]["text"]


async def test_token_budget_stops_the_turn(fake_llm: Any, make_engine: Any, host: Any) -> None:
    fake, url = fake_llm
    fake.responder = lambda body: Reply([ToolUse("ls", {"path": "/"})], input_tokens=600)
    await make_engine(url, turn_max_tokens=1000).run_user_turn(host, user("go"))
    assert len(fake.requests) == 2
    assert "budget of 1000 tokens" in host.of("agent_final")[0].data.text


async def test_turn_time_limit(
    fake_llm: Any, make_engine: Any, host: Any, autojump_clock: Any
) -> None:
    fake, url = fake_llm
    fake.add(Reply([Text("Thinking very slowly")], hold=trio.Event()))
    await make_engine(url, turn_timeout_s=60).run_user_turn(host, user("slow"))
    final = host.of("agent_final")[0].data.text
    assert "time limit (60 s)" in final
    assert host.types()[-1] == "update_completed"


async def test_restart_continues_the_conversation(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    fake.add(Reply([Text("Your favourite colour is noted: teal.")]), Reply([Text("Teal.")]))
    await make_engine(url).run_user_turn(host, user("my favourite colour is teal"))
    # A new engine (agent restart) with the same store continues the same conversation.
    await make_engine(url).run_user_turn(host, user("what is my favourite colour?"))
    messages = fake.view(1)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][0]["text"] == "Your favourite colour is noted: teal."


async def test_restart_mid_tool_round_is_repaired(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    # The agent died after the model asked for a tool and before the result was stored.
    host.store.conversations["proj-1"] = [
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ls",
                                           "input": {"path": "/"}}]},
    ]  # fmt: skip
    fake, url = fake_llm
    fake.add(Reply([Text("Continuing.")]))
    await make_engine(url).run_user_turn(host, user("go on"))
    messages = fake.view(0)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    blocks = messages[2]["content"]
    assert blocks[0]["type"] == "tool_result"
    assert blocks[0]["tool_use_id"] == "toolu_1"
    assert blocks[-1]["type"] == "text"
    assert blocks[-1]["text"].endswith("go on")


async def test_long_history_is_compacted(fake_llm: Any, make_engine: Any, host: Any) -> None:
    old = []
    for i in range(30):
        old += [{"role": "user", "content": f"request {i}"},
                {"role": "assistant", "content": [{"type": "text", "text": f"answer {i}"}]}]  # fmt: skip
    host.store.conversations["proj-1"] = old
    fake, url = fake_llm
    fake.add(Reply([Text("ok")]))
    await make_engine(
        url, compaction_trigger_messages=50, compaction_keep_messages=20
    ).run_user_turn(host, user("next"))
    body = fake.view(0)
    assert len(body["messages"]) == 21
    assert "The user asked: request 0" in body["system"][0]["text"]
    assert host.traces("pre_compact")[0].output["history_before"] == 60


async def test_images_are_sent_as_image_blocks(fake_llm: Any, make_engine: Any, host: Any) -> None:
    from amicable_protocol.messages import ImageBlock, TextBlock

    fake, url = fake_llm
    data = UserData(session_id="sess-1", content_blocks=(
        TextBlock("make it look like this"), ImageBlock(base64="iVBORw0KGgo=", mime_type="image/png")))  # fmt: skip
    await make_engine(url).run_user_turn(host, data)
    content = fake.view(0)["messages"][0]["content"]
    assert content[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                      "data": "iVBORw0KGgo="}}  # fmt: skip
    assert content[0]["text"].endswith("make it look like this")


async def test_cancel_during_long_execute_kills_the_process_group(
    fake_llm: Any, make_engine: Any, host: Any, workspace: Path
) -> None:
    fake, url = fake_llm
    command = "sleep 1000 & echo $! > child.pid; wait"
    fake.add(Reply([Text("Running the long task."), ToolUse("execute", {"command": command})]))
    engine = make_engine(url)
    pid_file = workspace / "child.pid"
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.run_user_turn, host, user("run it"))
            await host.wait_for(lambda h: h.traces("tool_start"))
            with trio.fail_after(10):
                # The file is written by the command; nothing to wait on but the file system.
                while not pid_file.exists() or not pid_file.read_text().strip():
                    await trio.sleep(0.01)
            scope.cancel()
    child = int(pid_file.read_text())
    with trio.fail_after(10):  # SIGKILL was sent; wait for the kernel to finish it
        while _proc_state(child) not in (None, "Z"):
            await trio.sleep(0.01)
    assert host.types()[-1] == "update_completed"
    # One calm stop marker is the editor's (turn_ended): the note is for the model only.
    assert "turn was stopped" not in host.of("agent_final")[0].data.text
    assert "turn was stopped" in str(host.store.conversations["proj-1"][-1]["content"])
    stored = host.store.conversations["proj-1"]
    result = stored[2]["content"][0]
    assert result["type"] == "tool_result"
    assert result["is_error"]
    assert stored[-1]["role"] == "assistant"


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


async def test_cancel_while_streaming_keeps_the_partial_text(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    fake.add(Reply([Text("Partial answer that never ends", chunk=7)], hold=trio.Event()))
    engine = make_engine(url)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.run_user_turn, host, user("hi"))
            await host.wait_for(lambda h: h.of("agent_partial"))
            scope.cancel()
    final = host.of("agent_final")[0].data.text
    assert final.startswith("Partial")
    assert "turn was stopped" not in final, "the editor shows one stop marker of its own"
    assert "turn was stopped" in str(host.store.conversations["proj-1"][-1]["content"])
    assert host.types()[-1] == "update_completed"
    stored = host.store
    assert stored.conversations["proj-1"][-1]["role"] == "assistant"


async def test_internal_error_still_completes_the_turn_and_propagates(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    _fake, url = fake_llm

    async def broken_load(project_id: str) -> list[dict[str, Any]]:
        raise RuntimeError("database is locked")

    host.store.load_conversation = broken_load
    with pytest.raises(RuntimeError, match="database is locked"):
        await make_engine(url).run_user_turn(host, user("hi"))
    assert host.types()[0] == "update_in_progress"
    assert host.types()[-1] == "update_completed"
    assert "proj-1" not in host.store.conversations  # nothing half-built was saved


async def test_unexpected_tool_failure_becomes_a_tool_error(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    async def broken_glob(pattern: str, path: str = "/") -> Any:
        raise OSError("disk on fire")

    host.runtime.glob = broken_glob
    fake, url = fake_llm
    fake.add(Reply([ToolUse("glob", {"pattern": "*.ts"})]), Reply([Text("ok")]))
    await make_engine(url).run_user_turn(host, user("find"))
    result = tool_results(fake.view(1))[0]
    assert result["is_error"]
    assert result["content"] == "Error: glob failed unexpectedly (OSError)"
    assert host.types()[-1] == "update_completed"


async def test_answer_cut_by_max_tokens_is_continued(
    fake_llm: Any, make_engine: Any, host: Any
) -> None:
    fake, url = fake_llm
    fake.add(Reply([Text("First half")], stop_reason="max_tokens"), Reply([Text("second half.")]))
    await make_engine(url).run_user_turn(host, user("long answer"))
    assert len(fake.requests) == 2
    assert fake.view(1)["messages"][-1]["content"].startswith("Your last answer was cut")
    assert host.of("agent_final")[0].data.text == "First half\n\nsecond half."
