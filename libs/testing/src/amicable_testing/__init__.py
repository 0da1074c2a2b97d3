"""Fakes for tests of the agent and of code that uses it (like :mod:`trio.testing`).

:class:`FakeSandboxBackend` is an in-memory :class:`~amicable_agent.sandboxes.base.SandboxBackend`
that reports the real stage sequence; :func:`unused_runtime_factory` satisfies
``SessionDeps.runtime_factory`` when a test never talks to a runtime.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio
from amicable_agent.errors import SandboxProvisionError
from amicable_agent.sandboxes.base import (
    SandboxHandle,
    SandboxInfo,
    StageCallback,
    ignore_stage,
    sandbox_id_for,
)
from amicable_agent.store.base import Project, slug_candidates, slugify
from amicable_protocol.messages import HistoryEntry, ServerMessage, decode_server_message

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_websocket import WebSocketConnection

__all__ = [
    "FakeSandboxBackend",
    "unused_runtime_factory",
    "ws_expect_close",
    "ws_recv",
    "ws_recv_until",
    "ws_send",
]


class FakeSandboxBackend:
    """An in-memory sandbox backend.

    Attributes:
        preview_upstream: the upstream every handle reports.
        runtime_url: the runtime URL every handle reports.
        fail_reason: when set, ``ensure`` fails with this reason.
        gate: when set, ``ensure`` waits for this event after reporting ``creating``.
        ensure_calls: session ids passed to ``ensure``, in order.
        deleted: sandbox ids passed to ``delete``.
        touched: sandbox ids passed to ``touch``.
    """

    def __init__(
        self,
        *,
        preview_upstream: str = "http://127.0.0.1:9",
        runtime_url: str = "http://127.0.0.1:9",
        runtime_token: str | None = "fake-token",
    ) -> None:
        self.preview_upstream = preview_upstream
        self.runtime_url = runtime_url
        self.runtime_token = runtime_token
        self.fail_reason: str | None = None
        self.gate: trio.Event | None = None
        self.ensure_calls: list[str] = []
        self.deleted: list[str] = []
        self.touched: list[str] = []
        self._sandboxes: dict[str, tuple[str, str]] = {}
        self._deleted_event = trio.Event()

    def _handle(self, sandbox_id: str, existed: bool) -> SandboxHandle:
        return SandboxHandle(
            sandbox_id=sandbox_id,
            runtime_url=self.runtime_url,
            runtime_token=self.runtime_token,
            preview_upstream=self.preview_upstream,
            existed=existed,
        )

    async def ensure(
        self,
        session_id: str,
        *,
        project_id: str,
        template_id: str,
        on_stage: StageCallback = ignore_stage,
    ) -> SandboxHandle:
        """Create or reconnect; reports creating/starting_runtime/starting_preview."""
        self.ensure_calls.append(session_id)
        sandbox_id = sandbox_id_for(session_id)
        if sandbox_id in self._sandboxes:
            await trio.lowlevel.checkpoint()
            return self._handle(sandbox_id, True)
        await on_stage("creating", "Creating sandbox")
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_reason is not None:
            raise SandboxProvisionError(self.fail_reason)
        await on_stage("starting_runtime", "Starting runtime")
        await on_stage("starting_preview", "Starting dev server")
        self._sandboxes[sandbox_id] = (session_id, project_id)
        return self._handle(sandbox_id, False)

    async def lookup(self, sandbox_id: str) -> SandboxHandle | None:
        """The handle if the sandbox exists."""
        await trio.lowlevel.checkpoint()
        return self._handle(sandbox_id, True) if sandbox_id in self._sandboxes else None

    async def touch(self, sandbox_id: str) -> None:
        """Record the touch."""
        self.touched.append(sandbox_id)
        await trio.lowlevel.checkpoint()

    async def delete(self, sandbox_id: str) -> None:
        """Forget the sandbox."""
        self.deleted.append(sandbox_id)
        self._sandboxes.pop(sandbox_id, None)
        self._deleted_event.set()
        self._deleted_event = trio.Event()
        await trio.lowlevel.checkpoint()

    async def wait_deleted(self, sandbox_id: str) -> None:
        """Wait until ``delete(sandbox_id)`` has been called."""
        while sandbox_id not in self.deleted:
            await self._deleted_event.wait()

    async def list(self) -> list[SandboxInfo]:
        """Every fake sandbox."""
        await trio.lowlevel.checkpoint()
        return [
            SandboxInfo(sid, session, project, time.time(), True)
            for sid, (session, project) in self._sandboxes.items()
        ]

    async def aclose(self) -> None:
        """Nothing to stop."""
        await trio.lowlevel.checkpoint()


class _NoRuntime:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"this test's sandbox has no runtime (called {name})")


@asynccontextmanager
async def _no_runtime(handle: SandboxHandle) -> AsyncIterator[Any]:
    yield _NoRuntime()


def unused_runtime_factory(handle: SandboxHandle) -> Any:
    """A ``runtime_factory`` for tests that never call the runtime."""
    return _no_runtime(handle)


async def ws_recv(ws: WebSocketConnection, timeout_s: float = 10) -> ServerMessage:
    """The next server message (fails after ``timeout_s``)."""
    with trio.fail_after(timeout_s):
        return decode_server_message(await ws.get_message())


async def ws_recv_until(
    ws: WebSocketConnection, type_: str, timeout_s: float = 30
) -> list[ServerMessage]:
    """Server messages up to and including the first of type ``type_``."""
    seen: list[ServerMessage] = []
    with trio.fail_after(timeout_s):
        while True:
            msg = decode_server_message(await ws.get_message())
            seen.append(msg)
            if str(msg.type) == type_:
                return seen


async def ws_send(ws: WebSocketConnection, obj: Any) -> None:
    """Send a JSON object (or a raw string) as one text frame."""
    await ws.send_message(obj if isinstance(obj, str) else json.dumps(obj))


async def ws_expect_close(ws: WebSocketConnection, timeout_s: float = 20) -> int:
    """Read until the server closes the socket; returns the close code.

    Also closes the client's TCP stream: trio-websocket leaves it open (and warns later)
    when the peer closes first.
    """
    from trio_websocket import ConnectionClosed

    try:
        with trio.fail_after(timeout_s):
            while True:
                await ws.get_message()
    except ConnectionClosed as exc:
        code = exc.reason.code if exc.reason is not None else 1005
    finally:
        stream = getattr(ws, "_stream", None)
        if stream is not None:
            await stream.aclose()
    return int(code)


class MemoryStore:
    """An in-memory :class:`~amicable_agent.store.base.Store` (no threads: safe on
    ``autojump_clock``)."""

    def __init__(self) -> None:
        self.projects: dict[str, Project] = {}
        self.chat: dict[str, list[tuple[str, str]]] = {}
        self.conversations: dict[str, list[dict[str, Any]]] = {}
        self.state: dict[tuple[str, str], Any] = {}
        self.events: dict[str, list[tuple[str, Any]]] = {}

    async def create_project(
        self,
        name: str,
        *,
        template_id: str,
        prompt: str | None = None,
        project_id: str | None = None,
    ) -> Project:
        """Insert a project with a unique slug."""
        await trio.lowlevel.checkpoint()
        pid = project_id or str(uuid.uuid4())
        if pid in self.projects:
            raise ValueError(f"project {pid} already exists")
        taken = {p.slug for p in self.projects.values() if p.deleted_at is None}
        slug = next(s for s in slug_candidates(slugify(name), pid) if s not in taken)
        now = time.time()
        project = Project(pid, name, slug, template_id, None, prompt, now, now)
        self.projects[pid] = project
        return project

    async def get_project(self, project_id: str) -> Project | None:
        """A live project by id."""
        await trio.lowlevel.checkpoint()
        p = self.projects.get(project_id)
        return p if p is not None and p.deleted_at is None else None

    async def get_project_by_slug(self, slug: str) -> Project | None:
        """A live project by slug."""
        await trio.lowlevel.checkpoint()
        for p in self.projects.values():
            if p.slug == slug and p.deleted_at is None:
                return p
        return None

    async def list_projects(self) -> list[Project]:
        """Live projects, newest update first."""
        await trio.lowlevel.checkpoint()
        live = [p for p in self.projects.values() if p.deleted_at is None]
        return sorted(live, key=lambda p: p.updated_at, reverse=True)

    async def rename_project(self, project_id: str, name: str) -> Project | None:
        """Rename and re-slug."""
        await trio.lowlevel.checkpoint()
        p = self.projects.get(project_id)
        if p is None or p.deleted_at is not None:
            return None
        taken = {q.slug for q in self.projects.values() if q.deleted_at is None and q is not p}
        slug = next(s for s in slug_candidates(slugify(name), project_id) if s not in taken)
        self.projects[project_id] = attrs.evolve(p, name=name, slug=slug, updated_at=time.time())
        return self.projects[project_id]

    async def set_sandbox_id(self, project_id: str, sandbox_id: str) -> None:
        """Remember the sandbox id."""
        await trio.lowlevel.checkpoint()
        p = self.projects[project_id]
        self.projects[project_id] = attrs.evolve(p, sandbox_id=sandbox_id)

    async def soft_delete_project(self, project_id: str) -> Project | None:
        """Mark deleted."""
        p = await self.get_project(project_id)
        if p is not None:
            self.projects[project_id] = attrs.evolve(p, deleted_at=time.time())
        return p

    async def purge_project(self, project_id: str) -> None:
        """Forget everything about the project."""
        await trio.lowlevel.checkpoint()
        self.projects.pop(project_id, None)
        self.chat.pop(project_id, None)

    async def chat_history(self, project_id: str, limit: int = 20) -> list[HistoryEntry]:
        """The last ``limit`` chat entries."""
        await trio.lowlevel.checkpoint()
        rows = self.chat.get(project_id, [])[-limit:]
        return [HistoryEntry(role=r, text=t) for r, t in rows if r in ("user", "assistant")]  # type: ignore[arg-type]

    async def append_turn_event(self, project_id: str, kind: str, payload: Any) -> None:
        """Record an event."""
        await trio.lowlevel.checkpoint()
        self.events.setdefault(project_id, []).append((kind, payload))

    async def turn_events(self, project_id: str) -> list[tuple[str, Any]]:
        """Recorded events."""
        await trio.lowlevel.checkpoint()
        return list(self.events.get(project_id, []))

    async def load_conversation(self, project_id: str) -> list[dict[str, Any]]:
        """The stored model messages."""
        await trio.lowlevel.checkpoint()
        return list(self.conversations.get(project_id, []))

    async def save_conversation(self, project_id: str, messages: list[dict[str, Any]]) -> None:
        """Replace the model messages."""
        await trio.lowlevel.checkpoint()
        self.conversations[project_id] = list(messages)

    async def append_chat(self, project_id: str, role: str, text: str) -> None:
        """Append a chat entry."""
        await trio.lowlevel.checkpoint()
        self.chat.setdefault(project_id, []).append((role, text))

    async def load_state(self, project_id: str, key: str) -> Any:
        """A small JSON value."""
        await trio.lowlevel.checkpoint()
        return self.state.get((project_id, key))

    async def save_state(self, project_id: str, key: str, value: Any) -> None:
        """Store or clear a small JSON value."""
        await trio.lowlevel.checkpoint()
        if value is None:
            self.state.pop((project_id, key), None)
        else:
            self.state[(project_id, key)] = value

    async def aclose(self) -> None:
        """Nothing to release."""
        await trio.lowlevel.checkpoint()
