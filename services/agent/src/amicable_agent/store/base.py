"""The projects store interface: projects, chat, model conversation, state, turn events.

:class:`Store` is what the agent needs from durable storage. ``sqlite_store`` implements it
(the default, one file, one agent process) and ``pg_store`` with PostgreSQL (shared by several
agent replicas); :func:`open_store` picks one from the config. It also satisfies
:class:`amicable_agent.loop.api.ConversationStore`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    from amicable_protocol.messages import HistoryEntry, ProjectInfo


_SLUG_RUN = re.compile(r"[^a-z0-9]+")
SLUG_MAX = 50


def slugify(name: str) -> str:
    """Lower-case, non-``[a-z0-9]`` runs to ``-``, trimmed, at most 50 chars, never empty."""
    slug = _SLUG_RUN.sub("-", name.lower()).strip("-")[:SLUG_MAX].strip("-")
    return slug or "project"


def slug_candidates(base: str, project_id: str) -> list[str]:
    """``base`` then suffixed variants (hex of the project id) for collisions, ≤ 63 chars."""
    hexid = "".join(c for c in project_id.lower() if c in "0123456789abcdef") or "0"
    out = [base]
    for attempt in range(1, 20):
        suffix = hexid[: 4 + attempt // 3] + (str(attempt) if attempt > 2 else "")
        out.append(f"{base[: 62 - len(suffix)]}-{suffix}")
    return list(dict.fromkeys(out))


@attrs.frozen
class Project:
    """One project row. ``project_id`` is also the session id and the app id."""

    project_id: str
    name: str
    slug: str
    template_id: str
    sandbox_id: str | None
    prompt: str | None
    created_at: float
    updated_at: float
    deleted_at: float | None = None

    def info(self) -> ProjectInfo:
        """The public ``project`` object of INIT."""
        from amicable_protocol.messages import ProjectInfo

        return ProjectInfo(
            project_id=self.project_id,
            name=self.name,
            slug=self.slug,
            template_id=self.template_id,
            project_prompt=self.prompt,
        )


class Store(Protocol):
    """Durable agent state. Every method is a checkpoint."""

    async def create_project(
        self,
        name: str,
        *,
        template_id: str,
        prompt: str | None = None,
        project_id: str | None = None,
    ) -> Project:
        """Insert a project (id uuid4 unless given) with a unique slug derived from ``name``."""
        ...

    async def get_project(self, project_id: str) -> Project | None:
        """A non-deleted project by id."""
        ...

    async def get_project_by_slug(self, slug: str) -> Project | None:
        """A non-deleted project by slug."""
        ...

    async def list_projects(self) -> list[Project]:
        """Non-deleted projects, most recently updated first."""
        ...

    async def rename_project(self, project_id: str, name: str) -> Project | None:
        """Set the name and re-derive the slug (the sandbox id never changes)."""
        ...

    async def set_sandbox_id(self, project_id: str, sandbox_id: str) -> None:
        """Remember the project's sandbox."""
        ...

    async def soft_delete_project(self, project_id: str) -> Project | None:
        """Mark deleted (vanishes from lists); returns the row or None if unknown."""
        ...

    async def purge_project(self, project_id: str) -> None:
        """Remove the row and everything hanging off it."""
        ...

    async def chat_history(self, project_id: str, limit: int = 20) -> list[HistoryEntry]:
        """The last ``limit`` user-visible chat entries, oldest first."""
        ...

    async def append_turn_event(self, project_id: str, kind: str, payload: Any) -> None:
        """Record one turn event (audit trail)."""
        ...

    async def turn_events(self, project_id: str) -> list[tuple[str, Any]]:
        """Every recorded ``(kind, payload)``, oldest first."""
        ...

    # ConversationStore (turn_api)
    async def load_conversation(self, project_id: str) -> list[dict[str, Any]]: ...

    async def save_conversation(self, project_id: str, messages: list[dict[str, Any]]) -> None: ...

    async def append_chat(self, project_id: str, role: str, text: str) -> None: ...

    async def load_state(self, project_id: str, key: str) -> Any: ...

    async def save_state(self, project_id: str, key: str, value: Any) -> None: ...

    async def aclose(self) -> None:
        """Release the database."""
        ...
