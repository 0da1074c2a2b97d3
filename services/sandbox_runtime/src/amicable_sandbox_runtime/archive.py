"""A tar.gz of the workspace, built fd-by-fd inside the jail and streamed in chunks.

The archive is written (in a worker thread) to a spooled temporary file, which is then sent
in chunks: memory stays bounded and no task has to yield from inside a nursery. Files are
opened with ``O_NOFOLLOW`` relative to their directory's fd; symlinks are stored as links.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import tarfile
import tempfile
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .paths import Jail

#: Excluded unless the caller asks for no defaults: dependencies, VCS, build output,
#: secrets (``.env*``) and tool caches.
DEFAULT_EXCLUDES = (
    "node_modules",
    ".git",
    "dist",
    "build",
    ".env*",
    ".cache",
    ".vite",
    ".next",
    ".turbo",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
)
CHUNK_BYTES = 64 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def is_excluded(rel: str, name: str, patterns: Iterable[str]) -> bool:
    """Whether an entry (``rel`` without leading ``/``) matches an exclude pattern.

    A pattern matches either the entry's name (at any depth) or its whole relative path.
    """
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)


def build_archive(jail: Jail, excludes: Iterable[str]) -> IO[bytes]:
    """Write a tar.gz of the workspace to a temporary file (rewound, caller closes it)."""
    patterns = tuple(excludes)
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        root = os.dup(jail.root_fd)
        try:
            _add_dir(tar, root, "", patterns)
        finally:
            os.close(root)
    out.seek(0)
    return out


def _add_dir(tar: tarfile.TarFile, fd: int, base: str, patterns: tuple[str, ...]) -> None:
    with os.scandir(fd) as it:
        names = sorted(e.name for e in it)
    for name in names:
        rel = f"{base}{name}"
        if is_excluded(rel, name, patterns):
            continue
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = int(st.st_mtime)
        if stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(name, dir_fd=fd)
            tar.addfile(info)
        elif stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                _add_dir(tar, sub, rel + "/", patterns)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            try:
                ffd = os.open(
                    name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd
                )
            except OSError:
                continue
            with os.fdopen(ffd, "rb") as fh:
                info.size = os.fstat(fh.fileno()).st_size
                tar.addfile(info, fh)
