"""Pure logic: config from env, commit messages, excludes; deadlines on autojump_clock."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from amicable_agent.errors import ConfigError
from amicable_agent.gitsync import CommitMessage, GitLabApiError, GitSyncConfig, TurnSummary
from amicable_agent.gitsync.commits import turn_message, ui_sync_message
from amicable_agent.gitsync.config import DEFAULT_EXCLUDES, scrub
from amicable_agent.gitsync.gitlab import open_gitlab_client
from amicable_agent.gitsync.workspace import is_excluded

TOKEN = "glpat-abc"


def test_config_is_off_without_a_token_and_on_with_one(tmp_path: Path) -> None:
    assert GitSyncConfig.from_env({}).enabled is False
    on = GitSyncConfig.from_env({"GITLAB_TOKEN": TOKEN})
    assert on.enabled is True
    assert on.base_url == "https://git.mayflower.de"
    assert on.group_path == "amicable"
    assert on.branch == "main"
    assert on.visibility == "internal"
    assert on.excludes == DEFAULT_EXCLUDES
    assert TOKEN not in repr(on)
    off = GitSyncConfig.from_env({"GITLAB_TOKEN": TOKEN, "AMICABLE_GIT_SYNC_ENABLED": "0"})
    assert off.enabled is False
    with pytest.raises(ConfigError, match="GITLAB_TOKEN is not set"):
        GitSyncConfig.from_env({"AMICABLE_GIT_SYNC_ENABLED": "1"})
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    from_file = GitSyncConfig.from_env({"GITLAB_TOKEN_FILE": str(token_file)})
    assert from_file.token == TOKEN
    custom = GitSyncConfig.from_env(
        {
            "GITLAB_TOKEN": TOKEN,
            "GITLAB_BASE_URL": "https://gitlab.example.com/",
            "GITLAB_GROUP_PATH": "team/apps",
            "AMICABLE_GIT_SYNC_BRANCH": "amicable",
            "AMICABLE_GIT_SYNC_EXCLUDES": "node_modules/, *.log",
            "AMICABLE_GITLAB_REPO_VISIBILITY": "private",
            "AMICABLE_GIT_SYNC_CACHE_DIR": str(tmp_path),
            "AMICABLE_GIT_COMMIT_AUTHOR_NAME": "bot",
        }
    )
    assert custom.base_url == "https://gitlab.example.com"
    assert custom.group_path == "team/apps"
    assert custom.excludes == ("node_modules/", "*.log")
    assert custom.effective_excludes == (
        "node_modules/",
        "*.log",
        ".git/",
        ".amicable/",
        "amicable-db.js",
    )
    assert custom.cache_dir == tmp_path
    assert custom.author_name == "bot"
    for bad in (
        {"GITLAB_BASE_URL": "ftp://x"},
        {"AMICABLE_GIT_SYNC_BRANCH": "a..b"},
        {"AMICABLE_GITLAB_REPO_VISIBILITY": "secret"},
        {"AMICABLE_GIT_SYNC_ENABLED": "maybe"},
        {"AMICABLE_GIT_COMMAND_TIMEOUT_S": "-1"},
    ):
        with pytest.raises(ConfigError):
            GitSyncConfig.from_env({"GITLAB_TOKEN": TOKEN, **bad})


def test_scrub_hides_the_token_in_every_form() -> None:
    from amicable_agent.gitsync.config import basic_credentials

    text = f"url https://x/?t={TOKEN} auth Basic {basic_credentials(TOKEN)}"
    assert TOKEN not in scrub(text, TOKEN)
    assert basic_credentials(TOKEN) not in scrub(text, TOKEN)


def test_turn_messages_are_deterministic_and_bounded() -> None:
    long = (
        "Please build a todo app with drag and drop, dark mode, local storage and a very long tail"
    )
    turn = TurnSummary(long, "I built it.\n\nAll good.", "failed", "npm run build: exit 1")
    message = turn_message(turn)
    rendered = message.render("M\tsrc/App.tsx\nA\tsrc/Todo.tsx\n")
    assert rendered == turn_message(turn).render("M\tsrc/App.tsx\nA\tsrc/Todo.tsx\n")
    lines = rendered.splitlines()
    assert len(lines[0]) <= 72
    assert lines[0].endswith("...")
    assert lines[1] == ""
    assert "QA: failed (npm run build: exit 1)" in rendered
    assert "Request: " + long in rendered
    assert "Agent: I built it. All good." in rendered
    assert rendered.endswith("Changes:\n  M\tsrc/App.tsx\n  A\tsrc/Todo.tsx\n")
    short = turn_message(TurnSummary("  Fix\n the header  ", qa="passed")).render("M\ta")
    assert short.splitlines()[0] == "Fix the header"
    assert "Request:" not in short
    assert turn_message(TurnSummary("")).subject == "Agent turn"
    many = CommitMessage("x").render("\n".join(f"A\tf{i}" for i in range(250)))
    assert "... and 50 more" in many


def test_ui_sync_message_matches_upstream() -> None:
    import datetime as dt

    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert ui_sync_message("demo", at).subject == "UI sync (demo) 2026-01-02 03:04:05"


@pytest.mark.parametrize(
    ("path", "is_dir", "excluded"),
    [
        ("node_modules", True, True),
        ("node_modules/a/b.js", False, True),
        ("packages/x/node_modules/y.js", False, True),
        ("src/build.ts", False, False),
        ("build", False, False),  # "build/" matches directories only
        ("build/app.js", False, True),
        (".env", False, True),
        ("config/.env.production", False, True),
        ("environment.ts", False, False),
        ("bootstrap/cache/x.php", False, True),
        ("app/bootstrap/cache/x.php", False, False),  # anchored pattern
        (".amicable/git_state.json", False, True),
        ("src/App.tsx", False, False),
    ],
)
def test_excludes(path: str, is_dir: bool, excluded: bool) -> None:
    patterns = GitSyncConfig().effective_excludes
    assert is_excluded(path, is_dir, patterns) is excluded


async def test_a_gitlab_that_never_answers_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    held = []

    async def accept_and_hold(stream: trio.SocketStream) -> None:
        held.append(stream)
        await trio.sleep_forever()

    config = GitSyncConfig(
        enabled=True, token=TOKEN, base_url=f"http://127.0.0.1:{port}", api_timeout_s=30
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, accept_and_hold, listeners)
        async with open_gitlab_client(config) as client:
            start = trio.current_time()
            with pytest.raises(GitLabApiError) as info:
                await client.get_project("amicable/x")
            assert trio.current_time() - start == pytest.approx(30)
        nursery.cancel_scope.cancel()
    assert info.value.status == 0
    assert "timed out" in info.value.detail


async def test_a_hanging_git_command_times_out_and_its_process_group_is_killed(
    tmp_path: Path,
) -> None:
    # real clock: the script must get to write its pid before the (short) deadline
    from amicable_agent.gitsync.errors import GitCommandError
    from amicable_agent.gitsync.git import Git

    pid_file = tmp_path / "child.pid"
    hang = tmp_path / "git"
    hang.write_text(f"#!/bin/sh\nsleep 1000 &\necho $! > {pid_file}\nwait\n")
    hang.chmod(0o755)
    config = GitSyncConfig(enabled=True, token=TOKEN, git_executable=str(hang), git_timeout_s=3)
    (tmp_path / "repo.git").mkdir()
    with pytest.raises(GitCommandError) as info:
        await Git(config, tmp_path / "repo.git").run("fetch")
    assert info.value.returncode is None
    assert "timed out" in str(info.value)
    child = int(pid_file.read_text())
    with trio.move_on_after(30):  # the killed grandchild is reaped by init shortly
        while Path(f"/proc/{child}").exists() and _state(child) not in ("Z", "X"):
            await trio.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or _state(child) in ("Z", "X")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "X"
