"""Archives a sandbox produced, checked before the agent extracts or hands them on.

A compromised sandbox controls its runtime's ``/v1/archive``: a 1 GiB sparse file packs into
1 MB of tar.gz, a tar may hold millions of members, and a symlink can point anywhere. So
every archive the agent takes from a sandbox goes through :class:`ArchiveGuard`: members are
counted and their (declared, uncompressed) sizes added up against :class:`ArchiveLimits`
before anything is written, and no member may be absolute, climb out with ``..``, be a
device or FIFO, or be a link whose target leaves the archive's root.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from amicable_agent.errors import UnsafeArchive

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator

MIB = 1024 * 1024


@attrs.frozen
class ArchiveLimits:
    """The most a sandbox archive may hold.

    Attributes:
        compressed_bytes: the archive as received.
        uncompressed_bytes: the sum of its members' sizes.
        members: how many entries (files, directories, links).
    """

    compressed_bytes: int = 512 * MIB
    uncompressed_bytes: int = 2048 * MIB
    members: int = 200_000


def link_stays_inside(name: str, target: str) -> bool:
    """Whether a link named ``name`` (a path inside the archive) pointing at ``target``
    resolves inside the archive's root."""
    if not target or target.startswith("/") or "\0" in target:
        return False
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    return resolved != ".." and not resolved.startswith("../")


def _name_is_safe(name: str) -> bool:
    clean = name.replace("\\", "/")
    if not clean or clean.startswith("/") or "\0" in clean:
        return False
    return ".." not in clean.strip("/").split("/")


class ArchiveGuard:
    """Counts members and bytes of one archive; raises :class:`UnsafeArchive` at the first
    member that breaks :class:`ArchiveLimits` or the rules of the module docstring."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self._limits = limits
        self.members = 0
        self.total = 0

    def _count(self, name: str, size: int) -> None:
        self.members += 1
        self.total += max(0, size)
        if self.members > self._limits.members:
            raise UnsafeArchive("too_large", f"more than {self._limits.members} entries")
        if self.total > self._limits.uncompressed_bytes:
            raise UnsafeArchive(
                "too_large", f"more than {self._limits.uncompressed_bytes >> 20} MiB unpacked"
            )
        if not _name_is_safe(name):
            raise UnsafeArchive("unsafe_archive", f"entry {name!r} leaves the project")

    def check_tar(self, member: tarfile.TarInfo) -> None:
        """One tar member (call before extracting it)."""
        self._count(member.name, member.size)
        if member.issym() or member.islnk():
            if not link_stays_inside(member.name, member.linkname):
                raise UnsafeArchive("unsafe_archive", f"link {member.name!r} points outside")
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchive("unsafe_archive", f"entry {member.name!r} is not a file")

    def check_zip(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        """One zip entry (a symlink's target is its content, read bounded)."""
        self._count(info.filename, info.file_size)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            if info.file_size > 4096:
                raise UnsafeArchive("unsafe_archive", f"link {info.filename!r} is malformed")
            target = archive.read(info).decode("utf-8", "replace")
            if not link_stays_inside(info.filename.rstrip("/"), target):
                raise UnsafeArchive("unsafe_archive", f"link {info.filename!r} points outside")
        elif mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UnsafeArchive("unsafe_archive", f"entry {info.filename!r} is not a file")


def check_archive(path: Path, fmt: str, limits: ArchiveLimits) -> None:
    """Check a whole archive file (blocking; run in a thread).

    Raises:
        UnsafeArchive: ``too_large`` or ``unsafe_archive``, naming the first offending entry
            (also for an archive that cannot be read).
    """
    if path.stat().st_size > limits.compressed_bytes:
        raise UnsafeArchive("too_large", f"more than {limits.compressed_bytes >> 20} MiB")
    guard = ArchiveGuard(limits)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    guard.check_zip(archive, info)
        else:
            with tarfile.open(path, mode="r:gz") as tar:
                for member in tar:
                    guard.check_tar(member)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UnsafeArchive("unsafe_archive", f"unreadable archive: {exc}") from exc


async def spool_checked(
    chunks: AsyncIterable[bytes], fmt: str, limits: ArchiveLimits | None = None
) -> Path:
    """Write a streamed archive to a temporary file, check it (:func:`check_archive`) and
    return the file; the caller deletes it (see :func:`stream_file`).

    Raises:
        UnsafeArchive: as :func:`check_archive` (the file is removed then).
    """
    limits = limits or ArchiveLimits()
    fd, name = tempfile.mkstemp(prefix="amicable-archive-")
    os.close(fd)
    path = Path(name)
    try:
        size = 0
        async with await trio.open_file(path, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limits.compressed_bytes:
                    raise UnsafeArchive(
                        "too_large", f"more than {limits.compressed_bytes >> 20} MiB"
                    )
                await out.write(chunk)
        await trio.to_thread.run_sync(check_archive, path, fmt, limits)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)  # a local unlink: cheap
        raise
    return path


async def stream_file(path: Path, chunk_bytes: int = 64 * 1024) -> AsyncIterator[bytes]:
    """The file's bytes in chunks; the file is deleted when the iteration ends."""
    try:
        async with await trio.open_file(path, "rb") as src:
            while chunk := await src.read(chunk_bytes):
                yield chunk
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # a local unlink: cheap
