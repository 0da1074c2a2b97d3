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

from amicable_agent.auth.identity import Role, User

if TYPE_CHECKING:
    from collections.abc import Sequence

    from amicable_protocol.messages import HistoryEntry, ProjectInfo

    from .snapshots import SnapshotKind, SnapshotRecord
    from .spend import SpendTotals, UsageRecord


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
    #: The user who owns it; None for projects made without logins (``AUTH_MODE=none``).
    owner_sub: str | None = None

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


@attrs.frozen
class Member:
    """One member of a project (the owner included)."""

    user: User
    role: Role


@attrs.frozen
class Invite:
    """A pending invitation for an e-mail address nobody has logged in with yet."""

    email: str
    role: Role


@attrs.frozen
class ApiToken:
    """An API token's public record (never the token)."""

    token_id: str
    name: str
    created_at: float
    last_used_at: float | None


#: The ``projects`` columns in :class:`Project`'s field order (``SELECT {COLUMNS}`` -> row).
COLUMNS = ", ".join(field.name for field in attrs.fields(Project))


class IdentityStore(Protocol):
    """Users, logins, API tokens, owners and members (see :mod:`.identity`)."""

    async def record_login(self, user: User, *, admin_emails: tuple[str, ...]) -> User:
        """Insert or refresh a user at login (invites become memberships)."""
        ...

    async def get_user(self, sub: str) -> User | None:
        """A user by ``sub``."""
        ...

    async def user_by_email(self, email: str) -> User | None:
        """The user who last logged in with ``email``."""
        ...

    async def create_login_session(self, sub: str, max_age_s: float) -> str:
        """A new login session's id."""
        ...

    async def session_user(self, session_id: str) -> User | None:
        """The user of a live login session."""
        ...

    async def revoke_login_session(self, session_id: str) -> None:
        """End a login session."""
        ...

    async def create_api_token(self, sub: str, name: str) -> tuple[ApiToken, str]:
        """A new API token: its record and the token (shown once)."""
        ...

    async def list_api_tokens(self, sub: str) -> list[ApiToken]:
        """A user's API tokens."""
        ...

    async def delete_api_token(self, sub: str, token_id: str) -> bool:
        """Revoke one of a user's tokens."""
        ...

    async def token_user(self, token: str) -> User | None:
        """The user of an API token."""
        ...

    async def project_role(self, project_id: str, sub: str) -> Role | None:
        """A user's role in a live project."""
        ...

    async def projects_of(self, sub: str) -> list[tuple[Project, Role]]:
        """Live projects a user owns or is a member of."""
        ...

    async def count_owned_projects(self, sub: str) -> int:
        """How many live projects a user owns."""
        ...

    async def members(self, project_id: str) -> tuple[list[Member], list[Invite]]:
        """A project's members (owner first) and pending invites."""
        ...

    async def add_member(self, project_id: str, sub: str, role: Role) -> None:
        """Give a user a role in a project."""
        ...

    async def remove_member(self, project_id: str, sub: str) -> bool:
        """Remove a membership."""
        ...

    async def add_invite(self, project_id: str, email: str, role: Role) -> None:
        """Remember an invitation for an e-mail address."""
        ...

    async def remove_invite(self, project_id: str, email: str) -> bool:
        """Drop a pending invitation."""
        ...


class SpendStore(Protocol):
    """Model usage and per-user budget overrides (see :mod:`.spend`)."""

    async def record_usage(self, record: UsageRecord) -> None:
        """Store one model call's usage."""
        ...

    async def spend_since(
        self, since: float, *, project_id: str | None = None, user_sub: str | None = None
    ) -> SpendTotals:
        """Sums of usage since ``since`` (epoch seconds) of a project and/or a user."""
        ...

    async def user_limits(self, sub: str) -> dict[str, Any] | None:
        """A user's budget overrides, or None."""
        ...

    async def set_user_limits(self, sub: str, limits: dict[str, Any] | None) -> None:
        """Set (None: drop) a user's budget overrides."""
        ...


class SnapshotIndex(Protocol):
    """Each project's chain of snapshots, and bundle bytes kept in the database (see
    :mod:`.snapshots`)."""

    async def snapshot_chain(self, project_id: str) -> list[SnapshotRecord]:
        """The newest full snapshot and the incrementals after it, oldest first."""
        ...

    async def append_snapshot(
        self,
        project_id: str,
        *,
        kind: SnapshotKind,
        head_sha: str,
        base_sha: str | None,
        size_bytes: int,
        sha256: str,
        blob: str,
        expect_head: str | None,
        parts: Sequence[bytes] = (),
    ) -> SnapshotRecord:
        """Append a snapshot if the chain's head is still ``expect_head`` (with the bytes of
        a small database blob)."""
        ...

    async def compact_snapshots(
        self, project_id: str, *, head_sha: str, size_bytes: int, sha256: str, blob: str
    ) -> list[str]:
        """Replace the chain by one full snapshot of its head; the blobs to delete."""
        ...

    async def referenced_snapshot_blobs(self, project_id: str) -> set[str]:
        """Every blob a stored snapshot of the project refers to."""
        ...

    async def put_snapshot_part(self, project_id: str, blob: str, part: int, data: bytes) -> None:
        """Store one part of a database blob."""
        ...

    async def snapshot_part(self, blob: str, part: int) -> bytes | None:
        """One part of a database blob (None past its end)."""
        ...

    async def delete_snapshot_blobs(self, project_id: str, keep: set[str]) -> int:
        """Delete the project's database blobs not in ``keep``."""
        ...


class Store(IdentityStore, SpendStore, SnapshotIndex, Protocol):
    """Durable agent state. Every method is a checkpoint."""

    async def create_project(
        self,
        name: str,
        *,
        template_id: str,
        prompt: str | None = None,
        project_id: str | None = None,
        owner_sub: str | None = None,
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

    async def turn_records(
        self, project_id: str, *, before: int | None = None, limit: int = 20
    ) -> list[tuple[int, Any]]:
        """``(seq, payload)`` of the ``turn_record`` events before ``seq`` ``before`` (all
        when None), newest first, at most ``limit``."""
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
