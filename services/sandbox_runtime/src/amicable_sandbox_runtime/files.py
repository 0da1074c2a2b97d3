"""File operations on the jailed workspace (sync; run in worker threads, except small
reads and writes, which the fast routes do inline: see ``read_small`` and ``try_write``).

Writes are atomic (a temporary file in the same directory, then ``rename``), so readers never
see half a file and a hard link shared with the ``node_modules`` cache is replaced rather than
modified in place. Conditional writes and edits hold one lock so check-then-write is atomic
with respect to other API writes.

An existing file is replaced by swapping the new one in (``renameat2(RENAME_EXCHANGE)``) and
unlinking the old one, not by renaming over it: the name still points at the old or the new
file at every instant, but ext4 does not start writing back the new data on the spot, which
it does for a rename over (or a truncation of) a file with data (``auto_da_alloc``; 0.3 ms of
a 0.45 ms write here). Neither way is durable on power loss without ``fsync``, which the API
never promised; ext4's heuristic only narrowed that window. Where the swap is not supported
(an old kernel, overlayfs with the file in a lower layer) it falls back to the rename.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import secrets
import shutil
import stat
import threading
from typing import overload

from amicable_protocol.runtime import EditResult, PathResult, WriteResult

from .errors import Conflict, InvalidPath, InvalidRequest, IsDirectory, NotFound, TooLarge
from .paths import Jail, Located, open_file

#: Worker threads for file operations (one limiter shared by the fast routes and the app).
WORKER_THREADS = 8

_RENAME_EXCHANGE = 2  # linux/fs.h
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)
if _renameat2 is not None:
    _renameat2.argtypes = (
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    )
    _renameat2.restype = ctypes.c_int
#: errnos meaning "this filesystem/kernel cannot swap": rename instead
_NO_EXCHANGE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.EOPNOTSUPP})


def exchange(dir_fd: int, a: str, b: str) -> bool:
    """Atomically swap the entries ``a`` and ``b`` in ``dir_fd``; False when unsupported.

    Raises:
        OSError: any other failure (e.g. ``ENOENT``: one of them is gone).
    """
    if _renameat2 is None:
        return False
    if _renameat2(dir_fd, os.fsencode(a), dir_fd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _NO_EXCHANGE:
        return False
    raise OSError(err, os.strerror(err), b)


#: Bytes of the file's own name kept in its temporary name (``.<name>.amicable-<8 hex>.tmp``
#: must stay within the 255 bytes a name may have).
_TEMP_STEM_BYTES = 200


def _temporary_name(name: str) -> str:
    """The name a write creates before it renames: hidden, unique, never too long."""
    stem = os.fsdecode(os.fsencode(name)[:_TEMP_STEM_BYTES])
    return f".{stem}.amicable-{secrets.token_hex(4)}.tmp"


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data`` (the ``X-Content-SHA256`` / ``If-Match`` form)."""
    return hashlib.sha256(data).hexdigest()


