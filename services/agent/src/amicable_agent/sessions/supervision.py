"""Supervision of a session's sandbox while someone uses it.

A sandbox whose runtime dies (a crash, a ``kill -9``, the OOM killer) while an editor is
attached or a turn runs is started again from its workspace, with backoff; the attached
sockets see the ``sandbox_status`` stages of the restart, so the preview and the file API come
back without a reload. Nobody using it: the session closes (the next ``init`` starts afresh).

Tools see the sandbox through :class:`SupervisedRuntime`, a stable stand-in for the session's
current runtime client. A call that finds the runtime gone (``unreachable``) while a restart
is under way (or about to be) waits for the restart and is tried once more; when the restart
does not finish in time the caller gets ``sandbox_restarting``, a clear error for the model.

Only backends that can say when a sandbox stopped (``wait_stopped``: the local backend) are
supervised; the others are left as they were (their platform restarts pods itself).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import trio

from amicable_agent.errors import RuntimeClientError, SandboxProvisionError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from amicable_protocol.messages import SandboxStage

    from amicable_agent.loop.api import RuntimeClient
    from amicable_agent.sandboxes import SandboxHandle

log = logging.getLogger(__name__)

#: Waits before the attempts to start a dead sandbox again (then the session gives up).
RESTART_BACKOFF_S = (0.0, 1.0, 2.0, 4.0, 8.0)
#: How long a tool call waits for a restart in progress before it answers "restarting".
RESTART_WAIT_S = 120.0
#: How long a call that found the runtime unreachable waits for the supervisor to notice.
NOTICE_S = 3.0

#: At most this many restarts in ``RESTART_WINDOW_S`` (a sandbox that keeps dying is left).
RESTART_BUDGET = 5
RESTART_WINDOW_S = 600.0


def restarting_error() -> RuntimeClientError:
    """What a call gets while the sandbox restarts for longer than it may wait."""
    return RuntimeClientError(
        503,
        "sandbox_restarting",
        "the sandbox stopped unexpectedly and is restarting; try again in a moment",
    )


class StopWatcher(Protocol):
    """A backend that can wait for a sandbox to stop (the local backend)."""

    async def wait_stopped(self, sandbox_id: str) -> None: ...


class RuntimeSlot:
    """The session's current runtime client and whether its sandbox is restarting."""

    def __init__(self) -> None:
        self.client: RuntimeClient | None = None
        self.generation = 0
        self.restarting = False
        self._crashed = trio.Event()
        self._settled = trio.Event()
        self._settled.set()

    def set_client(self, client: RuntimeClient) -> None:
        """A (new) runtime is up: calls go to ``client``."""
        self.client = client
        self.generation += 1
        self.restarting = False
        self._crashed = trio.Event()
        self._settled.set()

    def crashed(self) -> None:
        """The sandbox died: calls wait for :meth:`set_client` or :meth:`gave_up`."""
        self.restarting = True
        self._settled = trio.Event()
        self._crashed.set()

    def gave_up(self) -> None:
        """No restart: waiting calls answer ``sandbox_restarting``."""
        self.restarting = False
        self._settled.set()

    async def usable(self) -> tuple[RuntimeClient, int]:
        """The client to call and its generation (waits for a restart in progress).

        Raises:
            RuntimeClientError: ``sandbox_restarting`` when the restart takes too long.
        """
        if self.restarting:
            with trio.move_on_after(RESTART_WAIT_S):
                await self._settled.wait()
        if self.restarting or self.client is None:
            raise restarting_error()
        await trio.lowlevel.checkpoint()
        return self.client, self.generation

    async def restarted_since(self, generation: int) -> bool:
        """After a call to ``generation`` found the runtime unreachable: True once a newer
        runtime is up (worth one more try), False when the sandbox was not seen dying."""
        if self.generation == generation and not self.restarting:
            with trio.move_on_after(NOTICE_S):
                await self._crashed.wait()
        if self.restarting:
            with trio.move_on_after(RESTART_WAIT_S):
                await self._settled.wait()
            if self.restarting or self.generation == generation:
                raise restarting_error()
        return self.generation != generation


