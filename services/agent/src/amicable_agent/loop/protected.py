"""The template's protected files (``[files] protected`` in ``template.toml``), enforced.

The model may rewrite a protected file but not delete it: the ``execute`` tool refuses the
obvious forms (``rm``/``unlink``/``git rm``/``mv`` naming the file or a folder holding it)
and, since a shell can delete in ways no pattern catches, every command is followed by
:func:`restore_script`, which puts back any protected file that disappeared from the last
checkpoint (``git show HEAD:<path>``). The editor's file API refuses to delete or rename one
(:func:`protected_problem`).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from typing import Any

from amicable_templates import TemplateError, get_template

from .safety import normalise_workspace_path

#: The line :func:`restore_script` prints for each file it put back.
RESTORED_PREFIX = "amicable-restored "
#: The environment :func:`restore_script` runs in (no user git config or prompts).
RESTORE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}
_SEGMENT_SPLIT = re.compile(r"&&|\|\||[;&|\n()`]")
_DELETERS = frozenset({"rm", "unlink", "rmdir", "shred"})


def protected_paths(template_id: str) -> tuple[str, ...]:
    """The workspace paths (``/package.json``) template ``template_id`` protects; none for an
    unknown template."""
    try:
        template = get_template(template_id)
    except TemplateError:
        return ()
    return tuple(normalise_workspace_path(p) for p in template.protected)


def protected_under(path: str, protected: tuple[str, ...]) -> tuple[str, ...]:
    """The protected files that removing workspace ``path`` (a file, or a folder with
    everything in it) would take away."""
    normal = normalise_workspace_path(path)
    prefix = normal.rstrip("/") + "/"
    return tuple(p for p in protected if p == normal or p.startswith(prefix))


def protected_problem(path: str, protected: tuple[str, ...]) -> str | None:
    """Why removing workspace ``path`` would lose a protected file; None when it would not."""
    hits = protected_under(path, protected)
    if not hits:
        return None
    normal = normalise_workspace_path(path)
    what = hits[0] if hits[0] == normal else f"{normal} (it holds {hits[0]})"
    return f"{what} is a protected file of this project's template and cannot be deleted or moved"


def _operands(words: list[str]) -> list[str]:
    """The path operands of a deleting command's words (``words[0]`` is the command)."""
    if words[:2] == ["git", "rm"]:
        words = words[1:]
    if words[0] == "mv":
        plain = [w for w in words[1:] if not w.startswith("-")]
        return plain[:-1]  # every source moves away; the target stays
    if words[0] in _DELETERS:
        return [w for w in words[1:] if not w.startswith("-")]
    return []


def command_problem(command: str, protected: tuple[str, ...]) -> str | None:
    """Why ``command`` is refused: an ``rm``/``unlink``/``git rm``/``mv`` of a protected file
    (or of a folder holding one), written out plainly; None otherwise. Relative paths are
    taken from the project root (where ``execute`` runs); after a ``cd``, globs or variables
    are not followed (the check after the command catches those)."""
    if not protected:
        return None
    for segment in _SEGMENT_SPLIT.split(command):
        try:
            words = shlex.split(segment)
        except ValueError:
            continue
        while words and (words[0] == "sudo" or "=" in words[0]):
            words = words[1:]  # sudo and VAR=value prefixes
        if not words:
            continue
        if words[0] in ("cd", "pushd"):
            return None  # relative paths no longer start at the root
        for operand in _operands(words):
            if any(c in operand for c in "*?[$~"):
                continue
            problem = protected_problem(operand, protected)
            if problem:
                return problem
    return None


def refused_call(name: str, args: dict[str, Any], protected: tuple[str, ...]) -> bool:
    """Whether tool call ``name(args)`` is refused outright by :func:`command_problem` (such a
    call is not offered for approval first)."""
    command = args.get("command")
    return (
        name == "execute" and isinstance(command, str) and bool(command_problem(command, protected))
    )


def restore_script(protected: tuple[str, ...]) -> str:
    """A shell script (run in the project root) that restores each protected file missing
    from the working tree but present in the last checkpoint, printing
    ``amicable-restored <path>`` for each."""
    relative = " ".join(shlex.quote(p.lstrip("/")) for p in protected)
    return (
        f"for p in {relative}; do "
        'if [ ! -e "$p" ] && [ ! -L "$p" ] && git cat-file -e "HEAD:$p" 2>/dev/null; then '
        'mkdir -p "$(dirname "$p")" && git show "HEAD:$p" > "$p" && '
        f'echo "{RESTORED_PREFIX}/$p"; fi; done; true'
    )


def restored_paths(output: str) -> list[str]:
    """The paths :func:`restore_script`'s ``output`` says it restored."""
    return [
        posixpath.normpath(line[len(RESTORED_PREFIX) :].strip())
        for line in output.splitlines()
        if line.startswith(RESTORED_PREFIX)
    ]
