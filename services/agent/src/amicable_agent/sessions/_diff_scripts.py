"""The git script behind a checkpoint's diff, and parsing what it prints (pure: no I/O).

One script prints, for a commit and its first parent (the empty tree for the first
checkpoint), four sections: a head (``commit``, ``parent``, ``title``, ``--shortstat``), then
``git diff --name-status -z``, ``git diff --numstat -z`` and the unified patch. Every section
is cut by ``head -c`` so the whole output stays under the runtime's exec output cap; what
was cut is reported (``truncated``, ``too_large``), never silently dropped.

The three listings come from the same ``git diff`` options, so they list the same files in
the same order; the patch is split at its ``diff --git`` lines and matched to the listing by
position, so no quoted path in a patch header ever needs parsing.
"""

from __future__ import annotations

import re
import shlex

import attrs
from amicable_protocol.http import CheckpointDiff, DiffHunk, FileChangeStatus, FileDiff

from ._git_scripts import NOT_FOUND_EXIT, REQUIRE_GIT, git

#: Cap of the whole patch text (bytes); the runtime's exec output cap is 200,000 characters.
MAX_DIFF_BYTES = 120_000
#: Cap of one file's patch text (bytes); past it the file is listed with ``too_large``.
MAX_FILE_DIFF_BYTES = 60_000
#: Cap of each of the two file listings (bytes); files past it are counted, not listed.
MAX_LISTING_BYTES = 30_000
_DIFF_OPTIONS = ("-M", "--no-color", "--no-ext-diff", "--no-textconv", "--full-index")
_STATUS: dict[str, FileChangeStatus] = {
    "A": "added",
    "M": "modified",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
    "T": "type_changed",
}
_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)")
_SHORTSTAT = {
    "files": re.compile(r"(\d+) files? changed"),
    "additions": re.compile(r"(\d+) insertions?\(\+\)"),
    "deletions": re.compile(r"(\d+) deletions?\(-\)"),
}
_SECTION = "\n\x1e{}\x1e\n"


@attrs.frozen
class DiffLimits:
    """Size caps of a diff (see the module constants)."""

    max_diff_bytes: int = MAX_DIFF_BYTES
    max_file_diff_bytes: int = MAX_FILE_DIFF_BYTES
    max_listing_bytes: int = MAX_LISTING_BYTES


def diff_script(sha: str, limits: DiffLimits) -> str:
    """The script printing the sections :func:`parse_diff` reads; exits
    :data:`~._git_scripts.NOT_FOUND_EXIT` when ``sha`` names no commit.

    ``sha`` must already be validated (hex digits); it is quoted all the same.
    """
    rev = shlex.quote(f"{sha}^{{commit}}")
    diff = git("diff", *_DIFF_OPTIONS)
    span = '"$base" "$full" --'

    def section(name: str) -> str:
        return f"printf {shlex.quote(_SECTION.format(name))}"

    return "\n".join(
        [
            REQUIRE_GIT,
            f"[ -d .git ] || exit {NOT_FOUND_EXIT}",
            f"full=$({git('rev-parse', '-q', '--verify')} {rev}) || exit {NOT_FOUND_EXIT}",
            f'parent=$({git("rev-parse", "-q", "--verify")} "$full^1" 2>/dev/null || true)',
            f"base=${{parent:-$({git('hash-object', '-t', 'tree', '/dev/null')})}}",
            'echo "commit $full"',
            'echo "parent ${parent:-none}"',
            f'echo "title $({git("log", "-1", "--format=%s")} "$full" --)"',
            f'echo "stat $({diff} --shortstat {span})"',
            f'echo "patch_bytes $({diff} --patch {span} | wc -c)"',
            section("status"),
            f"{diff} --name-status -z {span} | head -c {int(limits.max_listing_bytes)}",
            section("numstat"),
            f"{diff} --numstat -z {span} | head -c {int(limits.max_listing_bytes)}",
            section("patch"),
            f"{diff} --patch {span} | head -c {int(limits.max_diff_bytes) + 1}",
        ]
    )


@attrs.frozen
class _Listed:
    path: str
    status: FileChangeStatus
    old_path: str | None
    binary: bool = False
    additions: int = 0
    deletions: int = 0


def _parse_status(text: str) -> list[_Listed]:
    """``--name-status -z``: ``X\\0path\\0`` or ``R100\\0old\\0new\\0``; a cut last record
    is dropped."""
    fields = text.split("\0")
    out: list[_Listed] = []
    i = 0
    while i + 1 < len(fields):
        letter = fields[i][:1]
        status = _STATUS.get(letter)
        if status is None:
            break
        if letter in "RC":
            if i + 3 > len(fields) - 1:  # the new path's terminator was cut
                break
            out.append(_Listed("/" + fields[i + 2], status, "/" + fields[i + 1]))
            i += 3
        else:
            if i + 2 > len(fields) - 1:
                break
            out.append(_Listed("/" + fields[i + 1], status, None))
            i += 2
    return out