def _unreachable(exc: RuntimeClientError) -> bool:
    return exc.status == 0 and exc.code in ("unreachable", "timeout")


class SupervisedRuntime:
    """A :class:`~amicable_agent.loop.api.RuntimeClient` that follows restarts (module
    docstring); every method of the current client, retried once across a restart."""

    def __init__(self, slot: RuntimeSlot) -> None:
        self._slot = slot

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name == "archive":  # a stream: not retried, but not sent to a dead runtime
            client = self._slot.client
            if client is None or self._slot.restarting:
                raise restarting_error()
            return client.archive

        async def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in (0, 1):
                client, generation = await self._slot.usable()
                try:
                    return await getattr(client, name)(*args, **kwargs)
                except RuntimeClientError as exc:
                    if attempt or not _unreachable(exc):
                        raise
                    if not await self._slot.restarted_since(generation):
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

        return call

    @asynccontextmanager
    async def open_exec_stream(self, command: str, **kwargs: Any) -> AsyncIterator[Any]:
        """The current runtime's exec stream; opening it is retried once across a restart
        (output already streamed is never replayed)."""
        async with AsyncExitStack() as stack:
            for attempt in (0, 1):
                client, generation = await self._slot.usable()
                try:
                    items = await stack.enter_async_context(
                        client.open_exec_stream(command, **kwargs)
                    )
                    break
                except RuntimeClientError as exc:
                    if attempt or not _unreachable(exc):
                        raise
                    if not await self._slot.restarted_since(generation):
                        raise
            yield items


async def supervise(
    watcher: StopWatcher,
    handle: Callable[[], SandboxHandle | None],
    slot: RuntimeSlot,
    *,
    busy: Callable[[], bool],
    restart: Callable[[], Awaitable[None]],
    stage: Callable[[SandboxStage, str], Awaitable[None]],
) -> None:
    """Watch the session's sandbox; restart it when it dies while ``busy()``. Returns when
    the session should close (it died unused, or every restart failed).

    Args:
        handle: the current handle (``restart`` replaces it).
        restart: ensures the sandbox and opens a client into ``slot``.

    Cancellation: stops watching; a restart in progress is cancelled with it.
    """
    restarts: list[float] = []
    while True:
        current = handle()
        if current is None:
            return
        await watcher.wait_stopped(current.sandbox_id)
        if not busy():
            log.info("sandbox %s stopped with nobody using it", current.sandbox_id)
            return
        slot.crashed()
        now = trio.current_time()
        restarts = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(restarts) > RESTART_BUDGET:
            await stage("failed", "The sandbox keeps stopping; reopen the project to retry")
            slot.gave_up()
            return
        log.warning("sandbox %s stopped while in use; restarting it", current.sandbox_id)
        if not await _restart_with_backoff(restart, stage):
            slot.gave_up()
            return


async def _restart_with_backoff(
    restart: Callable[[], Awaitable[None]],
    stage: Callable[[SandboxStage, str], Awaitable[None]],
) -> bool:
    reason = ""
    for attempt, delay in enumerate(RESTART_BACKOFF_S, start=1):
        await trio.sleep(delay)
        await stage(
            "starting_runtime",
            f"The sandbox stopped unexpectedly; restarting it ({attempt}/{len(RESTART_BACKOFF_S)})",
        )
        try:
            await restart()
        except (SandboxProvisionError, trio.TooSlowError, RuntimeClientError) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or "it did not start in time"
            log.warning("restart %d of the sandbox failed: %s", attempt, reason)
            continue
        await stage("ready", "Workspace ready (restarted)")
        return True
    await stage("failed", f"The sandbox stopped and could not be restarted: {reason}")
    return False
