"""Errors of GitLab persistence (a subtree of :class:`amicable_agent.errors.AgentError`).

Exception tree::

    AgentError
    └── GitSyncError                 git sync could not do what was asked (``code``, ``detail``)
        ├── GitLabApiError           the GitLab REST API answered with an error or not at all
        │                            (``status`` 0 = unreachable/timeout)
        ├── GitCommandError          a ``git`` command failed or timed out (``command`` is the
        │                            git subcommand, never argv with secrets)
        └── NoBaseline               a pull into a sandbox that was never synced
                                     (defined in :mod:`amicable_agent.gitsync.pull`)

``detail`` is always safe to show and to log: it never contains the token (messages from
git and GitLab pass through :func:`amicable_agent.gitsync.config.scrub` first).
"""

from __future__ import annotations

from amicable_agent.errors import AgentError


class GitSyncError(AgentError):
    """Git sync failed; ``code`` is a stable machine code, ``detail`` a safe sentence."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class GitLabApiError(GitSyncError):
    """GitLab answered ``status`` >= 400, or nothing (``status`` 0)."""

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__("gitlab_error", f"GitLab {status or 'unreachable'}: {detail}".strip())
        self.status = status


class GitCommandError(GitSyncError):
    """``git <command>`` exited non-zero (``returncode``) or timed out (``returncode`` None)."""

    def __init__(self, command: str, returncode: int | None, output: str) -> None:
        what = "timed out" if returncode is None else f"exited with {returncode}"
        super().__init__("git_failed", f"git {command} {what}: {output}".strip())
        self.command = command
        self.returncode = returncode
        self.output = output
