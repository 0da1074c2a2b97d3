"""The shell scripts behind checkpoints, and parsing what they print (pure: no I/O).

:mod:`.checkpoints` runs these through the runtime's exec. Commands are built from argv lists
with :func:`shlex.join`; identity and safety settings are passed per command (``-c
user.name=…``, ``-c core.hooksPath=/dev/null``), global and system git config are ignored
and prompts are off, so nothing depends on how the sandbox is configured.

What a checkpoint leaves out. ``.git/info/exclude`` gets :data:`EXCLUDES` (platform state,
dependencies, build output, caches and logs), so the user's own ``.gitignore`` never changes.
Files bigger than the policy's ``max_file_bytes`` are left out of ``git add`` with exclude
pathspecs and listed in the commit message (:data:`SKIPPED_PREFIX` lines), which is where
:func:`parse_log` finds them again.

Interrupted writes. Every script that writes records its shell's pid in
:data:`PID_FILE` and removes the file when it is done. A script that finds the file left
behind knows an earlier write was cut (cancelled, timed out, killed with its process group):
it waits for that process to be gone, then removes what git leaves when it is killed — partial
packs (``tmp_pack_*``; hashing a 1.5 GB file leaves ~1 GB of it), loose-object temp files
(``tmp_obj_*``) and lock files — before doing anything else (:data:`RECOVER`).
"""

from __future__ import annotations

import json
import re
import shlex
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Ignored by every checkpoint, whatever the project's ``.gitignore`` says: platform state,
#: dependencies, then build output, tool caches and logs (rebuilt from the sources, often big
#: and binary). Build directories are anchored at the project root, so a ``src/build/`` with
#: sources is still kept.
EXCLUDES = (
    ".amicable/",
    "node_modules/",
    "/public/amicable-db.js",
    "/dist/",
    "/build/",
    "/.next/",
    "/coverage/",
    ".vite/",
    ".cache/",
    ".turbo/",
    "*.log",
    "*.tsbuildinfo",
)
#: Marks a write script in progress (its shell's pid); left behind = that write was cut.
PID_FILE = ".git/amicable.pid"
#: Touched by every commit: a big file older than it was noted by an earlier checkpoint.
STAMP_FILE = ".git/amicable-stamp"
#: Commit-message lines naming a file left out of the checkpoint (JSON ``{path, bytes}``).
SKIPPED_PREFIX = "Amicable-Skipped: "
#: The most skipped files a checkpoint lists (the rest are left out all the same).
MAX_SKIPPED_LISTED = 50
#: Exit code of a script when the checkpoint named does not exist.
NOT_FOUND_EXIT = 44
#: Exit code of the staging script when the history is over its cap even after ``git gc``.
HISTORY_FULL_EXIT = 45
GIT_MISSING_EXIT = 127
#: ``git gc`` runs at most this often when the history is over its cap (it is not cheap).
GC_INTERVAL_MIN = 60
REQUIRE_GIT = 'command -v git >/dev/null 2>&1 || { echo "git is not installed" >&2; exit 127; }'
_GIT_CONFIG = (
    "-c", "user.name=Amicable",
    "-c", "user.email=checkpoints@amicable.invalid",
    "-c", "core.hooksPath=/dev/null",
    "-c", "commit.gpgsign=false",
    "-c", "core.autocrlf=false",
    "-c", "core.quotepath=false",
    "-c", "safe.directory=*",
    "-c", "gc.auto=0",
)  # fmt: skip
#: The environment of every git command: no prompts, no system/global config, C messages.
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "LC_ALL": "C",
}
#: One record per commit: sha, time, subject, body, then ``--shortstat``'s line.
LOG_FORMAT = "--format=%x1e%H%x1f%ct%x1f%s%x1f%b%x1d"
_FILES_CHANGED = re.compile(r"(\d+) files? changed")
_TAB = "\t"


@attrs.frozen
class SkippedFile:
    """A file left out of a checkpoint because it is bigger than the limit.

    Attributes:
        path: its workspace path (``/assets/video.mp4``).
        bytes: its size when the checkpoint was made.
    """

    path: str
    bytes: int


