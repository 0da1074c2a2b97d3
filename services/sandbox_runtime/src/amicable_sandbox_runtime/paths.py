"""The workspace jail: every path operation resolves component by component under a dir fd.

Resolution never lets the kernel follow a symlink: each intermediate component is opened with
``O_NOFOLLOW | O_DIRECTORY`` relative to the already-open parent, and a symlink met on the way
is read with ``readlink`` and expanded *by us* against the jail (``..`` pops our own stack and
can never climb above the root; absolute targets are only accepted when they point into the
workspace). Final components are opened with ``O_NOFOLLOW`` too, so a symlink swapped in after
any check fails the open instead of escaping (no TOCTOU window).

Workspace paths on the wire are relative to the root; a leading ``/`` means the root itself.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

import attrs

from .errors import InvalidPath, IsDirectory, NotFound, PathTooLong

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

_MAX_SYMLINK_HOPS = 40
#: A path of at most this many characters is within every length limit (a name needs more
#: than 255 // 4 characters to exceed 255 bytes).
_SHORTER_PATHS_FIT = 63
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_path(path: str) -> list[str]:
    """Split a wire path into components (pure; ``..`` is kept for the resolver).

    Raises:
        InvalidPath: NUL byte, or not a string path.
        PathTooLong: over ``MAX_PATH_BYTES``, or a name over ``MAX_NAME_BYTES`` (the file
            system would answer ``ENAMETOOLONG``).
    """
    if "\x00" in path:
        raise InvalidPath("path contains a NUL byte")
    if len(path) > _SHORTER_PATHS_FIT:
        # imported here: the jail is loaded before the web stack (and the protocol library
        # with it), which only requests need; by then it is loaded
        from amicable_protocol import path_length_problem

        too_long = path_length_problem(path)
        if too_long is not None:
            raise PathTooLong(too_long)
    return [part for part in path.strip().split("/") if part not in ("", ".")]


def normalize(path: str) -> str:
    """The canonical wire form (``/a/b``) of a path, rejecting lexical escapes.

    Raises:
        InvalidPath: NUL byte or ``..`` climbing above the root.
    """
    stack: list[str] = []
    for part in split_path(path):
        if part == "..":
            if not stack:
                raise InvalidPath(f"path escapes the workspace: {path!r}")
            stack.pop()
        else:
            stack.append(part)
    return "/" + "/".join(stack)


@attrs.frozen
class Located:
    """A resolved path: an open parent directory fd and the final name inside it.

    ``name`` is ``""`` for the workspace root itself (then ``dir_fd`` is the root).
    ``rel`` is the canonical wire path after symlink expansion.
    """

    dir_fd: int
    name: str
    rel: str


class Jail:
    """Confines file operations to one workspace directory (holds an fd on it).

    Args:
        root: the workspace directory (must exist).
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        """Release the root fd."""
        os.close(self.root_fd)

    def host_path(self, rel: str) -> Path:
        """The host path of a canonical wire path (only for handing to subprocesses as cwd)."""
        return self.root.joinpath(*split_path(rel))

    @contextmanager
    def locate(
        self, path: str, *, follow_last: bool = True, create_parents: bool = False
    ) -> Iterator[Located]:
        """Resolve ``path`` to (parent dir fd, final name); the fd is closed on exit.

        Args:
            follow_last: expand a symlink in the final component (reads/writes); ``False``
                for operations on the link itself (delete, move, lstat).
            create_parents: create missing intermediate directories.

        Raises:
            InvalidPath: escape via ``..`` or a symlink, NUL byte, symlink loop.
            NotFound: a missing intermediate directory (without ``create_parents``).
        """
        stack: list[tuple[int, str]] = [(os.dup(self.root_fd), "")]
        try:
            name = self._walk(path, stack, follow_last=follow_last, create_parents=create_parents)
            names = [n for _, n in stack[1:]]
            rel = "/" + "/".join([*names, name] if name else names)
            if not name and len(stack) > 1:
                # the path names a directory reached by walking; hand out its parent + name
                fd, last = stack.pop()
                os.close(fd)
                name = last
            yield Located(stack[-1][0], name, rel)
        finally:
            for fd, _ in stack:
                os.close(fd)

    def _walk(
        self, path: str, stack: list[tuple[int, str]], *, follow_last: bool, create_parents: bool
    ) -> str:
        pending = split_path(path)
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if len(stack) == 1:
                    raise InvalidPath(f"path escapes the workspace: {path!r}")
                os.close(stack.pop()[0])
                continue
            top = stack[-1][0]
            if not pending:
                target = self._readlink(part, top) if follow_last else None
                if target is None:
                    return part
            else:
                fd, target = self._open_dir(part, top, path, create_parents=create_parents)
                if fd is not None:
                    stack.append((fd, part))
                    continue
            hops += 1
            if hops > _MAX_SYMLINK_HOPS:
                raise InvalidPath(f"too many levels of symbolic links: {path!r}")
            assert target is not None
            pending = self._expand(target, stack, path) + pending
        return ""

    def _open_dir(
        self, part: str, top: int, path: str, *, create_parents: bool
    ) -> tuple[int | None, str | None]:
        """Open an intermediate directory: ``(fd, None)``, or ``(None, link target)``."""
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=top), None
        except FileNotFoundError:
            if not create_parents:
                raise NotFound(f"no such directory: {path!r}") from None
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            target = self._readlink(part, top)
            if target is None:
                raise InvalidPath(f"not a directory: {part!r} in {path!r}") from None
            return None, target
        with suppress(FileExistsError):
            os.mkdir(part, dir_fd=top)
        # O_NOFOLLOW again: whatever now sits there must be a real directory
        return os.open(part, _DIR_FLAGS, dir_fd=top), None

    def _readlink(self, name: str, dir_fd: int) -> str | None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISLNK(st.st_mode):
            return None
        return os.readlink(name, dir_fd=dir_fd)

    def _expand(self, target: str, stack: list[tuple[int, str]], path: str) -> list[str]:
        """Components replacing a symlink; absolute targets restart at the root."""
        if "\x00" in target:
            raise InvalidPath("symlink target contains a NUL byte")
        if not target.startswith("/"):
            return split_path(target)
        root = str(self.root)
        if target != root and not target.startswith(root.rstrip("/") + "/"):
            raise InvalidPath(f"symlink in {path!r} points outside the workspace")
        while len(stack) > 1:
            os.close(stack.pop()[0])
        return split_path(target[len(root) :])


def open_file(loc: Located, flags: int, mode: int = 0o644) -> int:
    """``open`` the located name without following a final symlink.

    Raises:
        InvalidPath: the final component is (now) a symlink.
        NotFound / IsDirectory: as the names say.
    """
    if not loc.name:
        raise IsDirectory("the workspace root is a directory")
    try:
        return os.open(loc.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=loc.dir_fd)
    except FileNotFoundError:
        raise NotFound(f"no such file: {loc.rel}") from None
    except IsADirectoryError:
        raise IsDirectory(f"is a directory: {loc.rel}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidPath(f"symlink changed while opening {loc.rel}") from None
        raise
