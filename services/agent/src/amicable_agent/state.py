"""The resources the HTTP routes share, built once by ``server.serve``."""

from __future__ import annotations

import attrs
import trio

from .config import AgentConfig
from .sandboxes import SandboxBackend
from .sessions import SessionManager
from .store import Store


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
    """

    config: AgentConfig
    store: Store
    backend: SandboxBackend
    manager: SessionManager
    background: trio.Nursery
