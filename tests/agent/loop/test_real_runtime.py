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


def _heredoc(size: int) -> tuple[str, str]:
    """A command that writes ``size`` bytes of text to ``big.txt``, and that text."""
    line = "0123456789abcdef" * 4 + "\n"
    text = line * (size // len(line))
    return f"cat > big.txt <<'EOF'\n{text}EOF\nwc -c < big.txt", text


async def test_the_runtime_client_runs_a_200_kib_command(
    real_runtime: Any, workspace: Path
) -> None:
    command, text = _heredoc(200 * 1024)
    result = await real_runtime.exec(command)
    assert (result.exit_code, result.stdout.strip()) == (0, str(len(text)))
    items = []
    async with real_runtime.open_exec_stream(command) as stream:
        items = [item async for item in stream]
    assert items[-1].exit_code == 0
    assert (workspace / "big.txt").read_text() == text


async def test_runtime_errors_keep_their_codes_in_the_client(real_runtime: Any) -> None:
    from amicable_agent.errors import RuntimeClientError
    from amicable_protocol import MAX_COMMAND_BYTES

    too_long = "true " + "x" * MAX_COMMAND_BYTES
    huge = "true " + "x" * (20 * 1024 * 1024)  # more than a runtime frame may carry
    attempts = {
        "exec": lambda: real_runtime.exec(too_long),
        "huge exec": lambda: real_runtime.exec(huge),
        "stream": lambda: _drain(real_runtime, too_long),
        "huge stream": lambda: _drain(real_runtime, huge),
        "write": lambda: real_runtime.write_file("/" + "a" * 256, b"x"),
        "read": lambda: real_runtime.read_file("/src/" + "é" * 128),
        "mkdir": lambda: real_runtime.mkdir("/".join(["d" * 200] * 21)),
        "cwd": lambda: real_runtime.exec("true", cwd="/" + "c" * 300),
        "env": lambda: real_runtime.exec("true", env={"BIG": "x" * 200_000}),
    }
    codes = {}
    for name, attempt in attempts.items():
        try:
            await attempt()
        except RuntimeClientError as exc:
            codes[name] = exc.code
    assert codes == {
        "exec": "command_too_long",
        "huge exec": "command_too_long",
        "stream": "command_too_long",
        "huge stream": "command_too_long",
        "write": "path_too_long",
        "read": "path_too_long",
        "mkdir": "path_too_long",
        "cwd": "path_too_long",
        "env": "exec_failed",
    }


async def _drain(runtime: Any, command: str) -> None:
    async with runtime.open_exec_stream(command) as stream:
        async for _ in stream:
            pass


async def test_the_model_and_the_editor_see_the_runtimes_codes(
    fake_llm: Any, make_engine: Any, host: Any, real_runtime: Any, workspace: Path
) -> None:
    from amicable_protocol import MAX_COMMAND_BYTES

    host.runtime = real_runtime
    fake, url = fake_llm
    long_command, text = _heredoc(200 * 1024)
    fake.add(
        Reply([ToolUse("execute", {"command": long_command}),
               ToolUse("execute", {"command": "true " + "x" * MAX_COMMAND_BYTES}),
               ToolUse("write_file", {"file_path": "/" + "a" * 256, "content": "x"}),
               ToolUse("read_file", {"file_path": "/src/" + "é" * 128})]),
        Reply([Text("Done.")]),
    )  # fmt: skip
    await make_engine(url).run_user_turn(host, user("go"))
    results = fake.view(1)["messages"][-1]["content"]
    assert [r["is_error"] for r in results] == [False, True, True, True]
    assert results[0]["content"].endswith("[Command exited with code 0]")
    assert (workspace / "big.txt").read_text() == text
    for result, code in zip(
        results[1:], ["command_too_long", "path_too_long", "path_too_long"], strict=True
    ):
        assert result["content"].startswith(f"Error: {code}: "), result["content"][:200]
    errors = [t.error for t in host.traces("tool_error")]
    assert [e.split(":")[1].strip() for e in errors] == [
        "command_too_long",
        "path_too_long",
        "path_too_long",
    ]
    assert not any("not reachable" in (e or "") for e in errors)
