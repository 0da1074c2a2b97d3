"""Checkpoints: a git history of a project's files, kept in the sandbox's own ``/.git``.

A checkpoint is a commit in a repository *inside* the sandbox workspace, driven through the
runtime's exec API (:meth:`~amicable_agent.loop.api.RuntimeClient.exec`); the scripts and
their parsing live in :mod:`._git_scripts`.

The repository is created lazily with a baseline checkpoint ("Project created").
Platform state, ``node_modules/``, build output, caches and logs are ignored through
``.git/info/exclude`` (the user's ``.gitignore`` never changes), and a file bigger than the
:class:`CheckpointPolicy`'s ``max_file_bytes`` is left out with a note in the checkpoint
(:attr:`Checkpoint.skipped`). The disk used by the history is reported
(:meth:`Checkpoints.history`) and capped: past ``max_history_bytes`` git's garbage is
collected (``git gc --prune=now``) and, if that is not enough, new checkpoints are refused
(``history_full``) rather than filling the sandbox's disk.

Restoring makes the working tree equal to a checkpoint's tree (``git read-tree -u
--reset``: tracked files restored, files added later removed, ignored files such as
``node_modules`` untouched) and records that as a new checkpoint, so a restore can itself be
undone. Uncommitted changes are saved first as their own checkpoint.

The caller serialises writes (:class:`~.checkpoint_queue.CheckpointQueue`, and a restore
holds the session's turns and that queue). A write that was cut (cancelled, timed out) is
cleaned up by the next one, or at once by :meth:`Checkpoints.recover`.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Literal, Protocol

import attrs

from amicable_agent.errors import CheckpointError, RuntimeClientError

from ._diff_scripts import DiffLimits, diff_script, parse_diff
from ._git_scripts import (
    EXCLUDES,
    GIT_ENV,
    GIT_MISSING_EXIT,
    HISTORY_FULL_EXIT,
    LOG_FORMAT,
    NOT_FOUND_EXIT,
    REQUIRE_GIT,
    Checkpoint,
    SkippedFile,
    commit_message,
    commit_script,
    git,
    history_script,
    parse_history_bytes,
    parse_log,
    parse_stage,
    recover_script,
    restore_script,
    split_after_commit,
    stage_script,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from amicable_protocol.http import CheckpointDiff
    from amicable_protocol.runtime import ExecResult

    from amicable_agent.loop.api import RuntimeClient

__all__ = [
    "BASELINE_TITLE",
    "EXCLUDES",
    "GIT_ENV",
    "Checkpoint",
    "CheckpointPolicy",
    "Checkpoints",
    "DiffLimits",
    "History",
    "RestoreResult",
    "SkippedFile",
    "clean_title",
    "format_bytes",
    "parse_log",
    "valid_diff_sha",
    "valid_sha",
]

log = logging.getLogger(__name__)

#: The newest checkpoints listed.
MAX_CHECKPOINTS = 100
BASELINE_TITLE = "Project created"
SAVED_TITLE = "Changes before restore"
RESTORED_PREFIX = "Restored to: "
#: Title prefix of the checkpoint of a turn that was cancelled or failed.
INTERRUPTED_PREFIX = "interrupted: "
MAX_TITLE_CHARS = 120
#: A restore that changes one of these runs :data:`INSTALL_COMMAND`.
DEPENDENCY_FILES = frozenset({"package.json", "package-lock.json"})
INSTALL_COMMAND = "npm install --no-audit --no-fund"
GIT_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 300.0
#: Default of ``AMICABLE_CHECKPOINT_MAX_FILE_BYTES``.
DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024
#: Default of ``AMICABLE_CHECKPOINT_MAX_HISTORY_BYTES``.
DEFAULT_MAX_HISTORY_BYTES = 1024 * 1024 * 1024
_SHA = re.compile(r"[0-9a-f]{7,40}")
_DIFF_SHA = re.compile(r"[0-9a-fA-F]{4,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@attrs.frozen
class CheckpointPolicy:
    """What goes into a checkpoint, and how much disk a project's history may use.

    Attributes:
        max_file_bytes: a file bigger than this is left out of checkpoints (and listed in
            the checkpoint's ``skipped``); 0 = no limit.
        max_history_bytes: past this, ``.git`` is garbage-collected; if it stays past it,
            new checkpoints are refused (``history_full``); 0 = no cap.
    """

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_history_bytes: int = DEFAULT_MAX_HISTORY_BYTES


@attrs.frozen
class History:
    """A project's checkpoints and the disk they use (the checkpoints list API's body).

    Attributes:
        checkpoints: the newest checkpoints, newest first.
        history_bytes: disk used by the repository (``.git``).
        max_history_bytes: the cap (0 = none).
    """

    checkpoints: tuple[Checkpoint, ...]
    history_bytes: int
    max_history_bytes: int


DependencyOutcome = Literal["unchanged", "installed", "failed"]


@attrs.frozen
class RestoreResult:
    """What :meth:`Checkpoints.restore` did.

    Attributes:
        target: the checkpoint restored.
        checkpoint: the new checkpoint recording the restore ("Restored to: …").
        saved: the checkpoint of uncommitted changes saved before restoring, if any.
        changed_paths: workspace paths (``/src/App.tsx``) whose content changed.
        dependencies: whether ``npm install`` ran (package.json/package-lock.json changed).
    """

    target: Checkpoint
    checkpoint: Checkpoint
    saved: Checkpoint | None
    changed_paths: tuple[str, ...]
    dependencies: DependencyOutcome


class AfterCommit(Protocol):
    """Shell that runs in a commit's own exec, right after the commit."""

    async def script(self) -> str | None:
        """The shell to run (None: nothing this time)."""
        ...

    def printed(self, stdout: str) -> None:
        """What it printed (only when it ran)."""
        ...