def _parse_numstat(text: str) -> list[tuple[bool, int, int]]:
    """``--numstat -z``: ``add\\tdel\\tpath\\0``, or ``add\\tdel\\t\\0old\\0new\\0`` for a
    rename; ``-`` counts mean binary. Returns ``(binary, additions, deletions)`` in order."""
    fields = text.split("\0")
    out: list[tuple[bool, int, int]] = []
    i = 0
    while i < len(fields) - 1:
        added, sep, rest = fields[i].partition("\t")
        deleted, sep2, path = rest.partition("\t")
        if not (sep and sep2):
            break
        binary = added == "-" or deleted == "-"
        counts = (0 if binary else int(added or 0), 0 if binary else int(deleted or 0))
        out.append((binary, *counts))
        i += 1 if path else 3
    return out


def _split_patch(text: str) -> list[str]:
    """The patch cut into one chunk per file (at its ``diff --git`` lines)."""
    chunks: list[list[str]] = []
    for line in text.split("\n"):
        if line.startswith("diff --git "):
            chunks.append([])
        if chunks:
            chunks[-1].append(line)
    return ["\n".join(c) for c in chunks]


def _hunks(chunk: str) -> tuple[DiffHunk, ...]:
    hunks: list[DiffHunk] = []
    lines: list[str] = []
    head: re.Match[str] | None = None
    for line in [*chunk.split("\n"), "@@ end"]:
        if line.startswith("@@"):
            if head is not None:
                hunks.append(
                    DiffHunk(
                        old_start=int(head.group(1)),
                        old_lines=int(head.group(2) or 1),
                        new_start=int(head.group(3)),
                        new_lines=int(head.group(4) or 1),
                        header=head.group(5),
                        lines=tuple(lines),
                    )
                )
            head, lines = _HUNK.match(line), []
        elif head is not None and line[:1] in (" ", "+", "-", "\\"):
            lines.append(line)
    return tuple(hunks)


def _sections(out: str) -> dict[str, str]:
    parts = {"head": out}
    for name in ("patch", "numstat", "status"):
        mark = _SECTION.format(name)
        rest, found, tail = parts["head"].partition(mark)
        if found:
            parts["head"], parts[name] = rest, tail
    return parts


def _head_fields(head: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in head.splitlines():
        key, _, value = line.partition(" ")
        fields.setdefault(key, value)
    return fields


def _shortstat(line: str, key: str) -> int:
    match = _SHORTSTAT[key].search(line)
    return int(match.group(1)) if match else 0


def _file(
    item: _Listed, count: tuple[bool, int, int], chunk: str | None, limits: DiffLimits
) -> FileDiff:
    binary, additions, deletions = count
    if chunk is not None and "\nBinary files " in chunk:
        binary = True
    size = len(chunk.encode("utf-8")) if chunk is not None else 0
    too_large = not binary and (chunk is None or size > limits.max_file_diff_bytes)
    return FileDiff(
        path=item.path,
        status=item.status,
        old_path=item.old_path,
        binary=binary,
        additions=additions,
        deletions=deletions,
        too_large=too_large,
        hunks=() if binary or too_large or chunk is None else _hunks(chunk),
    )


def parse_diff(out: str, limits: DiffLimits, *, output_cut: bool = False) -> CheckpointDiff:
    """Parse :func:`diff_script`'s output into the API's body (``output_cut``: the runtime
    cut the output at its cap)."""
    parts = _sections(out)
    head = _head_fields(parts["head"])
    listed = _parse_status(parts.get("status", ""))
    counts = _parse_numstat(parts.get("numstat", ""))
    chunks = _split_patch(parts.get("patch", ""))
    patch_bytes = head.get("patch_bytes", "0").strip()
    if chunks and (
        output_cut or not patch_bytes.isdigit() or int(patch_bytes) > limits.max_diff_bytes
    ):
        chunks = chunks[:-1]  # the last file's diff was cut mid-way: leave it out whole
    files = [
        _file(
            item,
            counts[i] if i < len(counts) else (False, 0, 0),
            chunks[i] if i < len(chunks) else None,
            limits,
        )
        for i, item in enumerate(listed)
    ]
    stat = head.get("stat", "")
    files_changed = max(_shortstat(stat, "files"), len(files))
    parent = head.get("parent", "none")
    return CheckpointDiff(
        sha=head.get("commit", "").strip(),
        parent=None if parent in ("", "none") else parent.strip(),
        title=head.get("title", "").strip(),
        files_changed=files_changed,
        additions=_shortstat(stat, "additions"),
        deletions=_shortstat(stat, "deletions"),
        files=tuple(files),
        truncated=files_changed > len(files) or any(f.too_large for f in files),
        max_diff_bytes=limits.max_diff_bytes,
        max_file_diff_bytes=limits.max_file_diff_bytes,
    )
