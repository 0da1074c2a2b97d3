"""Plain word-list commands are exec'd without the shell, with exactly the shell's results."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from amicable_protocol.runtime import ExecRequest
from amicable_sandbox_runtime import execs, plaincmd

if TYPE_CHECKING:
    from pathlib import Path

#: Each must give the same exit code, stdout and stderr exec'd directly and through sh.
DIRECT = [
    "ls",
    "  ls   -a  sub ",
    "printenv PWD",
    "ls nonexistent",
    "grep -c x=y data.txt",
    "./tool.sh one two",
    "sub/../tool.sh",
    "cat data.txt",
]
VIA_SHELL = [
    "nonexistent-command-xyz",
    "nonexistent-command-xyz arg",
    "./noshebang.sh",
    "./notexec.sh",
    "./missing.sh",
    "cd sub",
    "exit 3",
    "export A=1",
    "A=1 env",
    "echo $HOME",
    "ls *.txt",
    "ls ~",
    "echo 'a b'",
    'echo "a b"',
    "ls > out.txt",
    "true --help",
    "echo -e hi",
    "pwd",
    "ls; exit 4",
    "ls # comment",
    "kill -l 9",
    "printf %s",
    "test -d sub",
    "[ -d sub ]",
    "ls\nexit 5",
    "",
    "   ",
]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "file").write_text("")
    (tmp_path / "data.txt").write_text("x=y\nz\n")
    tool = tmp_path / "tool.sh"
    tool.write_text('#!/bin/sh\necho "tool:$#:$*:$0"; echo warn >&2; exit 7\n')
    tool.chmod(0o755)
    noshebang = tmp_path / "noshebang.sh"
    noshebang.write_text("echo from-a-script-without-shebang\n")
    noshebang.chmod(0o755)
    (tmp_path / "notexec.sh").write_text("#!/bin/sh\necho never\n")
    return tmp_path


async def run(cwd: Path, command: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = await execs.run_collected(
        ExecRequest(command=command, env=env), cwd=cwd, default_timeout_s=30, max_output_chars=10**6
    )
    return result.exit_code, result.stdout, result.stderr


async def via_shell(monkeypatch: pytest.MonkeyPatch, *args: object) -> tuple[int, str, str]:
    with monkeypatch.context() as patch:
        patch.setattr(execs, "plain_argv", lambda *_: None)
        return await run(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", DIRECT + VIA_SHELL)
async def test_same_result_as_the_shell(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    for cwd in (workspace, workspace / "sub"):
        direct = await run(cwd, command)
        shell = await via_shell(monkeypatch, cwd, command)
        assert direct == shell


async def test_same_environment_as_the_shell(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the same variables; only their order differs (dash rebuilds the block from a hash table)
    for cwd in (workspace, workspace / "sub"):
        code, out, err = await run(cwd, "env")
        assert plaincmd.plain_argv("env", str(cwd), {"PATH": "/usr/bin:/bin"}) is not None
        shell_code, shell_out, shell_err = await via_shell(monkeypatch, cwd, "env")
        assert (code, err) == (shell_code, shell_err) == (0, "")
        assert sorted(out.splitlines()) == sorted(shell_out.splitlines())
        assert f"PWD={cwd.resolve()}" in out.splitlines()


@pytest.mark.parametrize("command", DIRECT)
def test_plain_commands_are_recognised(workspace: Path, command: str) -> None:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    assert plaincmd.plain_argv(command, str(workspace), env) is not None


@pytest.mark.parametrize("command", VIA_SHELL)
def test_other_commands_go_through_the_shell(workspace: Path, command: str) -> None:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    plain = plaincmd.plain_argv(command, str(workspace), env)
    # ./noshebang.sh and ./notexec.sh: the first is found (the exec fails and falls back),
    # the second is not executable
    assert plain is None or command == "./noshebang.sh"


@pytest.mark.parametrize(
    "env",
    [
        {"PATH": ""},
        {"PATH": "bin:/usr/bin"},
        {"PATH": ":/usr/bin"},
        {"PATH": "/usr/bin", "IFS": ","},
        {"PATH": "/usr/bin", "OPTIND": "3"},
        {},
    ],
)
def test_unusual_environments_go_through_the_shell(workspace: Path, env: dict[str, str]) -> None:
    assert plaincmd.plain_argv("ls", str(workspace), env) is None


async def test_a_plain_command_is_its_own_process_group_leader(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /proc/self/stat: "pid (comm) state ppid pgrp ...": exec'd directly, the program leads
    # the new group itself; through the shell it is the shell's child
    def pid_and_group(stat: str) -> tuple[str, str]:
        return stat.split()[0], stat.rsplit(")", 1)[1].split()[2]

    _, out, _ = await run(workspace, "cat /proc/self/stat")
    pid, group = pid_and_group(out)
    assert pid == group
    _, out, _ = await via_shell(monkeypatch, workspace, "cat /proc/self/stat")
    pid, group = pid_and_group(out)
    assert pid != group


async def test_pwd_follows_the_shell(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = workspace / "link"
    link.symlink_to(workspace / "sub")
    for env in ({"PWD": str(link)}, {"PWD": str(workspace)}, {"PWD": "relative"}):
        direct = await run(workspace / "sub", "printenv PWD", env)
        assert direct == await via_shell(monkeypatch, workspace / "sub", "printenv PWD", env)
    assert direct[1] == f"{(workspace / 'sub').resolve()}\n"
