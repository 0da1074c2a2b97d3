"""An in-memory sandbox backend for tests of the agent's sessions.

:class:`FakeSandboxBackend` is an in-memory :class:`~amicable_agent.sandboxes.base.SandboxBackend`
that reports the real stage sequence; :func:`unused_runtime_factory` satisfies
``SessionDeps.runtime_factory`` when a test never talks to a runtime.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio
from amicable_agent.errors import SandboxProvisionError
from amicable_agent.sandboxes.base import (
    SandboxHandle,
    SandboxInfo,
    StageCallback,
    ignore_stage,
    sandbox_id_for,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["FakeSandboxBackend", "unused_runtime_factory"]


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
