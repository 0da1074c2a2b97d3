"""The shell scripts behind snapshots, and parsing what they print (pure: no I/O).

:mod:`.snapshots` runs these through the runtime's exec, like the checkpoint scripts of
:mod:`._git_scripts` (same per-command git settings, same write prelude). Bundles are made in
``.git/amicable-snap/`` (never watched by the dev server, never in a checkpoint) and read
through the file API in parts; a restore's parts are written to ``.amicable/restore/``
(``.git`` may not exist yet) and removed by the script that applies them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import attrs

from amicable_agent.snapshots import SNAPSHOT_REF

from ._git_scripts import PID_FILE, REQUIRE_GIT, STAMP_FILE, _write_prelude, git

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Where a snapshot bundle is made, in the sandbox.
BUNDLE_DIR = ".git/amicable-snap"
#: The bundle as made (its first part, when it is split).
FIRST_PART = f"{BUNDLE_DIR}/p.aaaa"
#: Where a restore's parts are written, in the sandbox (a workspace path without the ``/``).
RESTORE_DIR = ".amicable/restore"
#: The old history's head, kept as a ref when a restore replaces a different history.
REPLACED_REF = "refs/amicable/replaced"
#: The files whose change (against the template's) makes a restore reinstall dependencies.
LOCK_FILES = ("package.json", "package-lock.json")
_PART_NAME = re.compile(r"p\.[a-z]{4}")


@attrs.frozen
class BundleOutput:
    """What :func:`bundle_script` printed.

    Attributes:
        state: ``none`` (no history yet), ``same`` (nothing after ``base``), ``diverged``
            (the history does not continue ``base``), ``too_large``, ``failed`` or ``ready``.
        size: the size the sandbox claims for the bundle (never trusted for reading).
        parts: the names of the bundle's parts in ``BUNDLE_DIR``, in order.
        detail: git's complaint when ``failed``.
    """

    state: str
    size: int = 0
    parts: tuple[str, ...] = ()
    detail: str = ""


def bundle_script(base: str | None) -> str:
    """Bundle the commits after ``base`` (all of them when None) up to ``HEAD`` (the bundle's
    one ref) as :data:`FIRST_PART`; see :func:`parse_bundle`.

    A snapshot follows every checkpoint, so the common path is one ``git bundle create``:
    the head is read from the bundle's header by the agent, "nothing new" is git refusing an
    empty bundle, and a history that does not continue ``base`` is told apart only when the
    bundle cannot be made (or by the agent's fast-forward check). A bundle too big to read
    in one part is split by :func:`split_script`.
    """
    has_head = git("rev-parse", "-q", "--verify", "HEAD")
    rev = ["HEAD", *([f"^{base}"] if base else [])]
    lines = [
        REQUIRE_GIT,
        "[ -d .git ] || { echo 'state none'; exit 0; }",
        f"[ -d {BUNDLE_DIR} ] || mkdir -p {BUNDLE_DIR}",
        f'for f in {BUNDLE_DIR}/p.*; do [ -e "$f" ] && rm -f {BUNDLE_DIR}/p.*; break; done',
        f"if ! {git('bundle', 'create', FIRST_PART, *rev)} 2>{BUNDLE_DIR}/err; then",
        f"  if ! {has_head} >/dev/null; then echo 'state none'; exit 0; fi",
        f"  if grep -q 'empty bundle' {BUNDLE_DIR}/err; then echo 'state same'; exit 0; fi",
    ]
    if base:  # the base is unknown here (a history that started over)
        lines.append(
            f"  if ! {git('cat-file', '-e', f'{base}^{{commit}}')} 2>/dev/null; then "
            "echo 'state diverged'; exit 0; fi"
        )
    lines += [
        f"  echo 'state failed'; tail -c 400 {BUNDLE_DIR}/err; exit 0",
        "fi",
        "echo 'state ready'",
        "echo 'part p.aaaa'",
    ]
    return "\n".join(lines)


def split_script(*, part_bytes: int, max_bytes: int) -> str:
    """Split the bundle :func:`bundle_script` made into parts of ``part_bytes`` (or refuse it
    as ``too_large`` over ``max_bytes``); see :func:`parse_bundle`."""
    return "\n".join(
        [
            "set -e",
            f"size=$(( $(wc -c < {FIRST_PART}) ))",
            'echo "size $size"',
            f'if [ "$size" -gt {int(max_bytes)} ]; then rm -f {FIRST_PART}; echo "state too_large"; exit 0; fi',
            f"cd {BUNDLE_DIR} && mv p.aaaa b && split -b {int(part_bytes)} -a 4 b p. && rm -f b",
            "echo 'state ready'",
            'for f in p.*; do echo "part $f"; done',
        ]
    )


def parse_bundle(text: str) -> BundleOutput:
    """Parse :func:`bundle_script`'s output; anything malformed is ``failed``."""
    fields: dict[str, str] = {}
    parts: list[str] = []
    rest: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "part" and _PART_NAME.fullmatch(value):
            parts.append(value)
        elif key in ("state", "size") and key not in fields:
            fields[key] = value.strip()
        else:
            rest.append(line)
    state = fields.get("state", "failed")
    size = fields.get("size", "0")
    if state == "ready" and not parts:
        return BundleOutput("failed", detail="the sandbox's bundle listing is incomplete")
    return BundleOutput(
        state, int(size) if size.isdigit() else 0, tuple(parts), "\n".join(rest)[-400:]
    )


def check_script(head: str) -> str:
    """Print ``state current`` when the sandbox's history contains ``head`` and ``HEAD``
    continues it, else ``state missing`` (nothing to restore from: ``state empty``)."""
    return "\n".join(
        [
            REQUIRE_GIT,
            "[ -d .git ] || { echo 'state empty'; exit 0; }",
            f"{git('rev-parse', '-q', '--verify', 'HEAD')} >/dev/null || "
            "{ echo 'state empty'; exit 0; }",
            f"if {git('merge-base', '--is-ancestor', head, 'HEAD')} 2>/dev/null; then",
            "  echo 'state current'",
            "else echo 'state missing'; fi",
        ]
    )


def part_path(seq: int, index: int) -> str:
    """The workspace path of part ``index`` of the bundle of snapshot ``seq``."""
    return f"/{RESTORE_DIR}/r{seq:08d}-{index:05d}"


def restore_script(seqs: Sequence[int], head: str) -> str:
    """Apply the bundles of ``seqs`` (in order; their parts already written with
    :func:`part_path`), make ``HEAD`` and the files equal to ``head``, and print ``deps
    1`` when :data:`LOCK_FILES` changed (else ``deps 0``).

    A workspace without a history (fresh from the template) is made exactly the snapshot
    (untracked, not ignored files removed); a workspace with another history keeps it under
    :data:`REPLACED_REF` and keeps its untracked files.
    """
    locks = " ".join(LOCK_FILES)
    lines = [
        *_write_prelude(),
        f"before=$(cat {locks} 2>/dev/null | cksum)",
        f"old=$({git('rev-parse', '-q', '--verify', 'HEAD')} || true)",
        f'if [ -n "$old" ]; then {git("update-ref", REPLACED_REF)} "$old"; fi',
    ]
    for seq in seqs:
        bundle = f"{RESTORE_DIR}/b{seq:08d}"
        lines += [
            f"cat {RESTORE_DIR}/r{seq:08d}-* > {bundle}",
            f"rm -f {RESTORE_DIR}/r{seq:08d}-*",
            f"{git('bundle', 'unbundle', bundle)} >/dev/null",
            f"rm -f {bundle}",
        ]
    lines += [
        git("update-ref", SNAPSHOT_REF, head),
        git("update-ref", "refs/heads/main", head),
        git("symbolic-ref", "HEAD", "refs/heads/main"),
        git("read-tree", "-u", "--reset", "HEAD"),
        f'if [ -z "$old" ]; then {git("clean", "-fdq")}; fi',
        f"touch {STAMP_FILE}",
        f"rm -rf {RESTORE_DIR}",
        f"after=$(cat {locks} 2>/dev/null | cksum)",
        'if [ "$before" = "$after" ]; then echo "deps 0"; else echo "deps 1"; fi',
        f"rm -f {PID_FILE}",
    ]
    return "\n".join(lines)