@attrs.frozen
class Checkpoint:
    """One checkpoint (a commit in the sandbox's repository).

    Attributes:
        sha: the full commit id.
        title: what the turn was asked to do (the commit subject).
        created_at: unix time (seconds) of the commit.
        files_changed: how many files differ from the previous checkpoint.
        skipped: files left out because they were too big (at most
            :data:`MAX_SKIPPED_LISTED`).
    """

    sha: str
    title: str
    created_at: int
    files_changed: int
    skipped: tuple[SkippedFile, ...] = ()


@attrs.frozen
class Staged:
    """What the staging script reported.

    Attributes:
        has_head: the repository has a first commit (the baseline).
        changed: something is staged for the next commit.
        history_bytes: disk used by ``.git`` before staging.
        skipped: files left out of the index as too big that changed since the last
            checkpoint (older ones were noted before).
    """

    has_head: bool
    changed: bool
    history_bytes: int
    skipped: tuple[SkippedFile, ...] = ()


def git(*args: str) -> str:
    """One git command line with our per-command settings."""
    return shlex.join(["git", *_GIT_CONFIG, "--git-dir=.git", "--work-tree=.", *args])


#: Recovers from an interrupted write (see the module docstring). Bounded: waits at most
#: 10 s for the cut process to go.
RECOVER = "\n".join(
    [
        f"if [ -f {PID_FILE} ]; then",
        f"  pid=$(cat {PID_FILE} 2>/dev/null || true); i=0",
        '  while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do',
        "    sleep 0.1; i=$((i + 1))",
        "  done",
        "  find .git/objects -maxdepth 2 -type f -name 'tmp_*' -exec rm -f {} + 2>/dev/null || true",
        "  find .git/refs -type f -name '*.lock' -exec rm -f {} + 2>/dev/null || true",
        f"  rm -f .git/index.lock .git/HEAD.lock .git/packed-refs.lock {PID_FILE}",
        "fi",
    ]
)


def _write_prelude() -> list[str]:
    """Repository, ignores, recovery from a cut write; then mark this write as running."""
    excludes = " ".join(shlex.quote(p) for p in EXCLUDES)
    return [
        "set -e",
        REQUIRE_GIT,
        # below the dev server's priority: a checkpoint is written while the preview loads
        # (the baseline right after the start, one after every turn) on the same cores
        "renice -n 10 $$ >/dev/null 2>&1 || true",
        f"[ -d .git ] || {git('init', '-q', '-b', 'main')}",
        "mkdir -p .git/info && touch .git/info/exclude",
        f"for p in {excludes}; do",
        '  grep -qxF -- "$p" .git/info/exclude || printf "%s\\n" "$p" >> .git/info/exclude',
        "done",
        RECOVER,
        f"echo $$ > {PID_FILE}",
    ]


def _history_cap(max_history_bytes: int) -> list[str]:
    """Measure ``.git``; over the cap run ``git gc --prune=now`` (at most every
    :data:`GC_INTERVAL_MIN` minutes); still over: exit :data:`HISTORY_FULL_EXIT`."""
    measure = "kb=$(du -sk .git | cut -f1)"
    if max_history_bytes <= 0:
        return [measure, 'echo "history $((kb * 1024))"']
    cap = int(max_history_bytes)
    over = f"[ $((kb * 1024)) -gt {cap} ]"
    return [
        measure,
        f'if {over} && [ -z "$(find .git/amicable-gc -mmin -{GC_INTERVAL_MIN} 2>/dev/null)" ]; then',
        f"  {git('gc', '-q', '--prune=now')}",
        "  touch .git/amicable-gc",
        f"  {measure}",
        "fi",
        'echo "history $((kb * 1024))"',
        f"if {over}; then rm -f {PID_FILE}; exit {HISTORY_FULL_EXIT}; fi",
    ]


