"""A session's sandbox: provisioned once, with ``sandbox_status`` stages, then kept alive.

Provisioning finds (or creates) the project row, asks the backend for a running sandbox,
opens the runtime client, restores the project's snapshot when the sandbox does not have its
history (it was reaped, its pod restarted, its workspace deleted: stage ``restoring``) and
prepares the app's database. Each step is reported to the editor as a stage; a failure is a
``failed`` stage with a readable reason, never an exception out of the session. A restore
that fails fails provisioning: the template must not be shown (and then checkpointed) in
place of the project.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, cast

import trio
from amicable_protocol.messages import MessageType, SandboxStatus

from amicable_agent.errors import AgentError, SandboxProvisionError, SnapshotError
from amicable_agent.sandboxes import sandbox_id_for

from .supervision import RuntimeSlot, SupervisedRuntime, supervise

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from contextlib import AsyncExitStack

    from amicable_protocol.messages import SandboxStage, ServerData

    from amicable_agent.db import AppDbInfo, AppDbTools
    from amicable_agent.loop.api import RuntimeClient
    from amicable_agent.sandboxes import SandboxHandle
    from amicable_agent.store import Project

    from .deps import SessionDeps
    from .snapshots import Restored
    from .supervision import StopWatcher

log = logging.getLogger(__name__)

#: How often an attached session refreshes its sandbox's idle clock.
KEEPALIVE_INTERVAL_S = 60.0


class SessionSandbox:
    """The sandbox side of one session: its project row, sandbox handle, runtime client and
    app database, all None until :meth:`provision` got them.

    Args:
        session_id: the session (== project) id.
        deps: the server's dependencies.
        send: broadcasts a message to the session's sockets (for the stages).
    """

    def __init__(
        self,
        session_id: str,
        deps: SessionDeps,
        send: Callable[[MessageType, ServerData], Awaitable[None]],
    ) -> None:
        self._session_id = session_id
        self._deps = deps
        self._send = send
        self._ready = trio.Event()
        self._started_at = time.monotonic()
        #: Why provisioning failed (shown to the editor), or None.
        self.failed: str | None = None
        self.project: Project | None = None
        self.handle: SandboxHandle | None = None
        self.runtime: RuntimeClient | None = None
        self.db_info: AppDbInfo | None = None
        self.app_db: AppDbTools | None = None
        #: What the snapshot restore did, when the sandbox needed one.
        self.restored: Restored | None = None
        #: The current runtime client across restarts (``runtime`` follows it).
        self.slot = RuntimeSlot()

    @property
    def ready(self) -> bool:
        """Provisioning has finished (successfully or not)."""
        return self._ready.is_set()

    def set_ready(self) -> None:
        """Mark provisioning finished (also when the session ends before it did)."""
        self._ready.set()

    async def wait_ready(self) -> None:
        """Wait until provisioning finished (successfully or not)."""
        await self._ready.wait()

    async def stage(self, stage: SandboxStage, message: str) -> None:
        """Log a provisioning stage and tell the editor (``sandbox_status``)."""
        elapsed = int((time.monotonic() - self._started_at) * 1000)
        sandbox_id = self.handle.sandbox_id if self.handle else sandbox_id_for(self._session_id)
        log.log(
            logging.WARNING if stage == "failed" else logging.INFO,
            "sandbox %s (session %s): %s after %.1f s: %s",
            sandbox_id, self._session_id, stage, elapsed / 1000, message,
        )  # fmt: skip
        await self._send(
            MessageType.SANDBOX_STATUS,
            SandboxStatus(stage=stage, message=message, sandbox_id=sandbox_id, elapsed_ms=elapsed),
        )

    async def provision(self, stack: AsyncExitStack) -> bool:
        """Bring the sandbox up; returns False (after a ``failed`` stage) when it could not.

        The runtime client is entered into ``stack``, so it closes with the session.
        """
        deps = self._deps
        try:
            await self.stage("queued", "Preparing your workspace…")
            project = await self._project_row()
            self.project = project
            with trio.fail_after(deps.provision_timeout_s):
                handle = await deps.backend.ensure(
                    self._session_id,
                    project_id=project.project_id,
                    template_id=project.template_id,
                    on_stage=self.stage,
                )
            self.handle = handle
            if project.sandbox_id != handle.sandbox_id:
                await deps.store.set_sandbox_id(project.project_id, handle.sandbox_id)
            client = await stack.enter_async_context(deps.runtime_factory(handle))
            self.slot.set_client(client)
            supervised = hasattr(deps.backend, "wait_stopped")
            self.runtime = (
                cast("RuntimeClient", SupervisedRuntime(self.slot)) if supervised else client
            )
            self.restored = await restore_snapshot(deps, project.project_id, client, self.stage)
            if deps.db is not None:  # never fails the session: no database this time
                self.db_info = await deps.db.try_prepare_session(
                    self._session_id, self.runtime, preview_url=deps.preview_url(project.slug)
                )
                if self.db_info is not None:
                    self.app_db = deps.db.session_tools(self._session_id, self.db_info)
            await self.stage("ready", "Workspace ready")
        except (SandboxProvisionError, trio.TooSlowError, AgentError, ValueError) as exc:
            self.failed = _failure_reason(exc)
            await self.stage("failed", self.failed)
            self._ready.set()
            return False
        self._ready.set()
        return True

    async def _project_row(self) -> Project:
        store = self._deps.store
        project = await store.get_project(self._session_id)
        if project is not None:
            return project
        try:
            return await store.create_project(
                "Untitled", template_id=self._deps.default_template, project_id=self._session_id
            )
        except ValueError as exc:  # the id belongs to a deleted project
            raise SandboxProvisionError("this project was deleted; create a new project") from exc

    async def supervise(self, stack: AsyncExitStack, busy: Callable[[], bool]) -> None:
        """Restart the sandbox when it dies while ``busy()`` (:mod:`.supervision`); returns
        when the session should close. Never returns for backends that cannot tell when a
        sandbox stopped."""
        deps = self._deps
        if not hasattr(deps.backend, "wait_stopped") or self.project is None:
            await trio.sleep_forever()
        watcher = cast("StopWatcher", deps.backend)
        project = self.project
        assert project is not None

        async def restart() -> None:
            with trio.fail_after(deps.provision_timeout_s):
                handle = await deps.backend.ensure(
                    self._session_id,
                    project_id=project.project_id,
                    template_id=project.template_id,
                    on_stage=self.stage,
                )
            client = await stack.enter_async_context(deps.runtime_factory(handle))
            self.handle = handle
            self.slot.set_client(client)

        await supervise(
            watcher, lambda: self.handle, self.slot, busy=busy, restart=restart, stage=self.stage
        )

    async def keep_alive(self, busy: Callable[[], bool]) -> None:
        """Refresh the sandbox's idle TTL while ``busy()`` (an open editor may sit quietly,
        with only its HMR socket open). Never returns."""
        while True:
            await trio.sleep(KEEPALIVE_INTERVAL_S)
            handle = self.handle
            if handle is not None and busy():
                with trio.move_on_after(KEEPALIVE_INTERVAL_S):
                    await self._deps.backend.touch(handle.sandbox_id)


async def restore_snapshot(
    deps: SessionDeps,
    project_id: str,
    runtime: RuntimeClient,
    on_stage: Callable[[SandboxStage, str], Awaitable[None]] | None = None,
) -> Restored | None:
    """Restore the project's snapshot into the sandbox when it lacks the stored history
    (see :meth:`.snapshots.Snapshots.restore`); None when there was nothing to do.

    Raises:
        SandboxProvisionError: the restore failed (nothing stored was changed).
    """
    snapshots = deps.snapshots
    if snapshots is None:
        return None
    try:
        with trio.fail_after(snapshots.store.config.timeout_s):
            return await snapshots.restore(project_id, runtime, on_stage)
    except (SnapshotError, trio.TooSlowError) as exc:
        why = exc.detail if isinstance(exc, SnapshotError) else "it took too long"
        log.warning("restoring the snapshot of %s failed: %s", project_id, why)
        raise SandboxProvisionError(
            f"Your project's saved files could not be restored into its new sandbox ({why}). "
            "Nothing was lost; try opening the project again."
        ) from exc


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, SandboxProvisionError):
        return exc.reason
    if isinstance(exc, trio.TooSlowError):
        return "timed out while starting the sandbox"
    return str(exc)
