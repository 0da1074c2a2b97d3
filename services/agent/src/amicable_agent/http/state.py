"""The resources the HTTP routes share, built once by ``server.serve``."""

from __future__ import annotations

import attrs
import trio

from amicable_agent.config import AgentConfig
from amicable_agent.db import AppDatabase
from amicable_agent.gitsync import GitSync
from amicable_agent.sandboxes.base import SandboxBackend
from amicable_agent.sessions import SessionManager
from amicable_agent.store.base import Store


@attrs.frozen
class AppState:
    """What route handlers use.

    Attributes:
        config: the agent config.
        store: the projects store.
        backend: the sandbox backend.
        manager: the session manager.
        background: a nursery owned by the server for best-effort background work
            (sandbox deletion after ``DELETE /api/projects/{id}``).
        db: the per-app Hasura database integration, or None when it is off.
        git_sync: GitLab persistence, or None when it is off.
    """

    config: AgentConfig
    store: Store
    backend: SandboxBackend
    manager: SessionManager
    background: trio.Nursery
    db: AppDatabase | None = None
    git_sync: GitSync | None = None