def valid_sha(raw: str) -> str | None:
    """``raw`` lower-cased if it is 7-40 hex digits, else None (checked before any command)."""
    sha = raw.strip().lower()
    return sha if _SHA.fullmatch(sha) else None


def valid_diff_sha(raw: str) -> str | None:
    """``raw`` lower-cased if it is exactly 4-64 hex digits (an abbreviated or full SHA-1 or
    SHA-256 id; nothing stripped), else None."""
    return raw.lower() if _DIFF_SHA.fullmatch(raw) else None


def clean_title(text: str) -> str:
    """A one-line commit subject: whitespace collapsed, control characters dropped, capped."""
    line = " ".join(_CONTROL.sub(" ", text).split())
    if len(line) > MAX_TITLE_CHARS:
        line = line[: MAX_TITLE_CHARS - 1].rstrip() + "…"
    return line or "Update the app"


def format_bytes(size: int) -> str:
    """``1.5 GB``, ``52 MB``, ``900 kB``, ``12 bytes`` (decimal units, for people)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} bytes"


def history_full_detail(history_bytes: int, policy: CheckpointPolicy) -> str:
    """The note shown when new checkpoints are refused because the history is full."""
    return (
        f"Checkpoints are paused: this project's history uses {format_bytes(history_bytes)}, "
        f"more than the {format_bytes(policy.max_history_bytes)} allowed "
        "(AMICABLE_CHECKPOINT_MAX_HISTORY_BYTES), even after cleaning up. Your files are "
        "not affected; earlier checkpoints can still be restored."
    )


class Checkpoints:
    """List, create and restore checkpoints of one sandbox.

    Args:
        runtime: the sandbox's runtime client.
        policy: size limits (defaults: :data:`DEFAULT_MAX_FILE_BYTES`,
            :data:`DEFAULT_MAX_HISTORY_BYTES`).
        timeout_s: deadline of each git command (also passed to the runtime).
        install_command: run after a restore that changed the dependencies.
        install_timeout_s: its deadline.
        after_commit: shell run in the same exec right after each commit (the snapshot's
            bundle: :meth:`.snapshots.Snapshots.preparer`), saving a round trip.

    Cancellation: cancelling a call cancels the exec; the runtime kills the command's
    process group. What git leaves behind (partial packs, locks) is removed by the next
    write or by :meth:`recover`.
    """

    def __init__(
        self,
        runtime: RuntimeClient,
        *,
        policy: CheckpointPolicy | None = None,
        timeout_s: float = GIT_TIMEOUT_S,
        install_command: str = INSTALL_COMMAND,
        install_timeout_s: float = INSTALL_TIMEOUT_S,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self._runtime = runtime
        self._after_commit = after_commit
        self._policy = policy or CheckpointPolicy()
        self._timeout_s = timeout_s
        self._install_command = install_command
        self._install_timeout_s = install_timeout_s

    @property
    def policy(self) -> CheckpointPolicy:
        """The size limits in force."""
        return self._policy

    async def _run(self, script: str) -> ExecResult:
        try:
            result = await self._runtime.exec(script, env=GIT_ENV, timeout_s=self._timeout_s)
        except RuntimeClientError as exc:
            raise CheckpointError("git_failed", f"the sandbox did not run git: {exc}") from exc
        if result.exit_code == GIT_MISSING_EXIT and "not installed" in result.stderr:
            raise CheckpointError(
                "git_unavailable",
                "Checkpoints need git in the sandbox, and it is not installed there.",
            )
        if result.timed_out:
            raise CheckpointError("git_failed", "git did not finish in time")
        return result

    async def _check(self, script: str) -> str:
        result = await self._run(script)
        if result.exit_code == NOT_FOUND_EXIT:
            raise CheckpointError("not_found", "no such checkpoint")
        if result.exit_code == HISTORY_FULL_EXIT:
            size = parse_history_bytes(result.stdout)
            raise CheckpointError("history_full", history_full_detail(size, self._policy))
        if result.exit_code != 0:
            detail = (result.stderr or result.stdout).strip()[-500:]
            raise CheckpointError("git_failed", detail or f"git exited with {result.exit_code}")
        return result.stdout

    async def ensure(self) -> None:
        """Create the repository with its baseline checkpoint if it does not exist yet.

        Raises:
            CheckpointError: git is missing or failed, or ``history_full``.
        """
        await self._commit(BASELINE_TITLE, baseline_only=True)

    async def list(self, limit: int = MAX_CHECKPOINTS) -> list[Checkpoint]:
        """The newest ``limit`` checkpoints, newest first ([] before the first one).

        Raises:
            CheckpointError: git is missing or failed.
        """
        return list((await self.history(limit)).checkpoints)

    async def history(self, limit: int = MAX_CHECKPOINTS) -> History:
        """The newest ``limit`` checkpoints and the disk the history uses.

        Raises:
            CheckpointError: git is missing or failed.
        """
        out = await self._check(history_script(limit))
        return History(
            tuple(parse_log(out)), parse_history_bytes(out), self._policy.max_history_bytes
        )

    async def create(
        self, title: str, *, subject: Callable[[], Awaitable[str | None]] | None = None
    ) -> Checkpoint | None:
        """Commit every change (``git add -A``) as a checkpoint titled ``title``; files over
        the size limit are left out and listed in its ``skipped``. When something changed,
        ``subject()`` may write a better subject (the small model); ``title`` then becomes
        the commit's body.

        Returns:
            The new checkpoint, or None when nothing changed since the last one (or the
            repository was new: the changes went into its baseline).

        Raises:
            CheckpointError: git is missing or failed, or ``history_full``.
        """
        return await self._commit(title, baseline_only=False, subject=subject)

    async def _commit(
        self,
        title: str,
        *,
        baseline_only: bool,
        subject: Callable[[], Awaitable[str | None]] | None = None,
    ) -> Checkpoint | None:
        policy = self._policy
        staged = parse_stage(
            await self._check(
                stage_script(
                    max_file_bytes=policy.max_file_bytes,
                    max_history_bytes=policy.max_history_bytes,
                    baseline_only=baseline_only,
                )
            )
        )
        if staged.has_head and (baseline_only or not staged.changed):
            return None
        if staged.skipped:
            shown = ", ".join(f"{s.path} ({format_bytes(s.bytes)})" for s in staged.skipped[:5])
            log.info("checkpoint leaves out %d big file(s): %s", len(staged.skipped), shown)
        body = ""
        if subject is not None and staged.has_head and (written := await subject()):
            title, body = written, title
        line = clean_title(title) if staged.has_head else BASELINE_TITLE
        message = commit_message(line, staged.skipped, policy.max_file_bytes, body=body)
        hook = self._after_commit
        after = await hook.script() if hook is not None else None
        out, printed = split_after_commit(
            await self._check(commit_script(message, allow_empty=not staged.has_head, after=after))
        )
        if hook is not None and printed is not None:
            hook.printed(printed)
        found = parse_log(out)
        if not staged.has_head:
            return None  # the baseline: what changed before it is part of the project
        return found[0] if found else None

    async def recover(self) -> None:
        """Remove what a cut write left behind (partial packs, locks); no-op otherwise.

        Raises:
            CheckpointError: the sandbox did not run the command.
        """
        await self._check(recover_script())

    async def get(self, sha: str) -> Checkpoint:
        """The checkpoint ``sha`` (an abbreviated id is fine).

        Raises:
            CheckpointError: ``not_found``, or git is missing or failed.
            ValueError: ``sha`` is not 7-40 hex digits.
        """
        checked = valid_sha(sha)
        if checked is None:
            raise ValueError("a checkpoint id is 7-40 hex digits")
        rev = f"{checked}^{{commit}}"
        script = "\n".join(
            [
                REQUIRE_GIT,
                f"[ -d .git ] || exit {NOT_FOUND_EXIT}",
                f"full=$({git('rev-parse', '-q', '--verify', rev)}) || exit {NOT_FOUND_EXIT}",
                git("log", "-1", LOG_FORMAT, "--shortstat") + ' "$full" --',
            ]
        )
        found = parse_log(await self._check(script))
        if not found:
            raise CheckpointError("not_found", "no such checkpoint")
        return found[0]

    async def removed_by_restore(self, sha: str, under: str) -> tuple[str, ...]:
        """Workspace paths (``/db/migrations/x.sql``) under the folder ``under`` (``db/migrations``)
        that restoring ``sha`` would remove: files there now (committed or not, ignored ones
        left out) that checkpoint ``sha`` does not have.

        Raises:
            CheckpointError: ``not_found``, or git is missing or failed.
        """
        target = (await self.get(sha)).sha
        script = "\n".join([
            REQUIRE_GIT, "[ -d .git ] || exit 0",
            git("ls-files", "--cached", "--others", "--exclude-standard", "--", under),
            "echo ---",
            git("ls-tree", "-r", "--name-only", target, "--", under),
        ])  # fmt: skip
        now, _, then = (await self._check(script)).partition("---\n")
        kept = set(then.splitlines())
        return tuple(sorted("/" + p for p in set(now.splitlines()) - kept if p))

    async def diff(self, sha: str, limits: DiffLimits | None = None) -> CheckpointDiff:
        """What checkpoint ``sha`` changed (against the one before it), size-capped.

        Raises:
            CheckpointError: ``not_found``, or git is missing or failed.
            ValueError: ``sha`` is not 4-64 hex digits.
        """
        checked = valid_diff_sha(sha)
        if checked is None:
            raise ValueError("a checkpoint id is 4-64 hex digits")
        limits = limits or DiffLimits()
        result = await self._run(diff_script(checked, limits))
        if result.exit_code == NOT_FOUND_EXIT:
            raise CheckpointError("not_found", "no such checkpoint")
        if result.exit_code != 0:
            detail = (result.stderr or result.stdout).strip()[-500:]
            raise CheckpointError("git_failed", detail or f"git exited with {result.exit_code}")
        return parse_diff(result.stdout, limits, output_cut=result.truncated)

    async def restore(self, sha: str) -> RestoreResult:
        """Make the files equal to checkpoint ``sha`` and record that as a new checkpoint.

        Uncommitted changes are first saved as a checkpoint of their own (files over the
        size limit left out, as always). Files the target does not have are removed; ignored
        files (``node_modules``, ``.env*``) are left alone. When
        ``package.json``/``package-lock.json`` changed, the install command runs (its failure
        is reported in the result, not raised).

        Raises:
            CheckpointError: ``not_found``, ``history_full``, or git is missing or failed.
            ValueError: ``sha`` is not 7-40 hex digits.
        """
        await self.ensure()
        target = await self.get(sha)
        saved = await self.create(SAVED_TITLE)
        before = (await self._check(git("rev-parse", "HEAD"))).strip()
        message = clean_title(RESTORED_PREFIX + target.title)
        await self._check(restore_script(target.sha, message))
        after = parse_log(
            await self._check(git("log", "-1", LOG_FORMAT, "--shortstat", "HEAD", "--"))
        )
        if not after:
            raise CheckpointError("git_failed", "the restore was not recorded")
        names = await self._check(
            git("diff", "--name-only", "--no-renames", before, after[0].sha, "--")
        )
        paths = tuple("/" + line for line in names.splitlines() if line)
        dependencies: DependencyOutcome = "unchanged"
        if any(p.lstrip("/") in DEPENDENCY_FILES for p in paths):
            dependencies = await self._install()
        return RestoreResult(target, after[0], saved, paths, dependencies)

    async def _install(self) -> DependencyOutcome:
        try:
            result = await self._runtime.exec(
                self._install_command, timeout_s=self._install_timeout_s
            )
        except RuntimeClientError as exc:
            log.warning("dependency install after a restore failed: %s", exc)
            return "failed"
        if result.exit_code != 0:
            log.warning("dependency install after a restore exited %s", result.exit_code)
            return "failed"
        try:
            await self._runtime.preview_restart()  # the dev server picks up the new deps
        except RuntimeClientError as exc:
            log.warning("could not restart the dev server after a restore: %s", exc)
        return "installed"
