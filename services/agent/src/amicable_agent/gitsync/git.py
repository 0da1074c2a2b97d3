"""Run ``git`` for one cached repository, with the token only in the child's environment.

Authentication is an ``http.<GITLAB_BASE_URL>/.extraHeader`` passed through
``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``: it never appears in argv,
in a URL, in ``.git/config`` or in a log line, and git sends it only to the GitLab host.
Global and system git config are ignored, prompts are off, and every command runs in its
own process group under a deadline; cancellation kills the whole group (git spawns
``git-remote-https`` children).
"""

from __future__ import annotations

import logging
import os
import signal
from contextlib import suppress
from typing import TYPE_CHECKING

import attrs
import trio

from .config import basic_credentials, scrub
from .errors import GitCommandError, GitSyncError

if TYPE_CHECKING:
    from pathlib import Path

    from .config import GitSyncConfig

log = logging.getLogger(__name__)


@attrs.frozen
class GitResult:
    """What a finished git command printed."""

    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        """``stdout`` decoded and stripped."""
        return self.stdout.decode("utf-8", "replace").strip()


async def _kill_group(process: trio.Process) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def git_env(config: GitSyncConfig, home: Path) -> dict[str, str]:
    """The environment of every git child (the only place the token goes)."""
    settings = {
        "user.name": config.author_name,
        "user.email": config.author_email,
        "commit.gpgsign": "false",
        "core.hooksPath": os.devnull,
        "core.autocrlf": "false",
        "core.symlinks": "true",
        "core.quotepath": "false",
        "init.defaultBranch": config.branch,
        "gc.auto": "0",
        "credential.helper": "",
        # never follow a redirect elsewhere: we always use the repository's current URL
        "http.followRedirects": "false",
    }
    if config.token:
        settings[f"http.{config.base_url}/.extraHeader"] = (
            f"Authorization: Basic {basic_credentials(config.token)}"
        )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": config.author_name,
        "GIT_AUTHOR_EMAIL": config.author_email,
        "GIT_COMMITTER_NAME": config.author_name,
        "GIT_COMMITTER_EMAIL": config.author_email,
        "GIT_CONFIG_COUNT": str(len(settings)),
    }
    for index, (key, value) in enumerate(settings.items()):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


class Git:
    """``git --git-dir=<git_dir> [--work-tree=<tree>] …`` with the sync environment."""

    def __init__(self, config: GitSyncConfig, git_dir: Path) -> None:
        self._config = config
        self.git_dir = git_dir
        self._env = git_env(config, git_dir.parent)

    async def run(
        self,
        *args: str,
        work_tree: Path | None = None,
        stdin: bytes | None = None,
        check: bool = True,
        timeout_s: float | None = None,
    ) -> GitResult:
        """Run one git command and capture its output.

        Raises:
            GitCommandError: non-zero exit (with ``check``) or the deadline passed.

        Cancellation: the command's process group is killed.
        """
        argv = [self._config.git_executable, f"--git-dir={self.git_dir}"]
        if work_tree is not None:
            argv.append(f"--work-tree={work_tree}")
        argv.extend(args)
        limit = timeout_s or self._config.git_timeout_s
        log.debug("git %s", args[0])
        try:
            with trio.fail_after(limit):
                proc = await trio.run_process(
                    argv,
                    stdin=stdin if stdin is not None else b"",
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env=self._env,
                    cwd=str(work_tree or self.git_dir),
                    start_new_session=True,
                    deliver_cancel=_kill_group,
                )
        except trio.TooSlowError as exc:
            raise GitCommandError(args[0], None, f"after {limit:.0f}s") from exc
        stderr = scrub(proc.stderr.decode("utf-8", "replace"), self._config.token).strip()
        result = GitResult(proc.returncode, proc.stdout, stderr)
        if check and proc.returncode != 0:
            raise GitCommandError(args[0], proc.returncode, stderr[-600:])
        return result


def remote_error(exc: GitCommandError) -> GitSyncError:
    """A git failure talking to GitLab as a clear, token-free error."""
    out = exc.output
    if exc.returncode is None:
        return GitSyncError("git_remote_timeout", f"git {exc.command} timed out")
    for status, meaning in (
        ("403", "GitLab refused access (HTTP 403): the token lacks write_repository/api scope "
                "or the project is protected"),
        ("401", "GitLab rejected the credentials (HTTP 401): check GITLAB_TOKEN"),
        ("404", "the repository was not found on GitLab (HTTP 404)"),
    ):  # fmt: skip
        if f"error: {status}" in out or f"returned error: {status}" in out:
            return GitSyncError("git_remote_refused", f"git {exc.command}: {meaning}")
    if "Authentication failed" in out or "could not read Username" in out:
        return GitSyncError(
            "git_remote_refused",
            f"git {exc.command}: authentication failed (HTTP 401): check GITLAB_TOKEN",
        )
    return GitSyncError("git_remote_failed", f"git {exc.command}: {out[-400:]}")
