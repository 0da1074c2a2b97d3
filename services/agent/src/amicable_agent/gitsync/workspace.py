"""The sandbox side of sync: its file tree as a local directory, and its sync state file.

:class:`Workspace` is all the engine needs from a sandbox; :func:`open_workspace` builds it
for a :class:`~amicable_agent.sandboxes.base.SandboxHandle` from the runtime API (``GET
/v1/archive`` for the tree, the file API for everything else). The archive is streamed to a
file and extracted with the ``data`` tar filter (no absolute paths, no ``..``, no links
leaving the tree), skipping excluded paths on our side too.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import tarfile
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from amicable_agent.errors import RuntimeClientError, UnsafeArchive
from amicable_agent.sandboxes.archives import ArchiveGuard, ArchiveLimits
from amicable_agent.sandboxes.runtime_client import open_runtime_client

from .errors import GitSyncError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

    from amicable_agent.loop.api import RuntimeClient
    from amicable_agent.sandboxes.base import SandboxHandle

log = logging.getLogger(__name__)

STATE_PATH = "/.amicable/git_state.json"
SHADOW_ROOT = "/.amicable/git-remote"
ARCHIVE_TIMEOUT_S = 300.0
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024


def is_excluded(rel: str, is_dir: bool, patterns: Sequence[str]) -> bool:
    """Whether ``rel`` (``a/b/c``, no leading ``/``) or one of its parents is excluded.

    Gitignore-like patterns: ``dir/`` matches directories only, a pattern with another
    ``/`` is anchored at the root, anything else matches a name at any depth (fnmatch).
    """
    parts = rel.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        name = parts[depth - 1]
        this_is_dir = is_dir or depth < len(parts)
        for raw in patterns:
            dir_only = raw.endswith("/")
            pattern = raw.strip("/")
            if not pattern or (dir_only and not this_is_dir):
                continue
            target = prefix if "/" in pattern else name
            if fnmatch.fnmatchcase(target, pattern):
                return True
    return False


def runtime_excludes(patterns: Sequence[str]) -> list[str]:
    """Our patterns as the runtime's ``exclude`` parameters (name or whole path, fnmatch)."""
    return list(dict.fromkeys(p.strip("/") for p in patterns if p.strip("/")))


def extract_tree(
    archive: Path, dest: Path, patterns: Sequence[str], limits: ArchiveLimits | None = None
) -> list[str]:
    """Extract a workspace tar.gz into ``dest`` (sync; run in a thread).

    Returns the member names skipped because the tar filter refused them (links leaving the
    tree, device files); excluded paths are skipped silently.

    Raises:
        UnsafeArchive: more members or unpacked bytes than ``limits`` allow (counted before
            each member is written, so a small archive of a huge sparse file stops here).
    """
    refused: list[str] = []
    dest.mkdir(exist_ok=True)
    guard = ArchiveGuard(limits or ArchiveLimits())

    def keep(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        if is_excluded(member.name, member.isdir(), patterns):
            return None
        try:
            guard.check_tar(member)
        except UnsafeArchive as exc:
            if exc.code == "too_large":
                raise
            refused.append(member.name)
            return None
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError:
            refused.append(member.name)
            return None

    with tarfile.open(archive, mode="r:gz") as tar:
        tar.extractall(dest, filter=keep)
    return refused


@attrs.frozen
class SyncState:
    """``/.amicable/git_state.json`` in the sandbox: the last commit it matches."""

    branch: str
    remote_head_sha: str | None
    updated_at_unix: float
    conflicts: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object."""
        return {
            "branch": self.branch,
            "remote_head_sha": self.remote_head_sha,
            "updated_at_unix": self.updated_at_unix,
            "conflicts": list(self.conflicts),
        }

    @classmethod
    def parse(cls, raw: bytes) -> SyncState | None:
        """The state from the file's bytes, or None when it is unusable."""
        try:
            body = json.loads(raw)
            sha = body.get("remote_head_sha")
            return cls(
                branch=str(body.get("branch") or ""),
                remote_head_sha=str(sha) if sha else None,
                updated_at_unix=float(body.get("updated_at_unix") or 0.0),
                conflicts=tuple(c for c in body.get("conflicts") or () if isinstance(c, dict)),
            )
        except (ValueError, AttributeError, TypeError):
            return None


class Workspace(Protocol):
    """What sync needs from a sandbox. Paths are workspace paths (``/src/App.tsx``)."""

    async def download_tree(self, dest: Path, patterns: Sequence[str]) -> list[str]:
        """Fill the empty directory ``dest`` with the workspace minus excluded paths.

        Returns paths skipped as unsafe (see :func:`extract_tree`).
        """
        ...

    async def read(self, path: str) -> bytes | None:
        """A file's content, or None when it does not exist."""
        ...

    async def write(self, path: str, content: bytes) -> None:
        """Write a file (parents created)."""
        ...

    async def remove(self, path: str) -> None:
        """Delete a file; a missing file is fine."""
        ...


class RuntimeWorkspace:
    """A :class:`Workspace` over the sandbox runtime API. Create with :func:`open_workspace`."""

    def __init__(self, runtime: RuntimeClient) -> None:
        self._runtime = runtime

    async def download_tree(self, dest: Path, patterns: Sequence[str]) -> list[str]:
        archive = dest.parent / (dest.name + ".tar.gz")
        chunks = self._runtime.archive(
            "tar.gz", excludes=runtime_excludes(patterns), default_excludes=False
        )
        size = 0
        try:
            with trio.fail_after(ARCHIVE_TIMEOUT_S):
                async with aclosing(chunks), await trio.open_file(archive, "wb") as out:
                    async for chunk in chunks:
                        size += len(chunk)
                        if size > MAX_ARCHIVE_BYTES:
                            raise GitSyncError("workspace_too_large", "over 512 MiB")
                        await out.write(chunk)
        except trio.TooSlowError as exc:
            raise GitSyncError("sandbox_unavailable", "the archive took too long") from exc
        except RuntimeClientError as exc:
            detail = f"the sandbox refused its archive ({exc.status})" if exc.status else str(exc)
            raise GitSyncError("sandbox_unavailable", detail) from exc
        try:
            return await trio.to_thread.run_sync(extract_tree, archive, dest, patterns)
        except UnsafeArchive as exc:
            raise GitSyncError("workspace_too_large", exc.detail) from exc
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise GitSyncError("sandbox_unavailable", f"bad archive: {exc}") from exc
        finally:
            archive.unlink(missing_ok=True)

    async def read(self, path: str) -> bytes | None:
        try:
            content, _ = await self._runtime.read_file(path)
        except RuntimeClientError as exc:
            if exc.status == 404:
                return None
            raise GitSyncError("sandbox_unavailable", str(exc)) from exc
        return content

    async def write(self, path: str, content: bytes) -> None:
        try:
            await self._runtime.write_file(path, content)
        except RuntimeClientError as exc:
            raise GitSyncError("sandbox_unavailable", str(exc)) from exc

    async def remove(self, path: str) -> None:
        try:
            await self._runtime.delete(path)
        except RuntimeClientError as exc:
            if exc.status != 404:
                raise GitSyncError("sandbox_unavailable", str(exc)) from exc


@asynccontextmanager
async def open_workspace(handle: SandboxHandle) -> AsyncIterator[RuntimeWorkspace]:
    """A :class:`Workspace` of the sandbox behind ``handle`` for the duration of the block."""
    async with open_runtime_client(handle.runtime_url, handle.runtime_token) as runtime:
        yield RuntimeWorkspace(runtime)
