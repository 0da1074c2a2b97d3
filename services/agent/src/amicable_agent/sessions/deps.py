"""What sessions need from the server, passed down explicitly (no globals)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import attrs

from amicable_agent.browser import PreviewBrowser
from amicable_agent.db import AppDatabase
from amicable_agent.gitsync import GitSync
from amicable_agent.loop.api import RuntimeClient, TurnEngine
from amicable_agent.loop.small_tasks import SmallTasks
from amicable_agent.sandboxes import SandboxBackend, SandboxHandle
from amicable_agent.store import Store

from .checkpoints import CheckpointPolicy
from .snapshots import Snapshots


@attrs.frozen
class SessionDeps:
    """What sessions need from the server (passed down explicitly, no globals).

    Attributes:
        store: the projects store.
        backend: the sandbox backend.
        runtime_factory: opens a :class:`RuntimeClient` for a sandbox handle.
        engine: the LLM loop, or None when no model is configured.
        preview_url: maps a label (slug) to the browser URL of the preview.
        default_template: template of projects created by ``init`` with an unknown id.
        idle_timeout_s: an unattended, idle session closes after this long.
        provision_timeout_s: deadline for ``backend.ensure``.
        db: the per-app Hasura database (credentials injected at provisioning), or None.
        git_sync: GitLab persistence (a commit after each turn), or None.
        checkpoints: size limits of the per-turn checkpoints.
        browser: the preview browser (screenshots for the model), or None.
        snapshots: copies each checkpoint out of the sandbox and restores re-created
            sandboxes (None: off, as in tests that do not need it).
        small: the small model's tasks (commit subjects), or None.
    """

    store: Store
    backend: SandboxBackend
    runtime_factory: Callable[[SandboxHandle], AbstractAsyncContextManager[RuntimeClient]]
    engine: TurnEngine | None
    preview_url: Callable[[str], str]
    default_template: str = "vite"
    idle_timeout_s: float = 600.0
    provision_timeout_s: float = 300.0
    db: AppDatabase | None = None
    git_sync: GitSync | None = None
    checkpoints: CheckpointPolicy = attrs.field(factory=CheckpointPolicy)
    browser: PreviewBrowser | None = None
    snapshots: Snapshots | None = None
    small: SmallTasks | None = None