def _scan_big_files(max_file_bytes: int) -> list[str]:
    """Write ``.git/amicable-big`` (``<new>TAB<bytes>TAB<path>NUL`` per file git would add
    that is bigger than the limit; ``new`` is 1 when it changed since the last checkpoint,
    :data:`STAMP_FILE`) and ``.git/amicable-pathspec`` (``.`` plus an exclude per such file).
    Only changed and untracked, not ignored files are looked at; paths are prefixed with
    ``./`` so none reads as an option to ``find``."""
    lines = ["printf '.\\0' > .git/amicable-pathspec", ": > .git/amicable-big"]
    if max_file_bytes <= 0:
        return lines
    size = int(max_file_bytes)
    prefix = 'xargs -0 -r sh -c \'for f; do printf "./%s\\0" "$f"; done\' sh'
    find = f"xargs -0 -r sh -c 'find \"$@\" -prune -type f -size +{size}c -print0 2>/dev/null; true' sh"
    measure = (
        "xargs -0 -r sh -c 'for f; do n=1; "
        f'if [ -f {STAMP_FILE} ] && [ -z "$(find "$f" -prune -newer {STAMP_FILE})" ]; '
        "then n=0; fi; "
        f'printf "%s{_TAB}%s{_TAB}%s\\0" "$n" "$(wc -c < "$f" | tr -d " ")" '
        '"${f#./}"; done\' sh'
    )
    ls_files = git("ls-files", "-z", "-o", "-m", "--exclude-standard")
    exclude = (
        "xargs -0 -r sh -c 'for r; do "
        f'printf ":(exclude,literal)%s\\0" "${{r#*{_TAB}*{_TAB}}}"; done\' sh'
    )
    return [
        *lines,
        f"{{ {ls_files} | {prefix} | {find} | {measure} > .git/amicable-big; }} || true",
        f"{exclude} < .git/amicable-big >> .git/amicable-pathspec",
    ]


def stage_script(*, max_file_bytes: int, max_history_bytes: int, baseline_only: bool) -> str:
    """Stage every change (``git add -A``) except files over ``max_file_bytes``.

    Prints ``head 0|1``, ``history <bytes>``, ``staged 0|1``, a ``--`` line, then the
    skipped files (see :func:`parse_stage`). ``baseline_only``: stop after ``head 1`` when the
    repository already has a commit. Exits :data:`HISTORY_FULL_EXIT` when ``.git`` is over
    ``max_history_bytes`` even after ``git gc``.
    """
    head = git("rev-parse", "-q", "--verify", "HEAD")
    lines = [
        *_write_prelude(),
        f"if {head} >/dev/null; then echo 'head 1'; else echo 'head 0'; fi",
    ]
    if baseline_only:
        lines.append(f"if {head} >/dev/null; then rm -f {PID_FILE}; exit 0; fi")
    lines += [
        *_history_cap(max_history_bytes),
        *_scan_big_files(max_file_bytes),
        git("add", "-A", "--pathspec-from-file=.git/amicable-pathspec", "--pathspec-file-nul"),
        f"if {git('diff', '--cached', '--quiet')}; then echo 'staged 0'; else echo 'staged 1'; fi",
        "echo --",
        "cat .git/amicable-big",
        f"rm -f {PID_FILE} .git/amicable-pathspec .git/amicable-big",
    ]
    return "\n".join(lines)


#: The line between a commit's log record and what its ``after`` script printed.
AFTER_COMMIT_MARK = "@@amicable-after-commit"


def commit_script(message: str, *, allow_empty: bool, after: str | None = None) -> str:
    """Commit the index with ``message``, then print the new checkpoint's log record; then,
    when given, run ``after`` in a subshell of the same exec (its output follows
    :data:`AFTER_COMMIT_MARK`; its failure never fails the commit)."""
    args = ["commit", "-q", *(["--allow-empty"] if allow_empty else []), "-m", message]
    lines = [
        *_write_prelude(),
        git(*args),
        f"touch {STAMP_FILE}",
        git("log", "-1", LOG_FORMAT, "--shortstat", "HEAD", "--"),
        f"rm -f {PID_FILE}",
    ]
    if after is not None:
        lines += [f"echo '{AFTER_COMMIT_MARK}'", "(", after, ") || echo 'state failed'"]
    return "\n".join(lines)


def split_after_commit(stdout: str) -> tuple[str, str | None]:
    """A commit script's output: its log record, and what ``after`` printed (None: not run)."""
    log_part, mark, after = stdout.partition(f"\n{AFTER_COMMIT_MARK}\n")
    if not mark:
        return stdout, None
    return log_part + "\n", after


def restore_script(target_sha: str, message: str) -> str:
    """Make index and files equal to ``target_sha`` and record that as a commit."""
    return "\n".join(
        [
            *_write_prelude(),
            git("read-tree", "-u", "--reset", target_sha),
            git("commit", "-q", "--allow-empty", "-m", message),
            f"rm -f {PID_FILE}",
        ]
    )


