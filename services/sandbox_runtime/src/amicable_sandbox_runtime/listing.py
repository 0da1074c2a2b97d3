"""Tree, glob and grep over the jailed workspace (sync, fd-based, bounded output).

Walking opens every directory with ``O_NOFOLLOW`` relative to its parent's fd, so symlinks are
listed (kind ``symlink``) but never descended into, and nothing outside the workspace is read.
"""

from __future__ import annotations

import os
import re
import stat
from typing import TYPE_CHECKING, NamedTuple

from amicable_protocol.runtime import (
    GlobResult,
    GrepMatch,
    GrepResult,
    TreeEntry,
    TreeResult,
)

from .errors import InvalidRequest, NotFound
from .globs import compile_glob

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .paths import Jail

#: Directories not descended into unless asked (``include_skipped``).
SKIPPED_DIRS = frozenset({"node_modules", ".git"})
MAX_TREE_ENTRIES = 20_000
MAX_GLOB_RESULTS = 1_000
MAX_GREP_RESULTS = 2_000
MAX_GREP_LINE_CHARS = 500
MAX_GREP_FILE_BYTES = 2 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Entry(NamedTuple):  # a tuple: created once per file on hot listing paths
    rel: str  # wire path, leading "/"
    name: str
    st: os.stat_result
    dir_fd: int  # valid only while the walk is at this entry


def _walk(
    jail: Jail,
    path: str,
    *,
    depth: int | None,
    include_hidden: bool,
    include_skipped: bool,
) -> Iterator[_Entry]:
    with jail.locate(path) as loc:
        if loc.name:
            try:
                fd = os.open(loc.name, _DIR_FLAGS, dir_fd=loc.dir_fd)
            except FileNotFoundError:
                raise NotFound(f"no such directory: {loc.rel}") from None
            except NotADirectoryError:
                raise InvalidRequest(f"not a directory: {loc.rel}") from None
        else:
            fd = os.dup(loc.dir_fd)
        base = loc.rel.rstrip("/")
    try:
        yield from _walk_fd(fd, base, depth, include_hidden, include_skipped)
    finally:
        os.close(fd)


def _walk_fd(
    fd: int, base: str, depth: int | None, include_hidden: bool, include_skipped: bool
) -> Iterator[_Entry]:
    with os.scandir(fd) as it:
        names = sorted(e.name for e in it)
    for name in names:
        if not include_hidden and name.startswith("."):
            continue
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        rel = f"{base}/{name}"
        yield _Entry(rel, name, st, fd)
        if not stat.S_ISDIR(st.st_mode) or (depth is not None and depth <= 1):
            continue
        if name in SKIPPED_DIRS and not include_skipped:
            continue
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            continue  # replaced by a symlink or removed meanwhile: not ours to follow
        try:
            yield from _walk_fd(
                sub, rel, None if depth is None else depth - 1, include_hidden, include_skipped
            )
        finally:
            os.close(sub)


def _kind(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


def tree(
    jail: Jail,
    path: str = "/",
    *,
    depth: int | None = None,
    include_hidden: bool = False,
    include_skipped: bool = False,
) -> TreeResult:
    """Entries under ``path`` (sorted, depth-first), at most :data:`MAX_TREE_ENTRIES`.

    Args:
        depth: 1 lists direct children only; ``None`` is unlimited.
        include_hidden: include dot entries.
        include_skipped: descend into ``node_modules`` and ``.git``.
    """
    entries: list[TreeEntry] = []
    truncated = False
    for e in _walk(
        jail, path, depth=depth, include_hidden=include_hidden, include_skipped=include_skipped
    ):
        if len(entries) >= MAX_TREE_ENTRIES:
            truncated = True
            break
        kind = _kind(e.st)
        entries.append(
            TreeEntry(
                path=e.rel,
                kind=kind,  # type: ignore[arg-type]
                size=e.st.st_size if kind == "file" else 0,
                mtime_ns=e.st.st_mtime_ns,
                mode=stat.S_IMODE(e.st.st_mode),
            )
        )
    with jail.locate(path) as loc:
        root = loc.rel
    return TreeResult(path=root, entries=tuple(entries), truncated=truncated)


def _relative(rel: str, base: str) -> str:
    base = base.rstrip("/")
    return rel[len(base) + 1 :] if base else rel.lstrip("/")


def glob(jail: Jail, pattern: str, path: str = "/") -> GlobResult:
    """Files and directories under ``path`` whose path relative to it matches ``pattern``.

    ``node_modules``/``.git`` are only searched when the pattern names them.
    """
    if not pattern.strip():
        raise InvalidRequest("pattern must not be empty")
    regex = compile_glob(pattern)
    wants_skipped = any(d in pattern for d in SKIPPED_DIRS)
    with jail.locate(path) as loc:
        base = loc.rel
    out: list[str] = []
    truncated = False
    for e in _walk(jail, path, depth=None, include_hidden=True, include_skipped=wants_skipped):
        if regex.match(_relative(e.rel, base)):
            if len(out) >= MAX_GLOB_RESULTS:
                truncated = True
                break
            out.append(e.rel)
    return GlobResult(paths=tuple(out), truncated=truncated)


def grep(
    jail: Jail,
    pattern: str,
    path: str = "/",
    *,
    glob_pattern: str | None = None,
    fixed_strings: bool = False,
    max_results: int = 200,
) -> GrepResult:
    """Lines matching ``pattern`` (a Python regex unless ``fixed_strings``).

    Skips ``node_modules``/``.git``, hidden files, binary files (a NUL in the first 8 KiB),
    symlinks and files over :data:`MAX_GREP_FILE_BYTES`; lines are cut at
    :data:`MAX_GREP_LINE_CHARS`.
    """
    try:
        regex = re.compile(re.escape(pattern) if fixed_strings else pattern)
    except re.error as exc:
        raise InvalidRequest(f"invalid regular expression: {exc}") from None
    limit = max(1, min(max_results, MAX_GREP_RESULTS))
    file_filter = compile_glob(glob_pattern) if glob_pattern else None
    with jail.locate(path) as loc:
        base = loc.rel
    matches: list[GrepMatch] = []
    for e in _walk(jail, path, depth=None, include_hidden=False, include_skipped=False):
        if not stat.S_ISREG(e.st.st_mode) or e.st.st_size > MAX_GREP_FILE_BYTES:
            continue
        if file_filter and not file_filter.match(_relative(e.rel, base)):
            continue
        for lineno, line in _lines(e):
            if regex.search(line):
                if len(matches) >= limit:
                    return GrepResult(matches=tuple(matches), truncated=True)
                matches.append(GrepMatch(e.rel, lineno, line[:MAX_GREP_LINE_CHARS]))
    return GrepResult(matches=tuple(matches), truncated=False)


def _lines(e: _Entry) -> Iterator[tuple[int, str]]:
    try:
        fd = os.open(
            e.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=e.dir_fd
        )
    except OSError:
        return
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_GREP_FILE_BYTES + 1)
    if b"\x00" in data[:8192]:
        return
    text = data.decode("utf-8", errors="replace")
    yield from enumerate(text.splitlines(), start=1)
