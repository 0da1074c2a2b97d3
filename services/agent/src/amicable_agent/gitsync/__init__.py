"""GitLab persistence: each project is a repository that gets a commit after each turn.

Optional and best-effort (see ``docs/kubernetes.md``, "GitLab persistence"). Entry points:
:func:`open_git_sync` (None when disabled), :class:`GitSync` (project hooks, sync, status,
pull), :func:`sync_after_turn` (the session's background step), :func:`open_workspace`
(a sandbox as seen by sync), and ``amicable_agent.http.git`` for the HTTP routes.
"""

from __future__ import annotations

from .commits import CommitMessage, TurnSummary, turn_message, ui_sync_message
from .config import DEFAULT_EXCLUDES, GitSyncConfig
from .engine import GitSync, open_git_sync
from .errors import GitCommandError, GitLabApiError, GitSyncError
from .hooks import (
    PROGRESS_TEXT,
    best_effort,
    message_callbacks,
    prepare_sandbox,
    sync_after_turn,
)
from .observer import TurnObserver
from .pull import NoBaseline, PullResult
from .records import ProjectRef, RepoRecord, StatusResult, SyncResult
from .workspace import Workspace, open_workspace

__all__ = [
    "DEFAULT_EXCLUDES",
    "PROGRESS_TEXT",
    "CommitMessage",
    "GitCommandError",
    "GitLabApiError",
    "GitSync",
    "GitSyncConfig",
    "GitSyncError",
    "NoBaseline",
    "ProjectRef",
    "PullResult",
    "RepoRecord",
    "StatusResult",
    "SyncResult",
    "TurnObserver",
    "TurnSummary",
    "Workspace",
    "best_effort",
    "message_callbacks",
    "open_git_sync",
    "open_workspace",
    "prepare_sandbox",
    "sync_after_turn",
    "turn_message",
    "ui_sync_message",
]