class Files:
    """The workspace's file API.

    Args:
        jail: the workspace jail.
        max_file_bytes: largest file accepted by :meth:`write` / produced by :meth:`edit`.
    """

    def __init__(self, jail: Jail, *, max_file_bytes: int) -> None:
        self.jail = jail
        self.max_file_bytes = max_file_bytes
        self._write_lock = threading.Lock()

    # --- reading ------------------------------------------------------------------------

    def read(self, path: str) -> tuple[bytes, str]:
        """Content and sha256 of a file.

        Raises:
            NotFound, IsDirectory, InvalidPath.
        """
        with self.jail.locate(path) as loc:
            data = self._read_located(loc)
        return data, sha256_hex(data)

    def read_small(self, path: str, limit: int) -> tuple[bytes, str] | None:
        """Like :meth:`read`, but ``None`` (nothing read) for a file over ``limit`` bytes.

        For callers on the event loop: a small read is cheaper inline than a thread hop;
        a big one goes to :meth:`read` in a worker thread.
        """
        with self.jail.locate(path) as loc:
            data = self._read_located(loc, inline_limit=limit)
        return None if data is None else (data, sha256_hex(data))

    @overload
    def _read_located(self, loc: Located) -> bytes: ...
    @overload
    def _read_located(self, loc: Located, *, inline_limit: int) -> bytes | None: ...

    def _read_located(self, loc: Located, *, inline_limit: int | None = None) -> bytes | None:
        # O_NONBLOCK: a FIFO planted in the workspace must not hang a worker thread
        fd = open_file(loc, os.O_RDONLY | os.O_NONBLOCK)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsDirectory(f"is a directory: {loc.rel}")
            raise InvalidRequest(f"not a regular file: {loc.rel}")
        if st.st_size > self.max_file_bytes:
            os.close(fd)
            raise TooLarge(f"{loc.rel} is {st.st_size} bytes; the limit is {self.max_file_bytes}")
        if inline_limit is not None and st.st_size > inline_limit:
            os.close(fd)
            return None
        with os.fdopen(fd, "rb") as fh:
            return fh.read()

    # --- writing ------------------------------------------------------------------------

    def write(self, path: str, data: bytes, *, if_match: str | None = None) -> WriteResult:
        """Create or replace a file (parents are created).

        Args:
            if_match: expected sha256 of the current content; mismatch (or a missing file)
                raises :class:`Conflict`.

        Raises:
            TooLarge, Conflict, IsDirectory, InvalidPath.
        """
        with self._write_lock:
            return self._write_locked(path, data, if_match)

    def try_write(
        self, path: str, data: bytes, *, if_match: str | None = None
    ) -> WriteResult | None:
        """:meth:`write` if the write lock is free right now, else ``None`` (nothing done).

        For callers on the event loop, which must not block on a lock a worker thread holds.
        """
        if not self._write_lock.acquire(blocking=False):
            return None
        try:
            return self._write_locked(path, data, if_match)
        finally:
            self._write_lock.release()

    def _write_locked(self, path: str, data: bytes, if_match: str | None) -> WriteResult:
        if len(data) > self.max_file_bytes:
            raise TooLarge(f"file is {len(data)} bytes; the limit is {self.max_file_bytes}")
        with self.jail.locate(path, create_parents=True) as loc:
            if if_match is not None:
                current = self._current_sha(loc)
                if current != if_match.strip().strip('"').lower():
                    raise Conflict(
                        f"{loc.rel} changed: If-Match {if_match} but current content is "
                        f"{current or 'missing'}"
                    )
            self._replace(loc, data)
        return WriteResult(path=loc.rel, sha256=sha256_hex(data), size=len(data))

    def _current_sha(self, loc: Located) -> str | None:
        try:
            return sha256_hex(self._read_located(loc))
        except NotFound:
            return None

    def _replace(self, loc: Located, data: bytes) -> None:
        if not loc.name:
            raise IsDirectory("the workspace root is a directory")
        mode = 0o644
        existed = False
        try:
            st = os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(st.st_mode):
                raise IsDirectory(f"is a directory: {loc.rel}")
            if stat.S_ISREG(st.st_mode):  # a symlink's 0777 is not a file mode to copy
                mode = stat.S_IMODE(st.st_mode)
            existed = True
        tmp = _temporary_name(loc.name)
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=loc.dir_fd,
        )
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, mode, dir_fd=loc.dir_fd, follow_symlinks=False)
            if existed and self._swap_in(loc, tmp):
                return
            os.rename(tmp, loc.name, src_dir_fd=loc.dir_fd, dst_dir_fd=loc.dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=loc.dir_fd)
            raise

    @staticmethod
    def _swap_in(loc: Located, tmp: str) -> bool:
        """Swap ``tmp`` (the new content) with the existing file and unlink the old one.

        False when the swap is unsupported or the file vanished meanwhile (nothing changed;
        the caller renames instead).

        Raises:
            IsDirectory: the name became a directory meanwhile (swapped back).
        """
        try:
            if not exchange(loc.dir_fd, tmp, loc.name):
                return False
        except FileNotFoundError:
            return False
        try:
            os.unlink(tmp, dir_fd=loc.dir_fd)  # the old file, under the temporary name
        except IsADirectoryError as exc:  # replaced by a directory after the stat: undo
            exchange(loc.dir_fd, tmp, loc.name)
            raise IsDirectory(f"is a directory: {loc.rel}") from exc
        return True

    def edit(self, path: str, old: str, new: str, *, replace_all: bool = False) -> EditResult:
        """Exact string replacement.

        Raises:
            NotFound: missing file.
            Conflict: ``old`` occurs 0 times, or several times without ``replace_all``.
            InvalidRequest: empty ``old`` or a file that is not UTF-8 text.
        """
        if not old:
            raise InvalidRequest("old_string must not be empty")
        with self._write_lock, self.jail.locate(path) as loc:
            raw = self._read_located(loc)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest(f"{loc.rel} is not UTF-8 text") from None
            count = text.count(old)
            if count == 0:
                raise Conflict(f"old_string was not found in {loc.rel}; nothing was changed")
            if count > 1 and not replace_all:
                raise Conflict(
                    f"old_string occurs {count} times in {loc.rel}; add surrounding context "
                    "to make it unique or set replace_all"
                )
            updated = (
                text.replace(old, new) if replace_all else text.replace(old, new, 1)
            ).encode()
            if len(updated) > self.max_file_bytes:
                raise TooLarge(f"the edited file would exceed {self.max_file_bytes} bytes")
            self._replace(loc, updated)
        return EditResult(
            path=loc.rel, replacements=count if replace_all else 1, sha256=sha256_hex(updated)
        )

    # --- tree changes -------------------------------------------------------------------

    def delete(self, path: str, *, recursive: bool = False) -> PathResult:
        """Delete a file, a symlink (never its target) or a directory.

        Raises:
            NotFound; Conflict for a non-empty directory without ``recursive``;
            InvalidPath for the workspace root.
        """
        with self._write_lock, self.jail.locate(path, follow_last=False) as loc:
            if not loc.name:
                raise InvalidPath("refusing to delete the workspace root")
            try:
                st = os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound(f"no such file or directory: {loc.rel}") from None
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(loc.name, dir_fd=loc.dir_fd)
            elif recursive:
                # fd-based rmtree never follows symlinks out of the tree
                shutil.rmtree(loc.name, dir_fd=loc.dir_fd)
            else:
                try:
                    os.rmdir(loc.name, dir_fd=loc.dir_fd)
                except OSError as exc:
                    if exc.errno != errno.ENOTEMPTY:
                        raise
                    raise Conflict(f"directory {loc.rel} is not empty; pass recursive=1") from None
        return PathResult(path=loc.rel)

    def move(self, src: str, dst: str) -> PathResult:
        """Rename a file or directory; the destination must not exist.

        Raises:
            NotFound, Conflict (destination exists), InvalidPath.
        """
        with (
            self._write_lock,
            self.jail.locate(src, follow_last=False) as s,
            self.jail.locate(dst, follow_last=False, create_parents=True) as d,
        ):
            if not s.name or not d.name:
                raise InvalidPath("cannot move the workspace root")
            try:
                os.stat(s.name, dir_fd=s.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound(f"no such file or directory: {s.rel}") from None
            try:
                os.stat(d.name, dir_fd=d.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                raise Conflict(f"destination exists: {d.rel}")
            if (d.rel + "/").startswith(s.rel + "/"):
                raise InvalidRequest(f"cannot move {s.rel} into itself")
            os.rename(s.name, d.name, src_dir_fd=s.dir_fd, dst_dir_fd=d.dir_fd)
        return PathResult(path=d.rel)

    def mkdir(self, path: str) -> PathResult:
        """Create a directory and its parents (an existing directory is fine).

        Raises:
            Conflict: a non-directory is in the way.
        """
        with self.jail.locate(path, create_parents=True) as loc:
            if not loc.name:
                return PathResult(path="/")
            try:
                os.mkdir(loc.name, dir_fd=loc.dir_fd)
            except FileExistsError:
                st = os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise Conflict(f"a file exists at {loc.rel}") from None
        return PathResult(path=loc.rel)
