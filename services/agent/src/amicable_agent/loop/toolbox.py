"""Which tools a turn offers, in one place: the workspace tools, the DB tools when the app has
a database, ``capture_preview_screenshot`` when the agent has a browser, and the web tools
when enabled; and where each call goes.

The engine holds one :class:`Toolbox` (the web tools are process-wide); what depends on the
session (database, preview) is read from the host on every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amicable_agent.web import WEB_PROMPT, WebTools

from .api import app_db_of, preview_of
from .compaction import truncate_middle
from .protected import protected_paths
from .tools import ToolOutcome, call_problem, run_tool, tool_definitions
from .visual import (
    SCREENSHOT_DEFINITION,
    SCREENSHOT_PROMPT,
    SCREENSHOT_TOOL,
    run_screenshot_tool,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .api import SessionHost
    from .model_api import TokenUsage
    from .models import ModelSpec
    from .settings import LoopSettings
    from .small_tasks import SmallTasks


class Toolbox:
    """The tools of every turn of one engine.

    Args:
        settings: loop settings (web tool switches, output caps).
        web: the web tools (tests pass one with a resolver seam); default from settings.
        small: the small model's tasks (answers ``web_fetch`` prompts when configured).
    """

    def __init__(
        self,
        settings: LoopSettings,
        *,
        web: WebTools | None = None,
        small: SmallTasks | None = None,
    ) -> None:
        self.settings = settings
        self.web = web or WebTools(settings.web)
        self.small = small

    def _extra(self, host: SessionHost) -> dict[str, dict[str, Any]]:
        extra = dict(self.web.definitions)
        if preview_of(host) is not None:
            extra[SCREENSHOT_TOOL] = SCREENSHOT_DEFINITION
        return extra

    def definitions(self, host: SessionHost) -> list[dict[str, Any]]:
        """The ``tools`` array of a model request for ``host``'s turn."""
        base = tool_definitions(with_db=app_db_of(host) is not None)
        return base + [{"name": name, **spec} for name, spec in self._extra(host).items()]

    def problem(self, host: SessionHost, name: str, args: dict[str, Any]) -> str | None:
        """Why a call cannot run as the model wrote it (see :func:`.tools.call_problem`),
        knowing every tool this turn offers; None when it can run."""
        return call_problem(
            name, args, with_db=app_db_of(host) is not None, extra=self._extra(host)
        )

    def prompt(self, host: SessionHost) -> str:
        """System-prompt paragraphs for the extra tools ``host`` has ("" when none)."""
        extra = self._extra(host)
        notes = []
        if SCREENSHOT_TOOL in extra:
            notes.append(SCREENSHOT_PROMPT)
        if self.web.definitions:
            notes.append(WEB_PROMPT)
        return "\n\n".join(notes)

    async def run(
        self,
        host: SessionHost,
        name: str,
        args: dict[str, Any],
        *,
        redact: Callable[[str], str] | None = None,
        on_usage: Callable[[ModelSpec, TokenUsage], Awaitable[None]] | None = None,
    ) -> ToolOutcome:
        """Run one tool call of ``host``'s turn; never raises for a tool failure.
        ``on_usage(model, usage)`` counts a model call a tool made (a ``web_fetch`` prompt).

        Cancellation: propagates (a running command or capture is stopped).
        """
        cap = self.settings.tool_output_max_chars
        camera = preview_of(host)
        if name == SCREENSHOT_TOOL and camera is not None:
            return await run_screenshot_tool(camera, args)
        if name in self.web.definitions:
            result = await self.web.run(name, args, reader=self._reader(on_usage))
            content = redact(result.content) if redact is not None else result.content
            return ToolOutcome(truncate_middle(content, cap), result.is_error)
        return await run_tool(host.runtime, name, args, mode=host.permission_mode,
                              output_max_chars=cap, app_db=app_db_of(host),
                              redact=redact,
                              protected=protected_paths(host.project.template_id))  # fmt: skip

    def _reader(
        self, on_usage: Callable[[ModelSpec, TokenUsage], Awaitable[None]] | None
    ) -> Callable[[str, str], Awaitable[tuple[str, str] | None]] | None:
        small = self.small
        if small is None or not small.enabled:
            return None

        async def record(spec: ModelSpec, usage: TokenUsage) -> None:
            if on_usage is not None:
                await on_usage(spec, usage)

        async def read(question: str, text: str) -> tuple[str, str] | None:
            answer = await small.page_answer(question, text, on_usage=record)
            return None if answer is None else (answer.text, answer.spec.id)

        return read
