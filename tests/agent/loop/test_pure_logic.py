"""Pure, synchronous logic of the loop: safety, QA selection, config, redaction, compaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from amicable_agent.loop.autoheal import AutoHealLimiter, fingerprint_of
from amicable_agent.loop.compaction import compact, fit_context, repair, request_size
from amicable_agent.loop.model_api import TokenUsage
from amicable_agent.loop.models import estimate_cost_usd
from amicable_agent.loop.qa import (
    QaCheck,
    WorkspaceProbe,
    is_environment_failure,
    select_qa_commands,
)
from amicable_agent.loop.redact import known_secrets, redact_payload, redact_secrets, redact_text
from amicable_agent.loop.safety import is_catastrophic, is_destructive, needs_approval, write_denied
from amicable_agent.loop.settings import LoopConfigError, LoopSettings
from amicable_agent.loop.tools import number_lines, status_line
from amicable_protocol.messages import RuntimeErrorInfo
from amicable_testing.fake_anthropic import Reply, Text, ToolUse, stream_events


@pytest.mark.parametrize(
    "command",
    ["rm -rf /", "rm  -RF  /*", "cd /tmp && rm -rf /", "echo hi; shutdown -h now", "reboot",
     "mkfs.ext4 /dev/sda", "rm --no-preserve-root -r x", ":(){ :|:& };:", "(rm -rf /)"],
)  # fmt: skip
def test_catastrophic_commands(command: str) -> None:
    assert is_catastrophic(command)


@pytest.mark.parametrize(
    "command",
    ["rm -rf ./dist", "npm run build", "echo rebooted", "ls /", "rm -rf /tmp/x", "mkfsx"],
)
def test_not_catastrophic(command: str) -> None:
    assert not is_catastrophic(command)


@pytest.mark.parametrize(
    ("command", "expected"),
    [("rm a.txt", True), ("cd src && rm -r old", True), ("unlink x", True), ("rmdir d", True),
     ("shred -u k", True), ("git clean -fdx", True), ("git -C . clean -f", True),
     ("find . -name '*.log' -delete", True), ("npm run format", False), ("echo rm", False),
     ("git status", False), ("find . -name x", False), ("ls -la", False)],
)  # fmt: skip
def test_destructive_commands(command: str, expected: bool) -> None:
    assert is_destructive(command) is expected


def test_write_policy_by_mode() -> None:
    assert write_denied("/node_modules/react/index.js", "default")
    assert write_denied("node_modules/x", "default")
    assert write_denied("/src/../.git/config", "default")
    assert write_denied("/.git", "default")
    assert write_denied("/src/App.tsx", "default") is None
    assert write_denied("/node_modules/x", "accept_edits") is None
    assert write_denied("/.git/config", "bypass") is None


def test_needs_approval() -> None:
    rm = {"command": "rm a"}
    assert needs_approval("execute", rm, "default", frozenset())
    assert needs_approval("execute", rm, "accept_edits", frozenset())
    assert not needs_approval("execute", rm, "bypass", frozenset())
    assert not needs_approval("execute", {"command": "rm -rf /"}, "default", frozenset())
    assert needs_approval("write_file", {}, "default", frozenset({"write_file"}))
    assert not needs_approval("write_file", {}, "bypass", frozenset({"write_file"}))


def settings(**kw: object) -> LoopSettings:
    return LoopSettings(**kw)  # type: ignore[arg-type]


def probe(package: object = None, files: tuple[str, ...] = (), **kw: object) -> WorkspaceProbe:
    text = package if isinstance(package, str) or package is None else json.dumps(package)
    return WorkspaceProbe(text, frozenset(files), **kw)  # type: ignore[arg-type]


def test_qa_selection_from_scripts() -> None:
    pkg = {"scripts": {"build": "vite build", "test": "vitest", "typecheck": "tsc", "lint": "x"}}
    assert select_qa_commands(probe(pkg), settings()) == [
        "npm run -s lint", "npm run -s typecheck", "npm run -s build"]  # fmt: skip
    assert select_qa_commands(probe(pkg), settings(qa_run_tests=True)) == [
        "npm run -s lint", "npm run -s typecheck", "npm run -s test", "npm run -s build"]  # fmt: skip
    assert select_qa_commands(probe(pkg), settings(qa_commands=("make check",))) == ["make check"]


def test_qa_selection_fallbacks() -> None:
    bad = select_qa_commands(probe("{not json"), settings())
    assert isinstance(bad, QaCheck)
    assert (bad.command, bad.exit_code) == ("<parse package.json>", 2)
    assert isinstance(select_qa_commands(probe("[1]"), settings()), QaCheck)
    assert select_qa_commands(probe({"devDependencies": {"vite": "7"}}, ("tsconfig.json",)),
                              settings()) == ["npx --no-install tsc --noEmit",
                                              "npx --no-install vite build"]  # fmt: skip
    assert select_qa_commands(probe({}, ("vite.config.mjs",)), settings()) == [
        "npx --no-install vite build"]  # fmt: skip
    assert select_qa_commands(probe({}), settings()) == []
    assert select_qa_commands(probe(None, ("pyproject.toml",)), settings(qa_run_tests=True)) == [
        "python -m compileall -q .", "ruff check .", "pytest"]  # fmt: skip
    assert select_qa_commands(probe(None, ("pubspec.yaml",)), settings()) == [
        "flutter pub get", "flutter analyze"]  # fmt: skip
    assert select_qa_commands(probe(None, has_dotnet_project=True), settings()) == ["dotnet build"]
    quarkus = probe(None, ("pom.xml",), file_texts={"pom.xml": "<g>io.quarkus</g>"})
    assert select_qa_commands(quarkus, settings()) == ["./mvnw -q -DskipTests compile"]
    phoenix = probe(None, ("mix.exs",), file_texts={"mix.exs": '{:phoenix, "~> 1.7"}'})
    assert select_qa_commands(phoenix, settings()) == ["mix compile"]
    assert select_qa_commands(probe(None), settings()) == []


@pytest.mark.parametrize(
    ("check", "environment"),
    [(QaCheck("npm run -s build", 127, "sh: 1: npm: not found"), True),
     (QaCheck("flutter analyze", 127, "flutter: No such file or directory"), True),
     (QaCheck("dotnet build", 1, "bash: dotnet: command not found"), True),
     (QaCheck("x", 1, 'exec: "go": executable file not found in $PATH'), True),
     (QaCheck("npm run -s build", 2, "src/App.tsx(3,1): error TS2304: Cannot find name 'x'."), False),
     (QaCheck("npm run -s lint", 1, "Module not found: Error: Can't resolve './x'"), False)],
)  # fmt: skip
def test_environment_failures(check: QaCheck, environment: bool) -> None:
    assert is_environment_failure(check) is environment


def test_settings_from_env(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-ant-from-file\n")
    s = LoopSettings.from_env({
        "DEEPAGENTS_MODEL": "anthropic:claude-opus-4-6", "ANTHROPIC_API_KEY_FILE": str(key),
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:1", "AMICABLE_TURN_TIMEOUT_S": "120",
        "AMICABLE_TURN_MAX_TOOL_CALLS": "7", "AMICABLE_TURN_MAX_TOKENS": "50000",
        "DEEPAGENTS_QA": "false", "DEEPAGENTS_QA_COMMANDS": "npm run -s build, npm test",
        "DEEPAGENTS_QA_TIMEOUT_S": "30", "AMICABLE_QA_PARALLEL": "0",
        "DEEPAGENTS_SELF_HEAL_MAX_ROUNDS": "3",
        "DEEPAGENTS_HITL_INTERRUPT_ON_JSON": '{"write_file": true, "ls": false}',
        "AMICABLE_RUNTIME_AUTO_HEAL": "no", "AMICABLE_RUNTIME_AUTO_HEAL_COOLDOWN_S": "5",
        "AMICABLE_RUNTIME_AUTO_HEAL_MAX_ATTEMPTS_PER_FINGERPRINT": "4",
    })  # fmt: skip
    assert s.model == "claude-opus-4-6"
    assert s.api_key == "sk-ant-from-file"
    assert s.model_configured
    assert "sk-ant" not in repr(s)
    assert (s.base_url, s.turn_timeout_s, s.turn_max_tool_calls, s.turn_max_tokens) == (
        "http://127.0.0.1:1", 120.0, 7, 50000)  # fmt: skip
    assert (s.qa_enabled, s.qa_commands, s.qa_timeout_s, s.qa_parallel) == (
        False, ("npm run -s build", "npm test"), 30.0, False)  # fmt: skip
    assert s.self_heal_max_rounds == 3
    assert s.hitl_interrupt_on == frozenset({"write_file"})
    assert (s.auto_heal_enabled, s.auto_heal_cooldown_s) == (False, 5.0)
    assert s.auto_heal_max_attempts_per_fingerprint == 4
    defaults = LoopSettings.from_env({"AMICABLE_MODEL": "claude-haiku-4-5"})
    assert defaults.model == "claude-haiku-4-5"
    assert not defaults.model_configured
    assert (defaults.qa_enabled, defaults.qa_timeout_s, defaults.self_heal_max_rounds) == (
        True, 600.0, 2)  # fmt: skip
    with pytest.raises(LoopConfigError):
        LoopSettings.from_env({"AMICABLE_TURN_TIMEOUT_S": "soon"})
    with pytest.raises(LoopConfigError, match="DEEPAGENTS_MODEL"):
        LoopSettings.from_env({"DEEPAGENTS_MODEL": "mistral:large"})


def test_redaction() -> None:
    text = "token=abc123secret Authorization: Bearer abcdefghijkl sk-ant-api03-XYZXYZXYZXYZ"
    out = redact_text(text)
    assert "abc123secret" not in out
    assert "abcdefghijkl" not in out
    assert "XYZXYZ" not in out
    assert (
        redact_text("my key is hunter2-long", secrets=("hunter2-long",)) == "my key is [REDACTED]"
    )
    payload = redact_payload({"content": "a" * 5000, "api_key": "s", "nested": [{"b": "c"}]})
    assert payload["api_key"] == "[REDACTED]"
    assert len(payload["content"]) < 2100
    assert payload["nested"] == [{"b": "c"}]
    assert "base64 data" in redact_text("data:image/png;base64," + "A" * 300)


def test_redaction_replaces_whole_values() -> None:
    jwt = '{"type":"HS256","key":"k3y,with,commas"}'
    text = (
        f"HASURA_GRAPHQL_JWT_SECRET={jwt}\n"
        '  "apiKey": "abc,def\\"ghi",\n'
        "url=https://x.test/?token=t0k3n,more&page=2\n"
        "psql postgresql://u:p4ss,word@db/x\n"
        "GIT_AUTHOR_NAME=Ada\n"
    )
    out = redact_text(text)
    for part in ("k3y", "commas", "abc", "ghi", "t0k3n", "more", "p4ss", "word@"):
        assert part not in out, (part, out)
    assert "page=2" in out
    assert "GIT_AUTHOR_NAME=Ada" in out
    model = redact_secrets("const token = getToken();\nOPENAI_API_KEY=sk-x,y\n")
    assert model == "const token = getToken();\nOPENAI_API_KEY=[REDACTED]\n"


def test_known_secrets_come_from_secret_looking_names_and_json_leaves() -> None:
    env = {
        "HASURA_GRAPHQL_JWT_SECRET": '{"type":"HS256","key":"jwt-key-value"}',
        "OPENAI_API_KEY": "sk-openai-123456",
        "PATH": "/usr/bin:/bin",
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "SHORT_TOKEN": "abc",
    }
    found = known_secrets(env)
    assert set(found) == {env["HASURA_GRAPHQL_JWT_SECRET"], "jwt-key-value", "sk-openai-123456"}
    assert redact_secrets("the key is jwt-key-value", secrets=found) == "the key is [REDACTED]"


def test_repair_closes_dangling_tool_calls() -> None:
    messages = [
        {"role": "assistant", "content": "orphan"},
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ls", "input": {}},
                                          {"type": "tool_use", "id": "t2", "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"},
                                     {"type": "tool_result", "tool_use_id": "gone", "content": "y"}]},
    ]  # fmt: skip
    fixed = repair(messages)
    assert [m["role"] for m in fixed] == ["user", "assistant", "user"]
    assert [b["text"] for b in fixed[0]["content"]] == ["a", "b"]
    assert [b["tool_use_id"] for b in fixed[2]["content"]] == ["t1", "t2"]
    assert fixed[2]["content"][1]["is_error"]


def test_compaction_keeps_a_request_boundary() -> None:
    messages = []
    for i in range(10):
        messages += [
            {"role": "user", "content": f"User request:\nask {i}"},
            {"role": "assistant", "content": [{"type": "text", "text": f"ans {i}"},
                                              {"type": "tool_use", "id": f"t{i}", "name": "write_file",
                                               "input": {"file_path": f"/f{i}.ts"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "ok"}]},
        ]  # fmt: skip
    assert compact(messages, "", trigger=50, keep=5) is None
    result = compact(messages, "earlier stuff", trigger=20, keep=5)
    assert result is not None
    kept, summary = result
    assert kept[0] == {"role": "user", "content": "User request:\nask 8"}
    assert summary.startswith("earlier stuff\n- The user asked: ask 0")
    assert "/f0.ts" in summary
    assert "ask 8" not in summary


def test_fit_context_cuts_old_tool_output_only() -> None:
    big = "x" * 50_000
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": big}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "b", "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "b", "content": big}]},
    ]  # fmt: skip
    assert fit_context(messages, 10**6) is messages
    fitted = fit_context(messages, 60_000)
    assert request_size(fitted) < 60_000
    assert fitted[4]["content"][0]["content"] == big
    assert "chars omitted" in fitted[2]["content"][0]["content"]
    assert messages[2]["content"][0]["content"] == big  # the stored history is untouched


def test_autoheal_limiter_on_plain_numbers() -> None:
    limiter = AutoHealLimiter(cooldown_s=30, window_s=600, max_attempts=2)
    assert limiter.decide("a", 0) == "run"
    limiter.record("a", 0)
    assert limiter.decide("b", 10) == "cooldown"
    assert limiter.decide("a", 31) == "run"
    limiter.record("a", 31)
    assert limiter.decide("a", 100) == "paused"
    assert limiter.decide("b", 100) == "run"
    assert limiter.decide("a", 632) == "run"  # the first attempt left the window
    info = RuntimeErrorInfo(kind="k", message="m")
    assert fingerprint_of(info).startswith("rt_")
    assert len(fingerprint_of(info)) == 19
    assert fingerprint_of(info) == fingerprint_of(RuntimeErrorInfo(kind="k", message="m"))


def test_numbered_lines_and_status_lines() -> None:
    assert number_lines("a\nb\nc\n", 0, 2) == "     1\ta\n     2\tb\n… 1 more lines (use offset=2)"
    assert number_lines("a\n", 5, 1).startswith("Error: offset 5")
    assert number_lines("") == "(empty file)"
    assert status_line("execute", {"command": "x" * 200}) == "Running " + "x" * 120
    assert status_line("edit_file", {"file_path": "/a"}) == "Editing /a"
    assert status_line("ls", {}) is None


def test_cost_estimate() -> None:
    usage = TokenUsage(1_000_000, 1_000_000, 1_000_000, 1_000_000)
    assert estimate_cost_usd("claude-sonnet-5-5", usage) == pytest.approx(3 + 15 + 0.3 + 3.75)
    assert estimate_cost_usd("claude-haiku-4-5", usage) == pytest.approx(1 + 5 + 0.1 + 1.25)
    assert estimate_cost_usd("unknown-model", usage) == 0.0


def test_fake_stream_is_the_documented_event_sequence() -> None:
    events = stream_events(
        Reply([Text("Hi there", chunk=4), ToolUse("ls", {"path": "/"}, id="toolu_1")]), "m"
    )
    names = [name for name, _ in events]
    assert names == ["message_start", "ping",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    assert events[6][1]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "ls",
        "input": {},
    }
    partial = "".join(e[1]["delta"]["partial_json"] for e in events[7:9])
    assert json.loads(partial) == {"path": "/"}
    assert events[10][1]["delta"]["stop_reason"] == "tool_use"


def test_fit_context_drops_old_images_last() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "A" * 100_000}}  # fmt: skip
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "like this"}, image]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {"role": "user", "content": [{"type": "text", "text": "and this"}, image]},
    ]
    # An image counts as what the model is billed for (IMAGE_CHARS), not its base64 length:
    # two 100 kB images fit a 150 k budget untouched.
    assert fit_context(messages, 150_000) is messages
    fitted = fit_context(messages, 10_000)
    assert fitted[0]["content"][1] == {"type": "text", "text": "[image omitted from the history]"}
    assert fitted[2]["content"][1] == image