def recover_script() -> str:
    """Only the recovery from a cut write (after a cancelled or timed-out checkpoint)."""
    return "\n".join(["[ -d .git ] || exit 0", RECOVER])


def history_script(limit: int) -> str:
    """``history <bytes>`` then the newest ``limit`` log records (nothing before the first)."""
    return "\n".join(
        [
            REQUIRE_GIT,
            "[ -d .git ] || { echo 'history 0'; exit 0; }",
            'echo "history $(( $(du -sk .git | cut -f1) * 1024 ))"',
            f"{git('rev-parse', '-q', '--verify', 'HEAD')} >/dev/null || exit 0",
            git("log", f"-n{max(1, limit)}", LOG_FORMAT, "--shortstat", "HEAD", "--"),
        ]
    )


#: Longest commit body kept (the requests behind a written subject).
MAX_BODY_CHARS = 4_000
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _plain_body(body: str) -> str:
    """``body`` without control characters (the log format's separators), without lines that
    would read as a skipped-file note, capped."""
    text = _BODY_CONTROL.sub(" ", body).strip()
    text = text.replace(SKIPPED_PREFIX, SKIPPED_PREFIX.rstrip(": ") + " - ")
    return text[:MAX_BODY_CHARS].rstrip()


def commit_message(
    title: str, skipped: Sequence[SkippedFile], max_file_bytes: int, *, body: str = ""
) -> str:
    """The subject ``title``, then ``body`` and, when files were left out, lines listing
    them."""
    body = _plain_body(body)
    head = f"{title}\n\n{body}" if body else title
    if not skipped:
        return head
    lines = [
        "",
        f"Left out of this checkpoint: {len(skipped)} file(s) over {max_file_bytes} bytes.",
    ]
    for item in skipped[:MAX_SKIPPED_LISTED]:
        entry = json.dumps({"path": item.path, "bytes": item.bytes}, ensure_ascii=True)
        lines.append(SKIPPED_PREFIX + entry)
    return head + "\n" + "\n".join(lines)


def _skipped_in(body: str) -> tuple[SkippedFile, ...]:
    out = []
    for line in body.splitlines():
        if not line.startswith(SKIPPED_PREFIX):
            continue
        try:
            raw = json.loads(line[len(SKIPPED_PREFIX) :])
            out.append(SkippedFile(str(raw["path"]), int(raw["bytes"])))
        except (ValueError, KeyError, TypeError):
            continue
    return tuple(out)


def parse_log(text: str) -> list[Checkpoint]:
    """Parse ``git log`` output in :data:`LOG_FORMAT` with ``--shortstat``."""
    out: list[Checkpoint] = []
    for record in text.split("\x1e")[1:]:
        head, _, rest = record.partition("\x1d")
        parts = head.split("\x1f")
        if len(parts) != 4 or not parts[1].strip().isdigit():
            continue
        match = _FILES_CHANGED.search(rest)
        out.append(
            Checkpoint(
                sha=parts[0].strip(),
                title=parts[2].strip(),
                created_at=int(parts[1]),
                files_changed=int(match.group(1)) if match else 0,
                skipped=_skipped_in(parts[3]),
            )
        )
    return out


def parse_history_bytes(text: str) -> int:
    """The ``history <bytes>`` line of a script's output (0 when missing)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "history" and value.strip().isdigit():
            return int(value)
    return 0


def parse_stage(text: str) -> Staged:
    """Parse :func:`stage_script`'s output."""
    head, _, tail = text.partition("\n--\n")
    fields = dict(line.partition(" ")[::2] for line in head.splitlines())
    skipped = []
    for record in tail.split("\0"):
        new, _, rest = record.partition(_TAB)
        size, sep, path = rest.partition(_TAB)
        if not sep or not path or new != "1":
            continue  # left out all the same, but an earlier checkpoint noted it already
        size = size.strip()
        skipped.append(SkippedFile("/" + path, int(size) if size.isdigit() else 0))
    return Staged(
        has_head=fields.get("head") == "1",
        changed=fields.get("staged") == "1",
        history_bytes=parse_history_bytes(head),
        skipped=tuple(skipped),
    )
