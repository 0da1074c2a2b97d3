"""Pull: apply what changed on GitLab since the sandbox's baseline (upstream §7 "Pull").

For every path changed between the baseline and the remote head (renames as delete+add):
unchanged in the sandbox since the baseline -> take the remote version; already equal to
the remote -> nothing to do; otherwise a conflict: the remote version is written to
``/.amicable/git-remote/<remote_sha>/<path>`` (a deletion as ``<path>.REMOTE_DELETED``) and
listed. Excluded and ``.amicable/`` paths and symlinks are never touched. Afterwards the
baseline is the remote head, with the conflict list.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from .errors import GitSyncError
from .workspace import SHADOW_ROOT, is_excluded

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from .config import GitSyncConfig
    from .git import Git
    from .records import ProjectRef, RepoRecord
    from .workspace import SyncState, Workspace

log = logging.getLogger(__name__)


@attrs.frozen
class PullResult:
    """Upstream's ``/git/pull`` body."""

    updated: bool
    remote_sha: str | None
    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    conflicts: tuple[dict[str, Any], ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The HTTP body."""
        body: dict[str, Any] = {
            "updated": self.updated,
            "remote_sha": self.remote_sha,
            "applied": {
                "added": list(self.added),
                "modified": list(self.modified),
                "deleted": list(self.deleted),
            },
            "conflicts": list(self.conflicts),
        }
        if self.error:
            body["error"] = self.error
        return body


class SyncEngine(Protocol):
    """What pull and restore need of :class:`~.engine.GitSync`."""

    @property
    def config(self) -> GitSyncConfig:
        """The sync configuration."""
        ...

    def locked(self, project_id: str) -> AbstractAsyncContextManager[None]:
        """Hold the project's lock."""
        ...

    async def ensure_repo(self, project: ProjectRef) -> RepoRecord:
        """The project's GitLab repository, created if needed."""
        ...

    async def open_git(self, project_id: str, *, writing: bool = False) -> Git:
        """The project's local mirror."""
        ...

    async def fetch(self, git: Git, record: RepoRecord) -> str | None:
        """Fetch the remote branch; its head sha, or None when it is empty."""
        ...

    def sandbox_tree(self, workspace: Workspace) -> AbstractAsyncContextManager[Path]:
        """The sandbox's tree in a scratch directory."""
        ...

    async def read_state(self, workspace: Workspace) -> SyncState | None:
        """The sandbox's sync state file."""
        ...

    async def write_state(
        self, workspace: Workspace, sha: str | None, conflicts: tuple[dict[str, Any], ...] = ()
    ) -> None:
        """Write the sandbox's sync state file."""
        ...


class NoBaseline(GitSyncError):
    """The sandbox has no baseline commit; ``remote_sha`` is the current remote head."""

    def __init__(self, remote_sha: str | None) -> None:
        super().__init__("git_pull_no_baseline", "the sandbox has never been synced")
        self.remote_sha = remote_sha


async def _blob(git: Git, rev: str, path: str) -> bytes | None:
    out = await git.run("cat-file", "blob", f"{rev}:{path}", check=False)
    return out.stdout if out.returncode == 0 else None


async def _is_symlink(git: Git, rev: str, path: str) -> bool:
    out = await git.run("ls-tree", rev, "--", path, check=False)
    return out.text.startswith("120000")


async def pull(gs: SyncEngine, project: ProjectRef, workspace: Workspace) -> PullResult:
    """Apply remote changes to the sandbox (under the project lock).

    Raises:
        NoBaseline: the sandbox was never synced (HTTP 409 ``git_pull_no_baseline``).
        GitSyncError: GitLab, git or the sandbox failed.
    """
    async with gs.locked(project.project_id):
        record = await gs.ensure_repo(project)
        git = await gs.open_git(project.project_id, writing=True)
        remote = await gs.fetch(git, record)
        if remote is None:
            return PullResult(False, None, error="remote_branch_missing")
        state = await gs.read_state(workspace)
        base = state.remote_head_sha if state else None
        if base is None:
            raise NoBaseline(remote)
        if base == remote:
            return PullResult(False, remote, conflicts=state.conflicts if state else ())
        known = await git.run("cat-file", "-e", f"{base}^{{commit}}", check=False)
        if known.returncode != 0:
            raise NoBaseline(remote)
        diff = await git.run("diff", "--name-status", "--no-renames", "-z", base, remote)
        fields = diff.stdout.decode("utf-8", "replace").split("\0")
        added: list[str] = []
        modified: list[str] = []
        deleted: list[str] = []
        conflicts: list[dict[str, Any]] = []
        excludes = gs.config.effective_excludes
        for status, path in zip(fields[0::2], fields[1::2], strict=False):
            if not path or is_excluded(path, False, excludes):
                continue
            if await _is_symlink(git, remote, path) or await _is_symlink(git, base, path):
                log.info("pull skips symlink %s", path)
                continue
            public = "/" + path
            theirs = None if status == "D" else await _blob(git, remote, path)
            ours = await workspace.read(public)
            original = None if status == "A" else await _blob(git, base, path)
            if ours == theirs:
                continue
            if ours == original:
                if theirs is None:
                    await workspace.remove(public)
                    deleted.append(public)
                else:
                    await workspace.write(public, theirs)
                    (added if original is None else modified).append(public)
                continue
            shadow = f"{SHADOW_ROOT}/{remote}/{path}"
            if theirs is None:
                shadow += ".REMOTE_DELETED"
                await workspace.write(shadow, b"")
            else:
                await workspace.write(shadow, theirs)
            conflicts.append({"path": public, "remote_shadow_path": shadow, "remote_sha": remote})
        await gs.write_state(workspace, remote, tuple(conflicts))
        return PullResult(
            True, remote, tuple(added), tuple(modified), tuple(deleted), tuple(conflicts)
        )


def _put(target: Path, content: bytes) -> None:
    if target.is_symlink():
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


async def restore(gs: SyncEngine, project: ProjectRef, workspace: Workspace) -> PullResult | None:
    """Make a sandbox without a baseline equal to the remote branch (remote wins).

    Files the branch has are written where the sandbox differs; files it does not have (and
    that are neither excluded nor ignored by the project's ``.gitignore``) are deleted.
    Returns None when the sandbox has a baseline or the branch does not exist.
    """
    async with gs.locked(project.project_id):
        state = await gs.read_state(workspace)
        if state is not None and state.remote_head_sha:
            return None
        record = await gs.ensure_repo(project)
        git = await gs.open_git(project.project_id, writing=True)
        remote = await gs.fetch(git, record)
        if remote is None:
            return None
        added: list[str] = []
        modified: list[str] = []
        deleted: list[str] = []
        excludes = gs.config.effective_excludes
        async with gs.sandbox_tree(workspace) as tree:
            await git.run("read-tree", remote)
            diff = await git.run("diff", "--name-status", "--no-renames", "-z", work_tree=tree)
            fields = diff.stdout.decode("utf-8", "replace").split("\0")
            for status, path in zip(fields[0::2], fields[1::2], strict=False):
                if not path or status not in ("M", "D"):
                    continue
                if is_excluded(path, False, excludes) or await _is_symlink(git, remote, path):
                    continue
                content = await _blob(git, remote, path)
                if content is None:
                    continue
                await workspace.write("/" + path, content)
                (added if status == "D" else modified).append("/" + path)
                # mirror it locally so the branch's .gitignore files apply below
                await trio.to_thread.run_sync(_put, tree / path, content)
            others = await git.run(
                "ls-files", "-z", "--others", "--exclude-standard", work_tree=tree
            )
            for path in others.stdout.decode("utf-8", "replace").split("\0"):
                if path:
                    await workspace.remove("/" + path)
                    deleted.append("/" + path)
        await gs.write_state(workspace, remote)
        log.info("restored sandbox of %s from %s", project.project_id, remote)
        return PullResult(True, remote, tuple(added), tuple(modified), tuple(deleted))
