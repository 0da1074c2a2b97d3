"""The system prompt and the wrapping of each user request (upstream §5.3, our words)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from amicable_templates import TemplateError, get_template

from amicable_agent.errors import RuntimeClientError

if TYPE_CHECKING:
    from amicable_protocol.messages import SelectedElement, ThinkingLevel, UiContext, UserData

    from .api import RuntimeClient

SYSTEM_PROMPT = """\
You are Amicable, an AI engineer who builds and changes web applications inside an isolated \
sandbox workspace. The person you work with watches a live preview of the app update while you \
work, so keep the app running: every change you save is hot-reloaded at once.

Workspace: paths are workspace paths starting at the project root, e.g. /src/App.tsx or \
/package.json. Use the tools ls, read_file, write_file, edit_file, glob, grep and execute; \
execute runs a shell command in the project root. The files /AGENTS.md and \
/.deepagents/AGENTS.md are the project's memory: follow their instructions, and note durable \
decisions there when they matter for later work.

How to work:
1. Plan briefly (a few bullets) what you will change.
2. Inspect before editing: read the files you will touch.
3. Make the smallest edits that do the job; prefer edit_file on existing files over rewriting \
them. Avoid new dependencies; if one is needed, add it to the right manifest and say why.
4. Verify: run the project's checks (for example `npm run -s build`) when you changed code. \
Automatic QA also runs after your turn and reports failures back to you.
5. Finish with a short summary of what changed and anything the person should try.

The app is shown inside an iframe: keep layouts responsive. Follow the conventions of the \
stack you find (React Router `Routes`, not `Switch`). Never print secrets.

