"""The sync engine: sandbox tree -> cached clone -> commit -> push, and status/pull.

One git directory per project under ``cache_dir`` (keyed by project id, so renames keep
it); the work tree of each sync is a fresh extraction of the sandbox archive, so "the
sandbox is the source of truth" is literal: ``git add -A`` against it stages every edit
and every deletion. The index starts from the remote branch (or empty for an empty
repository), so history is always linear on top of whatever GitLab has. Every operation on
one project holds that project's lock; different projects sync in parallel.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .commits import CommitMessage, TurnSummary, bootstrap_message, turn_message
from .errors import GitCommandError, GitSyncError
from .git import Git, remote_error
from .records import REPO_STATE_KEY, RepoRecord, StatusResult, SyncResult
from .workspace import STATE_PATH, SyncState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .config import GitSyncConfig
    from .gitlab import GitLabClient, GitLabProject
    from .pull import PullResult
    from .records import ProjectRef, StateStore
    from .workspace import Workspace

log = logging.getLogger(__name__)

_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "stale info", "[remote rejected]")


def _name_status_ok(name_status: str) -> bool:
    return bool(name_status.strip())


class GitSync:
    """GitLab persistence of projects. Create with :func:`open_git_sync`.

    Cancellation: every method may be cancelled; a running git command is killed (its
    process group), the project lock is released and the next call starts cleanly from
    the remote branch.
    """

    def __init__(self, config: GitSyncConfig, gitlab: GitLabClient, store: StateStore) -> None:
        self.config = config
        self.gitlab = gitlab
        self._store = store
        self._locks: dict[str, trio.Lock] = {}
        self._syncs = 0

    # --- locking, records -------------------------------------------------------------

    @asynccontextmanager
    async def locked(self, project_id: str) -> AsyncIterator[None]:
        """Hold the project's lock (one sync/pull/rename/delete of a project at a time)."""
        lock = self._locks.setdefault(project_id, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            stats = lock.statistics()
            if not stats.locked and stats.tasks_waiting == 0:
                self._locks.pop(project_id, None)

    def statistics(self) -> dict[str, int]:
        """``{locks, syncs}``: projects with a lock in use, syncs finished since start."""
        return {"locks": len(self._locks), "syncs": self._syncs}

    async def repo_record(self, project_id: str) -> RepoRecord | None:
        """The persisted repository of a project (no network)."""
        raw = await self._store.load_state(project_id, REPO_STATE_KEY)
        if not isinstance(raw, dict):
            return None
        try:
            return RepoRecord(
                int(raw["gitlab_project_id"]),
                str(raw["gitlab_path"]),
                str(raw["gitlab_web_url"]),
                str(raw["http_url_to_repo"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    async def _remember(self, project_id: str, repo: GitLabProject) -> RepoRecord:
        record = RepoRecord.of(repo)
        await self._store.save_state(project_id, REPO_STATE_KEY, attrs.asdict(record))
        return record

    async def ensure_repo(self, project: ProjectRef) -> RepoRecord:
        """The project's repository, created (with fallback paths) and persisted if needed.

        Raises:
            GitLabApiError: GitLab failed.
        """
        known = await self.repo_record(project.project_id)
        repo = await self.gitlab.ensure_project(
            project_id=project.project_id,
            name=project.name,
            slug=project.slug,
            known_id=known.gitlab_project_id if known else None,
        )
        if known is None or RepoRecord.of(repo) != known:
            return await self._remember(project.project_id, repo)
        return known

    # --- project lifecycle hooks -------------------------------------------------------

    async def project_created(self, project: ProjectRef) -> RepoRecord:
        """Create the repository of a new project (hook for ``POST /api/projects``)."""
        async with self.locked(project.project_id):
            return await self.ensure_repo(project)

    async def project_renamed(self, project: ProjectRef) -> RepoRecord:
        """Move the repository to the project's new slug (hook for ``PATCH``)."""
        async with self.locked(project.project_id):
            known = await self.repo_record(project.project_id)
            if known is None:
                return await self.ensure_repo(project)
            moved = await self.gitlab.rename_project(
                known.gitlab_project_id,
                project_id=project.project_id,
                name=project.name,
                slug=project.slug,
            )
            return await self._remember(project.project_id, moved)

    async def project_deleted(self, project_id: str) -> bool:
        """Delete the repository and the local clone (hook for ``DELETE``; call it before
        the store purges the project). Returns whether a repository was deleted."""
        async with self.locked(project_id):
            known = await self.repo_record(project_id)
            deleted = False
            if known is not None:
                deleted = await self.gitlab.delete_project(known.gitlab_project_id)
                await self._store.save_state(project_id, REPO_STATE_KEY, None)
            await trio.to_thread.run_sync(
                lambda: shutil.rmtree(self._git_dir(project_id), ignore_errors=True)
            )
            return deleted

    # --- git plumbing ------------------------------------------------------------------

    def _git_dir(self, project_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in project_id)
        return self.config.cache_dir / f"{safe}.git"

    def remote_url(self, record: RepoRecord) -> str:
        """``<GITLAB_BASE_URL>/<path>.git``: always under the base URL, so the auth header
        (scoped to that URL) is sent, and only there."""
        return f"{self.config.base_url}/{record.gitlab_path}.git"

    async def open_git(self, project_id: str, *, writing: bool = False) -> Git:
        """The project's cached bare repository (created on first use).

        ``writing`` (only under the project's lock): first remove lock files a killed git
        (a cancelled sync) may have left, which would otherwise fail every later sync.
        """
        git_dir = self._git_dir(project_id)
        git = Git(self.config, git_dir)

        def prepare() -> bool:
            if writing and git_dir.is_dir():
                for stale in (*git_dir.glob("*.lock"), *(git_dir / "refs").rglob("*.lock")):
                    stale.unlink(missing_ok=True)
            if (git_dir / "HEAD").exists():
                return False
            git_dir.mkdir(parents=True, exist_ok=True)
            return True

        if await trio.to_thread.run_sync(prepare):
            await git.run("init", "--bare", "--quiet", f"--initial-branch={self.config.branch}")
        return git

    @property
    def _tracking_ref(self) -> str:
        return f"refs/remotes/origin/{self.config.branch}"

    async def remote_head(self, git: Git, record: RepoRecord) -> str | None:
        """The remote branch's sha (``git ls-remote``), None when it does not exist."""
        try:
            out = await git.run(
                "ls-remote", self.remote_url(record), f"refs/heads/{self.config.branch}"
            )
        except GitCommandError as exc:
            raise remote_error(exc) from exc
        line = out.text.split("\n", 1)[0]
        return line.split()[0] if line.strip() else None

    async def fetch(self, git: Git, record: RepoRecord) -> str | None:
        """Fetch the remote branch into ``refs/remotes/origin/<branch>``; its sha or None."""
        sha = await self.remote_head(git, record)
        if sha is None:
            await git.run("update-ref", "-d", self._tracking_ref, check=False)
            return None
        present = await git.run("cat-file", "-e", f"{sha}^{{commit}}", check=False)
        if present.returncode != 0:
            try:
                await git.run(
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    self.remote_url(record),
                    f"+refs/heads/{self.config.branch}:{self._tracking_ref}",
                )
            except GitCommandError as exc:
                raise remote_error(exc) from exc
        await git.run("update-ref", self._tracking_ref, sha)
        return sha

    # --- sync --------------------------------------------------------------------------

    @asynccontextmanager
    async def sandbox_tree(self, workspace: Workspace) -> AsyncIterator[Path]:
        """The sandbox's tree (minus excludes) in a scratch directory, removed afterwards."""

        def make_scratch() -> Path:
            self.config.cache_dir.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix="tree-", dir=self.config.cache_dir))

        scratch = await trio.to_thread.run_sync(make_scratch)
        try:
            tree = scratch / "tree"
            refused = await workspace.download_tree(tree, self.config.effective_excludes)
            if refused:
                log.warning("git sync skipped %d unsafe archive entries", len(refused))
            yield tree
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: shutil.rmtree(scratch, ignore_errors=True))

    async def sync(
        self,
        project: ProjectRef,
        workspace: Workspace,
        message: CommitMessage,
        *,
        force: bool = False,
    ) -> SyncResult:
        """Commit the sandbox's tree on the branch and push it.

        Returns ``pushed=False`` (with the current sha) when nothing changed. A sandbox
        without a baseline (``git_state.json``: new or reset, e.g. a restarted pod) is not
        pushed over a non-empty branch unless ``force``: that would replace the project's
        files with the template (upstream did); :meth:`restore_if_fresh` first.

        Raises:
            GitSyncError: GitLab, git or the sandbox failed (``code`` says which);
                ``git_sync_no_baseline`` as above.
        """
        async with self.locked(project.project_id):
            record = await self.ensure_repo(project)
            git = await self.open_git(project.project_id, writing=True)
            state = await self.read_state(workspace)
            guard = not force and (state is None or state.remote_head_sha is None)
            async with self.sandbox_tree(workspace) as tree:
                result = await self._commit_and_push(git, record, tree, message, guard=guard)
            await self.write_state(workspace, result.commit_sha)
            self._syncs += 1
            return result

    async def sync_turn(
        self, project: ProjectRef, workspace: Workspace, turn: TurnSummary
    ) -> SyncResult:
        """:meth:`sync` with the deterministic message of an agent turn."""
        return await self.sync(project, workspace, turn_message(turn))

    async def bootstrap_if_empty(
        self, project: ProjectRef, workspace: Workspace
    ) -> SyncResult | None:
        """Push the sandbox as the baseline commit when the remote branch does not exist yet
        (upstream's INIT step); None when the branch already exists."""
        record = await self.ensure_repo(project)
        git = await self.open_git(project.project_id)
        if await self.remote_head(git, record) is not None:
            return None
        return await self.sync(project, workspace, bootstrap_message(project))

    async def restore_if_fresh(
        self, project: ProjectRef, workspace: Workspace
    ) -> PullResult | None:
        """Fill a sandbox that has no baseline from the remote branch (remote wins).

        For INIT of a new or reset sandbox of a project whose repository has commits.
        Returns None when the sandbox has a baseline or the branch does not exist.
        """
        from .pull import restore

        return await restore(self, project, workspace)

    async def adopt_remote_head(self, project: ProjectRef, workspace: Workspace) -> str | None:
        """Take the remote branch's head as the sandbox's baseline without touching its
        files (after a snapshot restore: the sandbox has the project's newest state, and the
        next sync commits what the branch lacks on top of it). Returns that head, or None
        when the branch does not exist yet or the sandbox already has a baseline."""
        async with self.locked(project.project_id):
            state = await self.read_state(workspace)
            if state is not None and state.remote_head_sha:
                return None
            record = await self.ensure_repo(project)
            git = await self.open_git(project.project_id, writing=True)
            remote = await self.fetch(git, record)
            if remote is not None:
                await self.write_state(workspace, remote)
            return remote

    async def _commit_and_push(
        self, git: Git, record: RepoRecord, tree: Path, message: CommitMessage, *, guard: bool
    ) -> SyncResult:
        branch_ref = f"refs/heads/{self.config.branch}"
        last_error = ""
        for _attempt in range(max(1, self.config.push_attempts)):
            remote_sha = await self.fetch(git, record)
            await git.run("symbolic-ref", "HEAD", branch_ref)
            if remote_sha is None:
                await git.run("update-ref", "-d", branch_ref, check=False)
                await git.run("read-tree", "--empty")
            else:
                await git.run("update-ref", branch_ref, remote_sha)
                await git.run("read-tree", remote_sha)
            await git.run("add", "--all", ".", work_tree=tree)
            name_status = (
                await git.run("diff", "--cached", "--name-status", "--no-renames", work_tree=tree)
            ).text
            if not _name_status_ok(name_status):
                return SyncResult(False, remote_sha)
            if guard and remote_sha is not None:
                raise GitSyncError(
                    "git_sync_no_baseline",
                    f"the sandbox was never synced with {record.gitlab_path} (new or reset "
                    "sandbox); restore it from GitLab first",
                )
            diff_stat = (await git.run("diff", "--cached", "--stat", work_tree=tree)).text
            await git.run(
                "commit", "--quiet", "--no-verify", "--file=-",
                work_tree=tree, stdin=message.render(name_status).encode(),
            )  # fmt: skip
            sha = (await git.run("rev-parse", "HEAD")).text
            push = await git.run(
                "push", "--porcelain", self.remote_url(record), f"{sha}:{branch_ref}", check=False
            )
            if push.returncode == 0:
                await git.run("update-ref", self._tracking_ref, sha)
                return SyncResult(True, sha, diff_stat, name_status)
            output = push.stderr + "\n" + push.text
            if not any(marker in output for marker in _REJECTED):
                raise remote_error(GitCommandError("push", push.returncode, output[-600:]))
            last_error = output[-300:]
            log.info("push of %s rejected (remote moved); retrying on top", record.gitlab_path)
        raise GitSyncError("git_push_rejected", f"the remote branch kept moving: {last_error}")

    async def read_state(self, workspace: Workspace) -> SyncState | None:
        """The sandbox's ``git_state.json``, None when missing or unusable."""
        raw = await workspace.read(STATE_PATH)
        return SyncState.parse(raw) if raw is not None else None

    async def write_state(
        self, workspace: Workspace, sha: str | None, conflicts: tuple[dict[str, Any], ...] = ()
    ) -> None:
        """Record the sandbox's baseline (best effort: a failure is logged)."""
        state = SyncState(self.config.branch, sha, time.time(), conflicts)
        body = json.dumps(state.to_json(), indent=2).encode() + b"\n"
        try:
            await workspace.write(STATE_PATH, body)
        except GitSyncError as exc:  # the push happened; only the baseline is missing
            log.warning("could not write %s: %s", STATE_PATH, exc.detail)

    async def pull(self, project: ProjectRef, workspace: Workspace) -> PullResult:
        """Apply remote changes to the sandbox (see :mod:`amicable_agent.gitsync.pull`)."""
        from .pull import pull

        return await pull(self, project, workspace)

    # --- status ------------------------------------------------------------------------

    async def status(self, project: ProjectRef, workspace: Workspace) -> StatusResult:
        """Remote head vs. the sandbox's baseline (upstream ``/git/status``).

        Raises:
            GitSyncError: ``git_remote_status_failed`` when the remote cannot be read.
        """
        record = await self.ensure_repo(project)
        git = await self.open_git(project.project_id)
        try:
            remote = await self.remote_head(git, record)
        except GitSyncError as exc:
            raise GitSyncError("git_remote_status_failed", exc.detail) from exc
        state = await self.read_state(workspace)
        local = state.remote_head_sha if state else None
        return StatusResult(
            remote_sha=remote,
            local_sha=local,
            ahead=local is not None and remote != local,
            baseline_present=local is not None,
            conflicts_pending=bool(state and state.conflicts),
        )


@asynccontextmanager
async def open_git_sync(config: GitSyncConfig, store: StateStore) -> AsyncIterator[GitSync | None]:
    """The project's :class:`GitSync` for the block, or None when sync is disabled.

    Cancellation: leaving the block closes the GitLab HTTP client; git commands belong to
    the tasks that started them.
    """
    if not config.enabled:
        yield None
        return
    from .gitlab import open_gitlab_client

    async with open_gitlab_client(config) as gitlab:
        yield GitSync(config, gitlab, store)
