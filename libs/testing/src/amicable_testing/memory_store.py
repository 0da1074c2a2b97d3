"""An in-memory project store for tests of the agent's sessions and HTTP API."""

from __future__ import annotations

import time
import uuid
from typing import Any

import attrs
import trio
from amicable_agent.store.base import Project, slug_candidates, slugify
from amicable_agent.store.spend import SpendTotals, UsageRecord, total_of
from amicable_protocol.messages import HistoryEntry

__all__ = ["MemorySpend", "MemoryStore"]


class MemorySpend:
    """The spend part of a store in memory (:class:`~amicable_agent.store.base.SpendStore`)."""

    def __init__(self) -> None:
        self.usage: list[UsageRecord] = []
        self.limits: dict[str, dict[str, Any]] = {}

    async def record_usage(self, record: UsageRecord) -> None:
        """Keep one model call's usage."""
        await trio.lowlevel.checkpoint()
        self.usage.append(record)

    async def spend_since(
        self, since: float, *, project_id: str | None = None, user_sub: str | None = None
    ) -> SpendTotals:
        """Sums of the usage since ``since`` of a project and/or a user."""
        await trio.lowlevel.checkpoint()
        return total_of([
            r for r in self.usage
            if r.created_at >= since
            and (project_id is None or r.project_id == project_id)
            and (user_sub is None or r.user_sub == user_sub)
        ])  # fmt: skip

    async def user_limits(self, sub: str) -> dict[str, Any] | None:
        """A user's budget overrides."""
        await trio.lowlevel.checkpoint()
        return self.limits.get(sub)

    async def set_user_limits(self, sub: str, limits: dict[str, Any] | None) -> None:
        """Set or drop a user's budget overrides."""
        await trio.lowlevel.checkpoint()
        if limits is None:
            self.limits.pop(sub, None)
        else:
            self.limits[sub] = dict(limits)


class MemoryStore(MemorySpend):
    """An in-memory :class:`~amicable_agent.store.base.Store` (no threads: safe on
    ``autojump_clock``)."""

    def __init__(self) -> None:
        super().__init__()
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

    async def turn_records(
        self, project_id: str, *, before: int | None = None, limit: int = 20
    ) -> list[tuple[int, Any]]:
        """``(seq, payload)`` of stored turn records (seq: position + 1), newest first."""
        await trio.lowlevel.checkpoint()
        rows = [
            (seq, payload)
            for seq, (kind, payload) in enumerate(self.events.get(project_id, []), 1)
            if kind == "turn_record" and (before is None or seq < before)
        ]
        return rows[::-1][:limit]

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