You may add small fenced ```ui blocks with JSON the editor renders, for example
```ui
{"type": "steps", "items": ["Read App.tsx", "Add the form", "Build passes"]}
```
or {"type": "cards", "items": [{"title": "...", "body": "..."}]}. Keep them short; the \
rest of your answer is Markdown."""

DB_PROMPT = """\
This app has its own database (PostgreSQL behind a GraphQL API). The page loads \
/amicable-db.js (workspace file /public/amicable-db.js, written for you: read it, do not \
edit it and never copy its key into other files), which sets window.__AMICABLE_DB__ to \
{appId, appKey, graphqlUrl, previewOrigin}, or to null when the database is unavailable. The \
app talks to its data by POSTing {query, variables} as JSON to graphqlUrl with the header \
x-amicable-app-key: appKey; handle the null case and GraphQL `errors` gracefully.
Tables: create them with the db_create_table tool (each gets an automatic bigint primary key \
`id`), never with SQL files, migrations or a local database server; there is no other way to \
run SQL. Query them by their plain names (todos, todos_by_pk, insert_todos, insert_todos_one, \
update_todos, delete_todos …); the database proxy maps these to the app's schema. \
db_truncate_table empties a table and db_drop_table removes one: both ask the person for \
approval, so use them only when the request needs it."""

#: Files read as workspace instructions, in order.
INSTRUCTION_FILES = ("/AGENTS.md", "/.deepagents/AGENTS.md", "/memories/agent.local.md")
INSTRUCTIONS_MAX_CHARS = 24_000
IMPORT_MAX_DEPTH = 5
_IMPORT_RE = re.compile(r"(?m)^\s*@(/?[\w./\-]+)\s*$")


def system_prompt(*, with_db: bool = False) -> str:
    """The system prompt; ``with_db`` adds how the app reaches its database and the DB tools
    (only for sessions that have them)."""
    return f"{SYSTEM_PROMPT}\n\n{DB_PROMPT}" if with_db else SYSTEM_PROMPT


def stack_prompt(template_id: str, instructions: str) -> str:
    """What the registry says about the project's stack (``amicable_templates``): its name,
    how the preview reloads, the QA commands and the files not to delete; plus the
    template's ``AGENTS.md`` when the workspace has no ``/AGENTS.md`` of its own (the model
    deleted it), so the stack's conventions are never lost. Empty for an unknown id."""
    try:
        template = get_template(template_id)
    except TemplateError:
        return ""
    reload = (
        "saved changes hot-reload in the preview (HMR)"
        if template.reload == "hmr"
        else "the server restarts on every saved change and the preview page reloads itself"
    )
    lines = [
        f"Stack: {template.name} (template `{template.id}`): {template.description}",
        f"The dev server already runs on port {template.dev_port}; {reload}. "
        "Never start another one.",
        "QA runs: " + "; ".join(f"`{cmd}`" for _, cmd in template.qa) + ".",
        "Never delete: " + ", ".join(f"/{p}" for p in template.protected) + ".",
    ]
    if "# /AGENTS.md" not in instructions:
        lines.append(f"The stack's conventions:\n{template.agents_md().strip()}")
    return "\n".join(lines)


async def load_workspace_instructions(runtime: RuntimeClient) -> str:
    """The layered instruction files with ``@path`` imports expanded (bounded in depth/size)."""
    seen: set[str] = set()

    async def load(path: str, depth: int) -> str:
        if path in seen or depth > IMPORT_MAX_DEPTH:
            return ""
        seen.add(path)
        try:
            content, _sha = await runtime.read_file(path)
        except RuntimeClientError:
            return ""
        text = content.decode("utf-8", errors="replace")
        parts: list[str] = []
        last = 0
        for match in _IMPORT_RE.finditer(text):
            parts.append(text[last : match.start()])
            target = match.group(1)
            target = target if target.startswith("/") else "/" + target
            parts.append(await load(target, depth + 1))
            last = match.end()
        parts.append(text[last:])
        return "".join(parts)

    sections = []
    for path in INSTRUCTION_FILES:
        text = (await load(path, 0)).strip()
        if text:
            sections.append(f"# {path}\n{text}")
    return "\n\n".join(sections)[:INSTRUCTIONS_MAX_CHARS]


def _ui_context_lines(ctx: UiContext) -> list[str]:
    lines = []
    for name in (
        "active_view",
        "preview_path",
        "device_type",
        "viewport_width",
        "viewport_height",
    ):
        value = getattr(ctx, name)
        if value is not None:
            lines.append(f"- {name}: {value}")
    if ctx.selected_element is not None:
        lines += _selection_lines(ctx.selected_element)
    return lines


def _selection_lines(selected: SelectedElement) -> list[str]:
    """The element the user picked in the preview: the request is about that one."""
    # json.dumps: the page's text and selector are the user's app content, quoted as data.
    lines = [
        "- selected_element: the user picked this element in the preview; their request is "
        "about it, so change this element (find it by its source location or selector)",
        f"  - tag: {json.dumps(selected.tag)}",
        f"  - selector: {json.dumps(selected.selector)}",
    ]
    if selected.text:
        lines.append(f"  - text: {json.dumps(selected.text, ensure_ascii=False)}")
    if selected.source:
        lines.append(f"  - source: {json.dumps(selected.source)} (file:line in the project)")
    return lines


def wrap_user_text(
    text: str,
    *,
    thinking_level: ThinkingLevel = "none",
    ui_context: UiContext | None = None,
    instructions: str = "",
    summary: str = "",
) -> str:
    """The text sent to the model for one user request (context first, request last)."""
    parts = []
    if thinking_level != "none":
        parts.append(f"Thinking level: {thinking_level}")
    if summary:
        parts.append(f"Compacted conversation context:\n{summary}")
    if instructions:
        parts.append(f"Workspace instruction context:\n{instructions}")
    if ui_context is not None:
        lines = _ui_context_lines(ui_context)
        if lines:
            parts.append("Editor UI context for this request:\n" + "\n".join(lines))
    parts.append(f"User request:\n{text}" if parts else text)
    return "\n\n".join(parts)


def user_content(data: UserData, wrapped: str) -> str | list[dict[str, Any]]:
    """Anthropic ``content`` for a user request: text, plus image blocks when attached."""
    images = [b for b in (data.content_blocks or ()) if b.type == "image"]
    if not images:
        return wrapped
    blocks: list[dict[str, Any]] = [{"type": "text", "text": wrapped}]
    for image in images:
        blocks.append(
            {
                "type": "image",
                "source": {"type": "base64", "media_type": image.mime_type, "data": image.base64},
            }
        )
    return blocks


def request_text(data: UserData) -> str:
    """The plain text of a user request (``text`` or its text blocks)."""
    if data.text:
        return data.text
    return "\n".join(b.text for b in (data.content_blocks or ()) if b.type == "text")
