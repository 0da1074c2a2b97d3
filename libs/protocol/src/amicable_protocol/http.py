"""Bodies of the HTTP APIs (agent ``/api``, runtime ``/v1``, router): the error body every
API answers with, and the agent's checkpoint diff."""

from __future__ import annotations

from typing import Literal

import attrs


@attrs.frozen
class ErrorBody:
    """``{"error": code, "detail": message}`` — the existing API's error shape.

    ``error`` is a stable machine code (``not_found``, ``conflict``, ``invalid_path`` …);
    ``detail`` is a sentence for people.
    """

    error: str
    detail: str | None = None


#: How a file changed in a checkpoint (git's status letters A, M, D, R, C, T).
FileChangeStatus = Literal["added", "modified", "deleted", "renamed", "copied", "type_changed"]


@attrs.frozen
class DiffHunk:
    """One ``@@ -old_start,old_lines +new_start,new_lines @@ header`` block of a unified diff.

    ``lines`` are the hunk's lines as git prints them: each starts with ``" "`` (context),
    ``"+"``, ``"-"`` or ``"\\"`` (``\\ No newline at end of file``).
    """

    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    header: str
    lines: tuple[str, ...]


@attrs.frozen
class FileDiff:
    """One changed file of a checkpoint.

    Attributes:
        path: its workspace path after the change (``/src/App.tsx``).
        status: how it changed.
        old_path: the path before a rename or copy.
        binary: git treats it as binary (no hunks; named only).
        additions: lines added (0 for binary files).
        deletions: lines removed.
        too_large: its hunks were left out (the file's diff, or the checkpoint's, is over
            the size cap); the counts are still right.
        hunks: the unified diff.
    """

    path: str
    status: FileChangeStatus
    old_path: str | None = None
    binary: bool = False
    additions: int = 0
    deletions: int = 0
    too_large: bool = False
    hunks: tuple[DiffHunk, ...] = ()


@attrs.frozen
class CheckpointDiff:
    """``GET /api/sandbox/<id>/checkpoints/<sha>/diff``: what a checkpoint changed.

    Attributes:
        sha: the checkpoint's full id.
        parent: the checkpoint before it (None for the first: the diff is against nothing).
        title: the checkpoint's title.
        files_changed: how many files changed (all of them, even when ``files`` lists fewer).
        additions: lines added in all files.
        deletions: lines removed in all files.
        files: the changed files, in git's order (path order).
        truncated: something was left out: a file's hunks (``too_large``) or files past
            the listing cap (``files_changed > len(files)``).
        max_diff_bytes: the cap of the whole diff's text.
        max_file_diff_bytes: the cap of one file's diff text.
    """

    sha: str
    parent: str | None
    title: str
    files_changed: int
    additions: int
    deletions: int
    files: tuple[FileDiff, ...]
    truncated: bool
    max_diff_bytes: int
    max_file_diff_bytes: int
