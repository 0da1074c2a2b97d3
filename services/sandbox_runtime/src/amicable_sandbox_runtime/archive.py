"""A tar.gz or zip of the workspace, built fd-by-fd inside the jail and streamed in chunks.

The archive is written (in a worker thread) to a spooled temporary file, which is then sent
in chunks: memory stays bounded and no task has to yield from inside a nursery. Files are
opened with ``O_NOFOLLOW`` relative to their directory's fd; symlinks are stored as links
(in a zip the Info-ZIP way: the target as the entry's content, ``S_IFLNK`` in its mode).
"""

from __future__ import annotations

import fnmatch
import os
import stat
import tarfile
import tempfile
import time
import zipfile
from typing import IO, TYPE_CHECKING, Literal

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
Format = Literal["tar.gz", "zip"]
#: ``format`` query value -> (media type, file name suffix)
FORMATS: dict[str, tuple[str, str]] = {
    "tar.gz": ("application/gzip", "tar.gz"),
    "zip": ("application/zip", "zip"),
}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def is_excluded(rel: str, name: str, patterns: Iterable[str]) -> bool:
    """Whether an entry (``rel`` without leading ``/``) matches an exclude pattern.

    A pattern matches either the entry's name (at any depth) or its whole relative path.
    """
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)


def build_archive(jail: Jail, excludes: Iterable[str], fmt: Format = "tar.gz") -> IO[bytes]:
    """Write an archive of the workspace to a temporary file (rewound, caller closes it)."""
    patterns = tuple(excludes)
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    root = os.dup(jail.root_fd)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
                _add_dir(_ZipSink(zf), root, "", patterns)
        else:
            with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
                _add_dir(_TarSink(tar), root, "", patterns)
    finally:
        os.close(root)
    out.seek(0)
    return out


class _TarSink:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar

    def _info(self, rel: str, st: os.stat_result) -> tarfile.TarInfo:
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = int(st.st_mtime)
        return info

    def link(self, rel: str, st: os.stat_result, target: str) -> None:
        info = self._info(rel, st)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        self.tar.addfile(info)

    def directory(self, rel: str, st: os.stat_result) -> None:
        info = self._info(rel, st)
        info.type = tarfile.DIRTYPE
        self.tar.addfile(info)

    def file(self, rel: str, st: os.stat_result, fh: IO[bytes]) -> None:
        info = self._info(rel, st)
        info.size = st.st_size
        self.tar.addfile(info, fh)


class _ZipSink:
    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf

    @staticmethod
    def _info(name: str, st: os.stat_result, kind: int) -> zipfile.ZipInfo:
        # zip timestamps start in 1980
        stamp = time.localtime(max(st.st_mtime, 315532800))[:6]
        info = zipfile.ZipInfo(name, date_time=stamp)
        info.external_attr = (kind | stat.S_IMODE(st.st_mode)) << 16
        info.create_system = 3  # unix: the mode bits above are meaningful
        return info

    def link(self, rel: str, st: os.stat_result, target: str) -> None:
        self.zf.writestr(self._info(rel, st, stat.S_IFLNK), target)

    def directory(self, rel: str, st: os.stat_result) -> None:
        info = self._info(rel + "/", st, stat.S_IFDIR)
        info.external_attr |= 0x10  # MS-DOS directory flag
        self.zf.writestr(info, b"")

    def file(self, rel: str, st: os.stat_result, fh: IO[bytes]) -> None:
        info = self._info(rel, st, stat.S_IFREG)
        info.compress_type = zipfile.ZIP_DEFLATED
        with self.zf.open(info, "w", force_zip64=st.st_size > 0x7FFFFFFF) as dest:
            while chunk := fh.read(CHUNK_BYTES):
                dest.write(chunk)


def _add_dir(sink: _TarSink | _ZipSink, fd: int, base: str, patterns: tuple[str, ...]) -> None:
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
        if stat.S_ISLNK(st.st_mode):
            sink.link(rel, st, os.readlink(name, dir_fd=fd))
        elif stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                sink.directory(rel, st)
                _add_dir(sink, sub, rel + "/", patterns)
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
                sink.file(rel, os.fstat(fh.fileno()), fh)
