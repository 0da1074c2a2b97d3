"""The template's protected files (``[files] protected``) are enforced on the model's
``execute`` tool, against a real ``amicable-sandbox-runtime`` and a real git checkpoint."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest
from amicable_agent.loop.protected import command_problem, protected_paths
from amicable_protocol.messages import ProjectInfo, UserData
from amicable_testing.fake_anthropic import Reply, Text, ToolUse

from .conftest import error_text

VITE = protected_paths("vite")


def test_the_vite_templates_protected_files_are_workspace_paths() -> None:
    assert "/package.json" in VITE
    assert "/src/main.tsx" in VITE
    assert protected_paths("no-such-template") == ()


@pytest.mark.parametrize(
    "command",
    [
        "rm package.json",
        "rm -f ./package.json",
        "rm /package.json",
        "npm run build && rm -rf src",
        "sudo unlink AGENTS.md",
        "git rm -q --cached index.html",
        "mv src/main.tsx src/old.tsx",
        "mv -f vite.config.ts /tmp/",
        "FOO=1 rm 'package-lock.json'",
        "echo hi; rm -r .",
    ],
)
def test_plain_deletes_of_protected_files_are_refused(command: str) -> None:
    assert command_problem(command, VITE) is not None


@pytest.mark.parametrize(
    "command",
    [
        "rm src/App.tsx",
        "rm -rf node_modules dist",
        "mv src/App.tsx src/Home.tsx",
        "mv notes.md package.json",  # overwriting is an edit, not a delete
        "echo rm package.json",
        "cat package.json | grep name",
        "cd src && rm -f old.tsx",
        "rm 'unbalanced",
    ],
)
def test_other_commands_pass_the_check(command: str) -> None:
    assert command_problem(command, VITE) is None


def _checkpoint(workspace: Path) -> None:
    """A checkpoint of the workspace as the sessions' checkpoints make it (a commit in the
    workspace's own ``.git``)."""
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(workspace),
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "Project created"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=workspace, env=env, check=True)


async def test_the_model_cannot_delete_protected_files(
    fake_llm: Any, make_engine: Any, host: Any, real_runtime: Any, workspace: Path
) -> None:
    host.runtime = real_runtime
    host.permission_mode = "bypass"  # no approvals: the policy alone must hold
    host.project = attrs.evolve(host.project, template_id="vite")
    assert isinstance(host.project, ProjectInfo)
    (workspace / "src" / "main.tsx").write_text("import './App';\n")
    (workspace / "index.html").write_text("<div id=root></div>\n")
    _checkpoint(workspace)
    (workspace / "package.json").write_text('{"name": "edited"}')  # after the checkpoint
    fake, url = fake_llm
    fake.add(
        Reply([ToolUse("execute", {"command": "rm package.json"}),
               ToolUse("execute", {"command": "cd src && rm main.tsx && echo gone"}),
               ToolUse("execute", {"command": "find . -name index.html -delete"}),
               ToolUse("execute", {"command": "rm src/App.tsx"}),
               ToolUse("write_file", {"file_path": "/AGENTS.md", "content": ""})]),
        Reply([Text("Done.")]),
    )  # fmt: skip
    await make_engine(url).run_user_turn(host, UserData(session_id="sess-1", text="go"))
    results = fake.view(1)["messages"][-1]["content"]
    texts = [r["content"] for r in results]

    refused = error_text(fake, "Policy denied: /package.json is a protected file")
    assert texts[0].startswith(refused)
    assert (workspace / "package.json").read_text() == '{"name": "edited"}'  # untouched

    assert texts[1].startswith(error_text(fake, "gone"))  # it ran, and is reported as a failure
    assert "deleted protected file(s) /src/main.tsx" in texts[1]
    assert "restored from the last checkpoint" in texts[1]
    assert (workspace / "src" / "main.tsx").read_text() == "import './App';\n"
    assert "/index.html; they were restored" in texts[2]
    assert (workspace / "index.html").read_text() == "<div id=root></div>\n"

    assert texts[3] == "[Command exited with code 0]"  # an unprotected file goes
    assert not (workspace / "src" / "App.tsx").exists()
    assert texts[4] == "Wrote 0 bytes to /AGENTS.md"  # emptying is an edit, not a delete
    assert (workspace / "AGENTS.md").read_text() == ""
    if fake.provider == "anthropic":
        assert [r.get("is_error", False) for r in results] == [True, True, True, False, False]


async def test_a_refused_delete_is_not_offered_for_approval(
    fake_llm: Any, make_engine: Any, host: Any, real_runtime: Any, workspace: Path
) -> None:
    host.runtime = real_runtime  # permission mode "default": rm needs approval otherwise
    host.project = attrs.evolve(host.project, template_id="vite")
    fake, url = fake_llm
    fake.add(
        Reply([ToolUse("execute", {"command": "rm -f package.json"})]),
        Reply([Text("Kept it.")]),
    )
    await make_engine(url).run_user_turn(host, UserData(session_id="sess-1", text="go"))
    assert not host.of("hitl_request")
    result = fake.view(1)["messages"][-1]["content"][0]["content"]
    assert result.startswith(error_text(fake, "Policy denied: /package.json is a protected"))
    assert (workspace / "package.json").exists()
