"""The seam between the session machinery (``sessions.py``) and the LLM loop (``turns.py``).

The session side owns sockets, the sandbox and persistence; the loop side owns the model
conversation, tools, QA, HITL and auto-heal. Each side depends only on these Protocols, so
either can be tested with a small in-memory implementation of the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Sequence
    from contextlib import AbstractAsyncContextManager

    from amicable_protocol.messages import (
        HistoryEntry,
        HitlPending,
        HitlResponseData,
        MessageType,
        ModelChoice,
        PermissionMode,
        ProjectInfo,
        RuntimeErrorData,
        ServerData,
        SpendSummary,
        ThinkingLevel,
        UserData,
    )
    from amicable_protocol.runtime import (
        EditResult,
        ExecExit,
        ExecOutput,
        ExecResult,
        GlobResult,
        GrepResult,
        PreviewLogs,
        PreviewStatus,
        TreeResult,
        WriteResult,
    )

    from amicable_agent.browser import PreviewCamera
    from amicable_agent.db.tools import AppDbTools
    from amicable_agent.store.spend import SpendTotals, UsageRecord

    from .small_tasks import ModelServices


class RuntimeClient(Protocol):
    """Typed client of one sandbox's runtime API (``amicable_agent.sandboxes.runtime_client``).

    Paths are workspace paths (``/src/App.tsx``). Errors raise
    :class:`amicable_agent.errors.RuntimeClientError` carrying the runtime's error code
    (``not_found``, ``conflict``, ``invalid_path``, ``path_too_long``, ``command_too_long``,
    ``exec_failed`` …); only ``unreachable`` and ``timeout`` (status 0) mean the runtime did
    not answer.
    """

    async def read_file(self, path: str, *, max_bytes: int | None = None) -> tuple[bytes, str]:
        """Content and sha256 hex of a file; with ``max_bytes``, a bigger file (or answer)
        raises ``RuntimeClientError`` ``too_large`` instead of being read."""
        ...

    async def write_file(
        self, path: str, content: bytes, *, if_match: str | None = None
    ) -> WriteResult: ...

    async def delete(self, path: str, *, recursive: bool = False) -> None: ...

    async def move(self, src: str, dst: str) -> None: ...

    async def mkdir(self, path: str) -> None: ...

    async def edit(
        self, path: str, old_string: str, new_string: str, *, replace_all: bool = False
    ) -> EditResult: ...

    async def tree(
        self, path: str = "/", *, depth: int | None = None, include_hidden: bool = False
    ) -> TreeResult: ...

    async def glob(self, pattern: str, path: str = "/") -> GlobResult: ...

    async def grep(
        self,
        pattern: str,
        path: str = "/",
        *,
        glob: str | None = None,
        fixed_strings: bool = False,
        max_results: int = 200,
    ) -> GrepResult: ...

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> ExecResult:
        """Run ``command`` to completion. Cancelling the caller kills the process group
        (the client closes the connection; the runtime kills on disconnect)."""
        ...

    def open_exec_stream(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[ExecOutput | ExecExit]]:
        """Run a command; the block iterates its output, the last item is the ExecExit.

        ``async with runtime.open_exec_stream(cmd) as items: async for item in items: ...``

        Cancellation: leaving the block early, by an exception or by cancellation, kills
        the command's process group.
        """
        ...

    def archive(
        self, fmt: str = "tar.gz", *, excludes: Sequence[str] = (), default_excludes: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """The workspace as a streamed ``tar.gz`` or ``zip``; use with ``aclosing``.

        ``default_excludes`` leaves out dependencies, VCS data, build output, ``.env*`` and
        caches; ``excludes`` adds glob patterns (an entry's name or its relative path).
        """
        ...

    async def preview_status(self) -> PreviewStatus: ...

    async def preview_restart(self) -> PreviewStatus: ...

    async def preview_logs(self, tail: int = 200) -> PreviewLogs: ...


class ConversationStore(Protocol):
    """Durable per-project conversation state and spend (implemented by ``store/``)."""

    async def load_conversation(self, project_id: str) -> list[dict[str, Any]]:
        """The model-level message list (Anthropic ``messages`` JSON), oldest first."""
        ...

    async def save_conversation(self, project_id: str, messages: list[dict[str, Any]]) -> None:
        """Replace the stored model-level message list."""
        ...

    async def append_chat(self, project_id: str, role: str, text: str) -> None:
        """Append one user-visible chat entry (what INIT replays as history)."""
        ...

    async def load_state(self, project_id: str, key: str) -> Any:
        """A small JSON value (e.g. ``"hitl_pending"``, ``"conversation_summary"``) or None."""
        ...

    async def save_state(self, project_id: str, key: str, value: Any) -> None:
        """Store (``value`` not None) or clear (None) a small JSON value."""
        ...

    async def record_usage(self, record: UsageRecord) -> None:
        """Store one model call's usage (tokens and estimated cost)."""
        ...

    async def spend_since(
        self, since: float, *, project_id: str | None = None, user_sub: str | None = None
    ) -> SpendTotals:
        """Sums of usage since ``since`` (epoch seconds) of a project and/or a user."""
        ...

    async def user_limits(self, sub: str) -> dict[str, Any] | None:
        """A user's budget overrides (set by an admin), or None."""
        ...


class SessionHost(Protocol):
    """What a turn sees of its session (implemented by ``sessions.Session``).

    Optional members (read with :func:`app_db_of` / :func:`preview_of`, so hosts without
    them still qualify): ``app_db``, the session's :class:`~amicable_agent.db.tools.AppDbTools`
    when its app has a database (Hasura configured and the database prepared at INIT), else
    None; ``preview``, a :class:`~amicable_agent.browser.PreviewCamera` on the session's
    preview when the agent has a browser, else None.
    """

    @property
    def session_id(self) -> str: ...

    @property
    def project(self) -> ProjectInfo: ...

    @property
    def permission_mode(self) -> PermissionMode: ...

    @property
    def thinking_level(self) -> ThinkingLevel: ...

    @property
    def runtime(self) -> RuntimeClient: ...

    @property
    def store(self) -> ConversationStore: ...

    async def send(self, type: MessageType, data: ServerData, *, msg_id: str | None = None) -> None:
        """Broadcast a server message to every socket attached to the session.

        Never blocks on a slow socket (slow sockets are dropped by the session).
        """
        ...


def app_db_of(host: SessionHost) -> AppDbTools | None:
    """The optional ``app_db`` member of ``host`` (None when absent): the model gets the DB
    tools only when this is not None."""
    return cast("AppDbTools | None", getattr(host, "app_db", None))


def preview_of(host: SessionHost) -> PreviewCamera | None:
    """The optional ``preview`` member of ``host`` (None when absent): screenshots of the
    session's preview are possible only when this is not None."""
    return cast("PreviewCamera | None", getattr(host, "preview", None))


class TurnEngine(Protocol):
    """The LLM loop (``engine.py``). The session serialises calls and owns cancellation:

    a ``cancel`` message, the turn deadline or the session closing cancels the task that
    awaits these methods; the engine must leave the conversation consistent (keep what was
    done, record that the turn was stopped) in a shielded cleanup, then re-raise.

    ``by`` is the ``sub`` of the user who sent the message (None without logins): their
    spend is recorded and their budgets apply.
    """

    async def run_user_turn(
        self, host: SessionHost, data: UserData, *, by: str | None = None
    ) -> None:
        """One ``user`` turn: ``update_in_progress`` … ``update_completed``."""
        ...

    async def resume_hitl(
        self, host: SessionHost, data: HitlResponseData, *, by: str | None = None
    ) -> None:
        """Resume a turn paused by ``hitl_request`` (errors go out as ``error`` messages)."""
        ...

    async def run_runtime_error(
        self, host: SessionHost, data: RuntimeErrorData, *, by: str | None = None
    ) -> None:
        """Maybe start an auto-heal turn (cooldown, dedupe, per-fingerprint cap)."""
        ...

    def model_choices(self) -> tuple[ModelChoice, ...]:
        """The models on offer (INIT ``models``), the deployment default first."""
        ...

    async def project_model(self, host: SessionHost, requested: str | None = None) -> str:
        """The project's model id (INIT ``model``), after storing ``requested`` when it is
        on offer (an ``init`` that carries the picker's choice)."""
        ...

    async def project_spend(self, host: SessionHost) -> SpendSummary:
        """The project's tokens and cost so far (INIT ``spend``)."""
        ...

    async def hitl_pending(self, host: SessionHost) -> HitlPending | None:
        """The outstanding approval request, if any (for INIT and for refusing turns)."""
        ...

    async def history(self, host: SessionHost) -> list[HistoryEntry]:
        """The last 20 user-visible ``{role, text}`` entries (for INIT)."""
        ...

    def model_services(self) -> ModelServices | None:
        """The engine's model clients, budgets and small tasks, for model calls outside a
        turn (the database pane's schema intents, checkpoints' commit subjects); None when
        the engine has no models (test engines)."""
        ...
