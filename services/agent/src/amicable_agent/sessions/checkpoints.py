"""Checkpoints: a git history of a project's files, kept in the sandbox's own ``/.git``.

A checkpoint is a commit in a repository *inside* the sandbox workspace, driven through the
runtime's exec API (:meth:`~amicable_agent.loop.api.RuntimeClient.exec`). Every command is
built from argv lists with :func:`shlex.join`; identity and safety settings are passed per
command (``-c user.name=…``, ``-c core.hooksPath=/dev/null``), global and system git config
are ignored and prompts are off, so nothing depends on how the sandbox is configured.

The repository is created lazily with a baseline checkpoint ("Project created").
``.amicable/`` (platform state), ``node_modules/`` and ``/public/amicable-db.js`` are ignored
through ``.git/info/exclude``, so the user's own files (``.gitignore``) never change.

Restoring makes the working tree equal to a checkpoint's tree (``git read-tree -u
--reset``: tracked files restored, files added later removed, ignored files such as
``node_modules`` untouched) and records that as a new checkpoint, so a restore can itself be
undone. Uncommitted changes are saved first as their own checkpoint.

The caller serialises these operations with the project's turns (see
:meth:`amicable_agent.sessions.session.SessionManager.hold_turns`): a stale ``.git/index.lock`` left
by a cancelled command is removed before writing.
"""

from __future__ import annotations

import logging
import re
import shlex
from typing import TYPE_CHECKING, Literal

import attrs

from amicable_agent.errors import CheckpointError, RuntimeClientError

if TYPE_CHECKING:
    from amicable_protocol.runtime import ExecResult

    from amicable_agent.loop.api import RuntimeClient

log = logging.getLogger(__name__)

#: The newest checkpoints listed.
MAX_CHECKPOINTS = 100
BASELINE_TITLE = "Project created"
SAVED_TITLE = "Changes before restore"
RESTORED_PREFIX = "Restored to: "
MAX_TITLE_CHARS = 120
#: A restore that changes one of these runs :data:`INSTALL_COMMAND`.
DEPENDENCY_FILES = frozenset({"package.json", "package-lock.json"})
INSTALL_COMMAND = "npm install --no-audit --no-fund"
GIT_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 300.0
#: Ignored by every checkpoint, whatever the project's ``.gitignore`` says.
EXCLUDES = (".amicable/", "node_modules/", "/public/amicable-db.js")
#: Exit code of our scripts when the checkpoint named does not exist.
_NOT_FOUND_EXIT = 44
_GIT_MISSING_EXIT = 127
_SHA = re.compile(r"[0-9a-f]{7,40}")
_FILES_CHANGED = re.compile(r"(\d+) files? changed")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GIT_CONFIG = (
    "-c", "user.name=Amicable",
    "-c", "user.email=checkpoints@amicable.invalid",
    "-c", "core.hooksPath=/dev/null",
    "-c", "commit.gpgsign=false",
    "-c", "core.autocrlf=false",
    "-c", "core.quotepath=false",
    "-c", "safe.directory=*",
    "-c", "gc.auto=0",
)  # fmt: skip
#: The environment of every git command: no prompts, no system/global config, C messages.
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "LC_ALL": "C",
}
_LOG_FORMAT = "--format=%x1e%H%x1f%ct%x1f%s"
_REQUIRE_GIT = 'command -v git >/dev/null 2>&1 || { echo "git is not installed" >&2; exit 127; }'


@attrs.frozen
class Checkpoint:
    """One checkpoint (a commit in the sandbox's repository).

    Attributes:
        sha: the full commit id.
        title: what the turn was asked to do (the commit subject).
        created_at: unix time (seconds) of the commit.
        files_changed: how many files differ from the previous checkpoint.
    """

    sha: str
    title: str
    created_at: int
    files_changed: int


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


def valid_sha(raw: str) -> str | None:
    """``raw`` lower-cased if it is 7-40 hex digits, else None (checked before any command)."""
    sha = raw.strip().lower()
    return sha if _SHA.fullmatch(sha) else None


def clean_title(text: str) -> str:
    """A one-line commit subject: whitespace collapsed, control characters dropped, capped."""
    line = " ".join(_CONTROL.sub(" ", text).split())
    if len(line) > MAX_TITLE_CHARS:
        line = line[: MAX_TITLE_CHARS - 1].rstrip() + "…"
    return line or "Update the app"


def parse_log(text: str) -> list[Checkpoint]:
    """Parse ``git log`` output in :data:`_LOG_FORMAT` with ``--shortstat``."""
    out: list[Checkpoint] = []
    for record in text.split("\x1e")[1:]:
        head, _, rest = record.partition("\n")
        parts = head.split("\x1f")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        match = _FILES_CHANGED.search(rest)
        out.append(
            Checkpoint(
                sha=parts[0].strip(),
                title=parts[2].strip(),
                created_at=int(parts[1]),
                files_changed=int(match.group(1)) if match else 0,
            )
        )
    return out


def _git(*args: str) -> str:
    return shlex.join(["git", *_GIT_CONFIG, "--git-dir=.git", "--work-tree=.", *args])


def _ensure_script() -> str:
    """Create the repository and its baseline if missing; fix ignores; drop a stale lock."""
    excludes = " ".join(shlex.quote(p) for p in EXCLUDES)
    return "\n".join(
        [
            "set -e",
            _REQUIRE_GIT,
            f"[ -d .git ] || {_git('init', '-q', '-b', 'main')}",
            "mkdir -p .git/info && touch .git/info/exclude",
            f"for p in {excludes}; do",
            '  grep -qxF -- "$p" .git/info/exclude || printf "%s\\n" "$p" >> .git/info/exclude',
            "done",
            "rm -f .git/index.lock",
            f"if ! {_git('rev-parse', '-q', '--verify', 'HEAD')} >/dev/null; then",
            f"  {_git('add', '-A')}",
            f"  {_git('commit', '-q', '--allow-empty', '-m', BASELINE_TITLE)}",
            "fi",
        ]
    )


