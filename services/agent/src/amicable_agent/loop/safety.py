"""Command and write policy (upstream §5.6): what is always blocked, what needs approval.

Pure functions; :mod:`amicable_agent.loop.engine` applies them before a tool reaches the runtime.
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING, Any

from amicable_agent.db.tools import DESTRUCTIVE_DB_TOOLS
from amicable_agent.db.tools import describe_action as describe_db_action

if TYPE_CHECKING:
    from amicable_protocol.messages import PermissionMode

#: Tool names whose calls write to the workspace.
WRITE_TOOLS = frozenset({"write_file", "edit_file"})
#: Workspace prefixes the agent may not write under in permission mode ``default``.
PROTECTED_PREFIXES = ("/node_modules/", "/.git/")

POLICY_DENIED_COMMAND = "Policy denied: command contains a forbidden pattern"

# Token sequences that are always refused, matched on the lower-cased command with runs of
# whitespace collapsed: preceded by start, a shell separator or whitespace; followed by
# whitespace or the end.
_CATASTROPHIC = (
    "rm -rf /",
    "rm -rf /*",
    "rm -fr /",
    "rm -fr /*",
    "rm -rf ~",
    "rm -rf ~/",
    "--no-preserve-root",
    "shutdown",
    "reboot",
    "poweroff",
    "halt",
    "mkfs",
)
_CATASTROPHIC_RE = re.compile(
    r"(?:^|[;&|()\s])(?:"
    + "|".join(re.escape(p) for p in _CATASTROPHIC)
    + r")(?=\s|$|[;&|)]|\.(?=\w))"
)
_FORK_BOMB = ":(){:|:&};:"

_DESTRUCTIVE_RE = (
    re.compile(r"(?:^|[;&|()`\s])(?:sudo\s+)?(?:rm|unlink|rmdir|shred)\s"),
    re.compile(r"(?:^|[;&|()`\s])git\s[^;&|]*?\bclean\b"),
    re.compile(r"(?:^|[;&|()`\s])find\s.*\s-delete\b"),
)


def _normalise(command: str) -> str:
    return " ".join(command.lower().split())


def is_catastrophic(command: str) -> bool:
    """True for commands that are refused in every permission mode (``rm -rf /``, …)."""
    normal = _normalise(command)
    if _FORK_BOMB in "".join(normal.split()):
        return True
    return _CATASTROPHIC_RE.search(normal) is not None


def is_destructive(command: str) -> bool:
    """True for commands that delete files (need approval unless the mode is ``bypass``)."""
    normal = _normalise(command)
    return any(p.search(normal) for p in _DESTRUCTIVE_RE)


def normalise_workspace_path(path: str) -> str:
    """``path`` as an absolute, ``..``-free workspace path (``src/a.ts`` -> ``/src/a.ts``)."""
    cleaned = posixpath.normpath("/" + path.strip().lstrip("/"))
    return "/" if cleaned in ("/", "//") else cleaned


def write_denied(path: str, mode: PermissionMode) -> str | None:
    """The refusal message for writing ``path`` in ``mode``, or None when allowed."""
    if mode != "default":
        return None
    normal = normalise_workspace_path(path) + "/"
    for prefix in PROTECTED_PREFIXES:
        if normal.startswith(prefix):
            return f"Policy denied: writes not allowed for {prefix}"
    return None


def needs_approval(
    name: str,
    args: dict[str, Any],
    mode: PermissionMode,
    interrupt_on: frozenset[str],
    *,
    with_db: bool = True,
) -> bool:
    """Whether a tool call must pause the turn for a ``hitl_request``.

    ``with_db``: the session has the DB tools; without them a DB tool call only gets an
    "unknown tool" result, so it is not worth an approval.
    """
    if mode == "bypass":
        return False
    if name in interrupt_on or (with_db and name in DESTRUCTIVE_DB_TOOLS):
        return True
    if name == "execute":
        command = args.get("command")
        # Catastrophic commands are refused outright by the tool; never offered for approval.
        return isinstance(command, str) and is_destructive(command) and not is_catastrophic(command)
    return False


def describe_action(name: str, args: dict[str, Any]) -> str:
    """The one-line description shown in the approval panel."""
    if name == "execute":
        command = str(args.get("command", ""))
        if is_destructive(command):
            return f"Destructive command needs approval: {command[:300]}"
        return f"Run command: {command[:300]}"
    if name in WRITE_TOOLS:
        return f"{name} {args.get('file_path', '')}"
    if name in DESTRUCTIVE_DB_TOOLS:
        return describe_db_action(name, args)
    return f"Tool call `{name}` needs approval"
