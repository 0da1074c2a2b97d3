"""Workspaces whose ``node_modules`` still share files with other workspaces get their own.

Until this version ``init-workspace`` hard-linked every file of ``node_modules`` from one
cache, so a write through ``node_modules/vite/package.json`` in one project changed the file
in every other project, the spares, the warm sandboxes and the cache. New workspaces get
copies (see the runtime's ``init-workspace``); a workspace made before is fixed the first
time it starts: every regular file under its ``node_modules`` with more than one link is
replaced by a copy (the other links keep the old inode). A marker in the sandbox directory
(where the sandbox cannot write) records that the workspace's dependencies are its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

MARKER = ".node-modules-private"


def mark_private(root: Path) -> None:
    """Record that the workspace in ``root`` has its own ``node_modules`` (blocking)."""
    (root / MARKER).touch()


def unshare_node_modules(workspace: Path, root: Path) -> int:
    """Copy every hard-linked file of ``workspace/node_modules`` unless ``root`` is marked;
    then mark it (blocking). Symlinks are never followed.

    Returns:
        How many files were copied.
    """
    if (root / MARKER).exists():
        return 0
    copied = 0
    modules = workspace / "node_modules"
    if modules.is_dir() and not modules.is_symlink():
        for dirpath, _, filenames in os.walk(modules):
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                        _replace_with_copy(path, st)
                        copied += 1
                except OSError as exc:
                    log.warning("cannot give %s its own copy: %s", path, exc)
    if copied:
        log.info("%s: %d shared node_modules files replaced by copies", workspace, copied)
    mark_private(root)
    return copied


def _replace_with_copy(path: str, st: os.stat_result) -> None:
    tmp = f"{path}.amicable-unshare"
    src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            with open(src, "rb", closefd=False) as reader, open(dst, "wb", closefd=False) as writer:
                shutil.copyfileobj(reader, writer, 1024 * 1024)
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
        finally:
            os.close(dst)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(src)