class Checkpoints:
    """List, create and restore checkpoints of one sandbox.

    Args:
        runtime: the sandbox's runtime client.
        timeout_s: deadline of each git command (also passed to the runtime).
        install_command: run after a restore that changed the dependencies.
        install_timeout_s: its deadline.

    Cancellation: cancelling a call cancels the exec; the runtime kills the command's
    process group. A lock file it leaves is removed by the next call that writes.
    """

    def __init__(
        self,
        runtime: RuntimeClient,
        *,
        timeout_s: float = GIT_TIMEOUT_S,
        install_command: str = INSTALL_COMMAND,
        install_timeout_s: float = INSTALL_TIMEOUT_S,
    ) -> None:
        self._runtime = runtime
        self._timeout_s = timeout_s
        self._install_command = install_command
        self._install_timeout_s = install_timeout_s

    async def _run(self, script: str) -> ExecResult:
        try:
            result = await self._runtime.exec(script, env=GIT_ENV, timeout_s=self._timeout_s)
        except RuntimeClientError as exc:
            raise CheckpointError("git_failed", f"the sandbox did not run git: {exc}") from exc
        if result.exit_code == _GIT_MISSING_EXIT and "not installed" in result.stderr:
            raise CheckpointError(
                "git_unavailable",
                "Checkpoints need git in the sandbox, and it is not installed there.",
            )
        if result.timed_out:
            raise CheckpointError("git_failed", "git did not finish in time")
        return result

    async def _check(self, script: str) -> str:
        result = await self._run(script)
        if result.exit_code == _NOT_FOUND_EXIT:
            raise CheckpointError("not_found", "no such checkpoint")
        if result.exit_code != 0:
            detail = (result.stderr or result.stdout).strip()[-500:]
            raise CheckpointError("git_failed", detail or f"git exited with {result.exit_code}")
        return result.stdout

    async def ensure(self) -> None:
        """Create the repository with its baseline checkpoint if it does not exist yet.

        Raises:
            CheckpointError: git is missing or failed.
        """
        await self._check(_ensure_script())

    async def list(self, limit: int = MAX_CHECKPOINTS) -> list[Checkpoint]:
        """The newest ``limit`` checkpoints, newest first ([] before the first one).

        Raises:
            CheckpointError: git is missing or failed.
        """
        script = "\n".join(
            [
                _REQUIRE_GIT,
                "[ -d .git ] || exit 0",
                f"{_git('rev-parse', '-q', '--verify', 'HEAD')} >/dev/null || exit 0",
                _git("log", f"-n{max(1, limit)}", _LOG_FORMAT, "--shortstat", "HEAD", "--"),
            ]
        )
        return parse_log(await self._check(script))

    async def create(self, title: str) -> Checkpoint | None:
        """Commit every change (``git add -A``) as a checkpoint titled ``title``.

        Returns:
            The new checkpoint, or None when nothing changed since the last one.

        Raises:
            CheckpointError: git is missing or failed.
        """
        script = "\n".join(
            [
                _ensure_script(),
                _git("add", "-A"),
                f"if {_git('diff', '--cached', '--quiet')}; then exit 0; fi",
                _git("commit", "-q", "-m", clean_title(title)),
                _git("log", "-1", _LOG_FORMAT, "--shortstat", "HEAD", "--"),
            ]
        )
        found = parse_log(await self._check(script))
        return found[0] if found else None

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
                _REQUIRE_GIT,
                f"[ -d .git ] || exit {_NOT_FOUND_EXIT}",
                f"full=$({_git('rev-parse', '-q', '--verify', rev)}) || exit {_NOT_FOUND_EXIT}",
                _git("log", "-1", _LOG_FORMAT, "--shortstat") + ' "$full" --',
            ]
        )
        found = parse_log(await self._check(script))
        if not found:
            raise CheckpointError("not_found", "no such checkpoint")
        return found[0]

    async def restore(self, sha: str) -> RestoreResult:
        """Make the files equal to checkpoint ``sha`` and record that as a new checkpoint.

        Uncommitted changes are first saved as a checkpoint of their own. Files the target
        does not have are removed; ignored files (``node_modules``, ``.env*``) are left
        alone. When ``package.json``/``package-lock.json`` changed, the install command runs
        (its failure is reported in the result, not raised).

        Raises:
            CheckpointError: ``not_found``, or git is missing or failed.
            ValueError: ``sha`` is not 7-40 hex digits.
        """
        await self.ensure()
        target = await self.get(sha)
        saved = await self.create(SAVED_TITLE)
        before = (await self._check(_git("rev-parse", "HEAD"))).strip()
        message = clean_title(RESTORED_PREFIX + target.title)
        await self._check(
            "\n".join(
                [
                    "set -e",
                    "rm -f .git/index.lock",
                    _git("read-tree", "-u", "--reset", target.sha),
                    _git("commit", "-q", "--allow-empty", "-m", message),
                ]
            )
        )
        after = parse_log(
            await self._check(_git("log", "-1", _LOG_FORMAT, "--shortstat", "HEAD", "--"))
        )
        if not after:
            raise CheckpointError("git_failed", "the restore was not recorded")
        names = await self._check(
            _git("diff", "--name-only", "--no-renames", before, after[0].sha, "--")
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
