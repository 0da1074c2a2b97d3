"""The engine against a real ``amicable-sandbox-runtime`` process and the real HTTP client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from amicable_protocol.messages import UserData
from amicable_testing.fake_anthropic import Reply, Text, ToolUse


def user(text: str) -> UserData:
    return UserData(session_id="sess-1", text=text)


async def test_turn_with_the_real_runtime(
    fake_llm: Any, make_engine: Any, host: Any, real_runtime: Any, workspace: Path
) -> None:
    host.runtime = real_runtime
    fake, url = fake_llm
    fake.add(
        Reply([ToolUse("write_file", {"file_path": "/src/Hello.tsx", "content": "export const A = 1;\n"}),
               ToolUse("edit_file", {"file_path": "/src/App.tsx", "old_string": "<h9>", "new_string": "x"}),
               ToolUse("read_file", {"file_path": "/src/App.tsx"}),
               ToolUse("grep", {"pattern": "Hi", "path": "/src"}),
               ToolUse("glob", {"pattern": "**/*.tsx"}),
               ToolUse("ls", {"path": "/src"}),
               ToolUse("execute", {"command": "echo out; echo err >&2; exit 3"})]),
        Reply([Text("Done.")]),
    )  # fmt: skip
    engine = make_engine(url, qa_enabled=True, qa_commands=("test -f src/Hello.tsx",))
    await engine.run_user_turn(host, user("go"))
    assert (workspace / "src" / "Hello.tsx").read_text() == "export const A = 1;\n"
    results = [b for b in fake.view(1)["messages"][-1]["content"]]
    by_index = [r["content"] for r in results]
    assert [r["is_error"] for r in results] == [False, True, False, False, False, False, True]
    assert "exactly once" in by_index[1]
    assert by_index[2].startswith("     1\texport default function App()")
    assert "/src/App.tsx:2:" in by_index[3]
    assert "/src/Hello.tsx" in by_index[4]
    assert "App.tsx" in by_index[5]
    assert "out" in by_index[6]
    assert "err" in by_index[6]
    assert by_index[6].endswith("[Command exited with code 3]")
    assert not host.of("error")  # QA passed
    assert host.types()[-1] == "update_completed"


async def test_cancel_kills_the_command_in_the_real_runtime(
    fake_llm: Any, make_engine: Any, host: Any, real_runtime: Any, workspace: Path
) -> None:
    host.runtime = real_runtime
    fake, url = fake_llm
    fake.add(Reply([ToolUse("execute", {"command": "sleep 1000 & echo $! > child.pid; wait"})]))
    engine = make_engine(url)
    pid_file = workspace / "child.pid"
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.run_user_turn, host, user("run"))
            with trio.fail_after(30):
                while not pid_file.exists() or not pid_file.read_text().strip():
                    await trio.sleep(0.02)
            scope.cancel()
    child = int(pid_file.read_text())
    with trio.fail_after(10):  # the runtime kills the group when the stream closes
        while _alive(child):
            await trio.sleep(0.02)
    assert host.types()[-1] == "update_completed"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
