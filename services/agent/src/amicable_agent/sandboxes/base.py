"""The sandbox backend interface shared by the local and Kubernetes backends.

A *sandbox* is one isolated workspace per project running ``amicable-sandbox-runtime``
(port 8888 in Kubernetes) which supervises the project's dev server (port 3000 there).
The agent only talks to a backend through :class:`SandboxBackend`; everything else (the
WebSocket protocol, the LLM loop, the preview resolver) is identical in both run modes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
from amicable_protocol.messages import SandboxStage

#: Called as provisioning advances: ``await on_stage("creating", "Creating sandbox…")``.
StageCallback = Callable[[SandboxStage, str], Awaitable[None]]


async def ignore_stage(stage: SandboxStage, message: str) -> None:
    """A :data:`StageCallback` that reports nothing."""


def sandbox_id_for(session_id: str) -> str:
    """The deterministic sandbox id (and SandboxClaim name) of a session.

    ``amicable-`` + 12 hex digits of sha256: a valid DNS label, stable across renames and
    agent restarts, and the same on every agent replica.
    """
    digest = hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:12]
    return f"amicable-{digest}"


@attrs.frozen
class SandboxHandle:
    """How to reach a running sandbox.

    Attributes:
        sandbox_id: deterministic id (see :func:`sandbox_id_for`).
        runtime_url: base URL of the runtime API, e.g. ``http://127.0.0.1:41234``.
        runtime_token: bearer token for the runtime API (``None`` only where the backend
            relies on network policy instead, documented in docs/kubernetes.md).
        preview_upstream: ``http://host:port`` of the dev server, for the preview router.
        existed: the sandbox was already there (reconnect) rather than newly created.
    """

    sandbox_id: str
    runtime_url: str
    runtime_token: str | None = attrs.field(repr=False)
    preview_upstream: str
    existed: bool = False


@attrs.frozen
class SandboxInfo:
    """One sandbox as listed by a backend (for the reaper and ``/readyz``)."""

    sandbox_id: str
    session_id: str | None
    project_id: str | None
    last_active_s: float | None
    ready: bool


class SandboxBackend(Protocol):
    """What the agent needs from a sandbox backend. All methods are checkpoints."""

    async def ensure(
        self,
        session_id: str,
        *,
        project_id: str,
        template_id: str,
        on_stage: StageCallback = ignore_stage,
    ) -> SandboxHandle:
        """Create the session's sandbox or reconnect to it, and wait until it is usable.

        Raises:
            SandboxProvisionError: with a reason fit for the user.
        """
        ...

    async def lookup(self, sandbox_id: str) -> SandboxHandle | None:
        """The handle of an existing sandbox, without creating one (preview resolver)."""
        ...

    async def touch(self, sandbox_id: str) -> None:
        """Record activity so the idle TTL starts again."""
        ...

    async def delete(self, sandbox_id: str) -> None:
        """Delete the sandbox; deleting a missing one is not an error (idempotent)."""
        ...

    async def list(self) -> list[SandboxInfo]:
        """Every sandbox this backend manages."""
        ...

    async def aclose(self) -> None:
        """Stop whatever the backend owns (local processes, watches)."""
        ...
