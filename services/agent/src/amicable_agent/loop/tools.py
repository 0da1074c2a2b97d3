"""The tools the model sees and how each maps to the sandbox runtime API.

Names and parameters match the workspace ``AGENTS.md`` files and existing prompts:
``ls``, ``read_file``, ``write_file``, ``edit_file``, ``glob``, ``grep``, ``execute``.
Sessions whose app has a database also get the DB tools of :mod:`amicable_agent.db.tools`.
Failures become error tool results (``is_error``) — a tool never crashes the turn.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs
from amicable_protocol.runtime import ExecExit

from amicable_agent.db.tools import DB_TOOL_DEFINITIONS, DB_TOOL_NAMES
from amicable_agent.db.tools import status_line as db_status_line
from amicable_agent.errors import AgentError, RuntimeClientError

from .compaction import truncate_middle
from .model_api import UNPARSED_KEY
from .protected import RESTORE_ENV, command_problem, restore_script, restored_paths
from .safety import POLICY_DENIED_COMMAND, is_catastrophic, normalise_workspace_path, write_denied

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from amicable_protocol.messages import PermissionMode

    from amicable_agent.db.tools import AppDbTools

    from .api import RuntimeClient

log = logging.getLogger(__name__)

READ_DEFAULT_LIMIT = 2000
READ_LINE_MAX = 2000


def _schema(description: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"description": description,
            "input_schema": {"type": "object", "properties": props, "required": required}}  # fmt: skip


_S = {"type": "string"}
TOOL_DEFINITIONS: dict[str, dict[str, Any]] = {
    "ls": _schema("List the entries of a workspace directory (directories end with /).",
                  {"path": {**_S, "description": "Directory, e.g. / or /src"}}, ["path"]),
    "read_file": _schema(
        "Read a text file; lines are numbered (cat -n style). Use offset/limit for big files.",
        {"file_path": {**_S, "description": "File path, e.g. /src/App.tsx"},
         "offset": {"type": "integer", "description": "First line to read (0-based)", "default": 0},
         "limit": {"type": "integer", "description": "Number of lines", "default": READ_DEFAULT_LIMIT}},
        ["file_path"]),
    "write_file": _schema("Create or overwrite a file with the given content.",
                          {"file_path": _S, "content": _S}, ["file_path", "content"]),
    "edit_file": _schema(
        "Replace an exact string in a file. old_string must occur exactly once unless "
        "replace_all is true; read the file first and include enough context.",
        {"file_path": _S, "old_string": _S, "new_string": _S,
         "replace_all": {"type": "boolean", "default": False}},
        ["file_path", "old_string", "new_string"]),
    "glob": _schema("Find files by glob pattern (e.g. **/*.tsx) under a path.",
                    {"pattern": _S, "path": {**_S, "default": "/"}}, ["pattern"]),
    "grep": _schema("Search file contents for a regular expression; optional glob filter.",
                    {"pattern": _S, "path": {**_S, "default": "/"}, "glob": _S}, ["pattern"]),
    "execute": _schema(
        "Run a shell command in the project root (e.g. npm run -s build). Output and exit "
        "code are returned; long-running servers must not be started here.",
        {"command": _S}, ["command"]),
}  # fmt: skip


def tool_definitions(*, with_db: bool = False) -> list[dict[str, Any]]:
    """The ``tools`` array of a Messages API request (plus the DB tools when ``with_db``:
    the session's app has a database)."""
    specs = {**TOOL_DEFINITIONS, **DB_TOOL_DEFINITIONS} if with_db else TOOL_DEFINITIONS
    return [{"name": name, **spec} for name, spec in specs.items()]


def call_problem(
    name: str,
    args: dict[str, Any],
    *,
    with_db: bool = False,
    extra: Mapping[str, dict[str, Any]] | None = None,
) -> str | None:
    """Why a tool call cannot run as the model wrote it (no tool, an unknown tool, arguments
    that are not a JSON object, required arguments missing), as a tool error the model can
    act on; None when it can run. Models behind some OpenAI-compatible servers get these
    wrong more often than Claude does."""
    specs = {**TOOL_DEFINITIONS, **(DB_TOOL_DEFINITIONS if with_db else {}), **(extra or {})}
    names = ", ".join(specs)
    if not name:
        return f"Error: this tool call names no tool. The tools are: {names}."
    spec = specs.get(name)
    if spec is None:
        return f"Error: unknown tool {name!r}. The tools are: {names}."
    if UNPARSED_KEY in args:
        return (
            f"Error: the arguments of this {name} call are not a valid JSON object (they begin "
            f"{str(args[UNPARSED_KEY])[:80]!r}). Call {name} again with a JSON object."
        )
    required = spec.get("input_schema", {}).get("required", [])
    missing = [p for p in required if p not in args]
    if missing:
        given = ", ".join(sorted(args)) or "none"
        return (
            f"Error: {name} needs the argument(s) {', '.join(missing)} (this call had: "
            f"{given}). Call it again with them."
        )
    return None


@attrs.frozen
class ToolOutcome:
    """What a tool call produced: the text for the model, and whether files changed.

    ``blocks`` are content blocks after the text (a screenshot's ``image``); the result then
    goes to the model as ``[text, *blocks]``.
    """

    content: str
    is_error: bool = False
    changed_path: str | None = None
    blocks: tuple[dict[str, Any], ...] = ()

    def result_content(self) -> str | list[dict[str, Any]]:
        """The ``content`` of the ``tool_result`` block."""
        if not self.blocks:
            return self.content
        return [{"type": "text", "text": self.content}, *self.blocks]


class ToolInputError(AgentError):
    """A tool was called with missing or mistyped arguments."""


def _str(args: dict[str, Any], name: str, default: str | None = None) -> str:
    value = args.get(name, default)
    if not isinstance(value, str):
        raise ToolInputError(f"parameter {name!r} must be a string")
    return value


def _int(args: dict[str, Any], name: str, default: int) -> int:
    value = args.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolInputError(f"parameter {name!r} must be an integer")
    return int(value)


def status_line(name: str, args: dict[str, Any]) -> str | None:
    """The ``update_file`` line announcing a tool call, if it gets one."""
    if name == "write_file":
        return f"Writing {args.get('file_path', '')}"
    if name == "edit_file":
        return f"Editing {args.get('file_path', '')}"
    if name == "execute":
        return f"Running {str(args.get('command', ''))[:120]}"
    return db_status_line(name, args)


def number_lines(text: str, offset: int = 0, limit: int = READ_DEFAULT_LIMIT) -> str:
    """``cat -n``-style numbered lines ``offset`` .. ``offset+limit`` (1-based numbers)."""
    lines = text.splitlines()
    if not lines:
        return "(empty file)"
    if offset >= len(lines):
        return f"Error: offset {offset} is past the end of the file ({len(lines)} lines)"
    chosen = lines[max(0, offset) : max(0, offset) + max(1, limit)]
    out = []
    for number, line in enumerate(chosen, start=max(0, offset) + 1):
        if len(line) > READ_LINE_MAX:
            line = line[:READ_LINE_MAX] + "… [line truncated]"
        out.append(f"{number:6d}\t{line}")
    rest = len(lines) - (max(0, offset) + len(chosen))
    if rest > 0:
        out.append(f"… {rest} more lines (use offset={max(0, offset) + len(chosen)})")
    return "\n".join(out)


def _runtime_error_text(name: str, args: dict[str, Any], exc: RuntimeClientError) -> str:
    path = args.get("file_path") or args.get("path") or ""
    if exc.code == "not_found":
        return f"Error: {path} not found"
    if exc.code == "conflict" and name == "edit_file":
        return (
            f"Error: edit of {path} failed: {exc.detail or 'old_string matched 0 or several times'}"
            ". Read the file again and pass an old_string that occurs exactly once "
            "(or set replace_all)."
        )
    if exc.code == "unreachable":
        return "Error: the sandbox is not reachable right now"
    return f"Error: {exc.code}: {exc.detail}" if exc.detail else f"Error: {exc.code}"


async def run_tool(
    runtime: RuntimeClient,
    name: str,
    args: dict[str, Any],
    *,
    mode: PermissionMode,
    output_max_chars: int = 30_000,
    app_db: AppDbTools | None = None,
    redact: Callable[[str], str] | None = None,
    protected: tuple[str, ...] = (),
) -> ToolOutcome:
    """Execute one tool call against the runtime (DB tools against ``app_db``).

    ``protected``: the template's protected files (:mod:`.protected`); ``execute`` refuses a
    plain delete of one and restores any that a command deleted anyway.

    ``redact`` is applied to the result before it is cut to ``output_max_chars`` (so a
    secret is never half cut off and half kept).

    Cancellation: propagates; a running ``execute`` leaves its ``open_exec_stream`` block
    early, which kills the command's process group in the sandbox.
    """
    clean = redact or (lambda text: text)
    if name in DB_TOOL_NAMES and app_db is not None:
        result = await app_db.run(name, args)
        content = truncate_middle(clean(result.content), output_max_chars)
        return ToolOutcome(content, result.is_error)
    if name not in TOOL_DEFINITIONS:
        return ToolOutcome(f"Error: unknown tool {name!r}", is_error=True)
    try:
        outcome = await _dispatch(runtime, name, args, mode, output_max_chars, protected)
    except ToolInputError as exc:
        return ToolOutcome(f"Error: invalid input for {name}: {exc}", is_error=True)
    except RuntimeClientError as exc:
        return ToolOutcome(clean(_runtime_error_text(name, args, exc)), is_error=True)
    except Exception as exc:  # a tool never crashes the turn; the model hears about it
        log.exception("tool %s failed unexpectedly", name)
        return ToolOutcome(f"Error: {name} failed unexpectedly ({type(exc).__name__})", True)
    content = truncate_middle(clean(outcome.content), output_max_chars)
    return attrs.evolve(outcome, content=content)


async def _dispatch(
    runtime: RuntimeClient,
    name: str,
    args: dict[str, Any],
    mode: PermissionMode,
    cap: int,
    protected: tuple[str, ...],
) -> ToolOutcome:
    if name == "ls":
        path = normalise_workspace_path(_str(args, "path", "/"))
        tree = await runtime.tree(path, depth=1, include_hidden=True)
        names = sorted(e.path + ("/" if e.kind == "dir" else "") for e in tree.entries)
        return ToolOutcome("\n".join(names) if names else f"(empty directory {path})")
    if name == "read_file":
        path = normalise_workspace_path(_str(args, "file_path"))
        content, _sha = await runtime.read_file(path)
        if b"\x00" in content[:8192]:
            return ToolOutcome(f"Error: {path} is a binary file ({len(content)} bytes)", True)
        text = content.decode("utf-8", errors="replace")
        offset = _int(args, "offset", 0)
        limit = _int(args, "limit", READ_DEFAULT_LIMIT)
        return ToolOutcome(number_lines(text, offset, limit))
    if name in ("write_file", "edit_file"):
        path = normalise_workspace_path(_str(args, "file_path"))
        denied = write_denied(path, mode)
        if denied:
            return ToolOutcome(f"{denied} ({path})", is_error=True)
        if name == "write_file":
            written = await runtime.write_file(path, _str(args, "content").encode("utf-8"))
            return ToolOutcome(f"Wrote {written.size} bytes to {path}", changed_path=path)
        replace_all = bool(args.get("replace_all", False))
        edited = await runtime.edit(
            path, _str(args, "old_string"), _str(args, "new_string"), replace_all=replace_all
        )
        return ToolOutcome(
            f"Edited {path}: {edited.replacements} replacement(s)", changed_path=path
        )
    if name == "glob":
        found = await runtime.glob(_str(args, "pattern"), normalise_workspace_path(
            _str(args, "path", "/") or "/"))  # fmt: skip
        text = "\n".join(found.paths) if found.paths else "No files matched"
        return ToolOutcome(text + ("\n… (truncated)" if found.truncated else ""))
    if name == "grep":
        glob = args.get("glob")
        matches = await runtime.grep(
            _str(args, "pattern"),
            normalise_workspace_path(_str(args, "path", "/") or "/"),
            glob=glob if isinstance(glob, str) and glob else None,
        )
        lines = [f"{m.path}:{m.line}: {m.text}" for m in matches.matches]
        text = "\n".join(lines) if lines else "No matches"
        return ToolOutcome(text + ("\n… (truncated)" if matches.truncated else ""))
    command = _str(args, "command")
    if is_catastrophic(command):
        return ToolOutcome(f"{POLICY_DENIED_COMMAND} (exit 126)", is_error=True)
    problem = command_problem(command, protected)
    if problem:
        return ToolOutcome(f"Policy denied: {problem}. Edit it instead (exit 126)", True)
    outcome = await _execute(runtime, command, cap)
    return await _restore_protected(runtime, outcome, protected) if protected else outcome


async def _restore_protected(
    runtime: RuntimeClient, outcome: ToolOutcome, protected: tuple[str, ...]
) -> ToolOutcome:
    """``outcome`` with a note when the command deleted protected files (put back from
    the last checkpoint here). A failed check leaves ``outcome`` as it is."""
    try:
        result = await runtime.exec(restore_script(protected), env=RESTORE_ENV, timeout_s=30)
    except Exception:  # the command's own result stands; a check must not turn it into a failure
        log.warning("could not check the protected files after a command", exc_info=True)
        return outcome
    restored = restored_paths(result.stdout)
    if not restored:
        return outcome
    note = (
        f"[Policy: this command deleted protected file(s) {', '.join(restored)}; they were "
        "restored from the last checkpoint. Do not delete or move them; edit them instead.]"
    )
    return attrs.evolve(outcome, content=f"{outcome.content}\n{note}", is_error=True)


async def _execute(runtime: RuntimeClient, command: str, cap: int) -> ToolOutcome:
    chunks: list[str] = []
    size = 0
    exit_item: ExecExit | None = None
    async with runtime.open_exec_stream(command) as items:
        async for item in items:
            if isinstance(item, ExecExit):
                exit_item = item
            elif size < cap * 4:  # keep memory bounded; head/tail cut happens later
                chunks.append(item.data)
                size += len(item.data)
    output = "".join(chunks)
    if exit_item is None:
        return ToolOutcome(output + "\n[command ended without an exit status]", is_error=True)
    if exit_item.timed_out:
        return ToolOutcome(f"{output}\n[Command timed out (exit {exit_item.exit_code})]", True)
    suffix = f"[Command exited with code {exit_item.exit_code}]"
    return ToolOutcome(f"{output}\n{suffix}" if output else suffix, exit_item.exit_code != 0)
