"""Best-effort entry points for the session: sync after a turn, never failing the turn.

The session calls :func:`sync_after_turn` in a background task it owns once a turn has
ended (QA passed, failed or was skipped). Progress and failure are reported through the
two callbacks (the session turns them into ``update_file`` and ``error`` messages); no
exception other than cancellation leaves this function.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol.messages import ErrorData, MessageType, TextData

from amicable_agent.errors import AgentError

from .errors import GitSyncError
from .workspace import open_workspace

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from amicable_protocol.messages import ServerData

    from amicable_agent.sandboxes.base import SandboxHandle

    from .commits import TurnSummary
    from .engine import GitSync
    from .records import ProjectRef, SyncResult

log = logging.getLogger(__name__)

PROGRESS_TEXT = "Committing changes to GitLab..."
#: Deadline of the sync after a turn and of the INIT restore: the session's next queued turn
#: waits for them, so a hanging GitLab must not hold it for long (a small project's fetch,
#: commit and push take seconds; three push attempts fit easily).
TURN_SYNC_TIMEOUT_S = 180.0
HOOK_TIMEOUT_S = 120.0


def message_callbacks(
    send: Callable[[MessageType, ServerData], Awaitable[None]],
) -> tuple[Callable[[str], Awaitable[None]], Callable[[str], Awaitable[None]]]:
    """``(on_progress, on_error)`` for :func:`sync_after_turn` that send ``update_file``
    ``{text}`` and ``error {error: "git_sync_failed: …"}`` through ``send`` (e.g.
    ``session.send``)."""

    async def on_progress(text: str) -> None:
        await send(MessageType.UPDATE_FILE, TextData(text))

    async def on_error(text: str) -> None:
        await send(MessageType.ERROR, ErrorData(error=text))

    return on_progress, on_error


async def best_effort(
    what: str, fn: Callable[..., Awaitable[Any]], *args: Any, timeout_s: float = HOOK_TIMEOUT_S
) -> bool:
    """Run a project hook (``git_sync.project_created`` …) under a deadline; log failures.

    Returns whether it succeeded. Cancellation propagates.
    """
    try:
        with trio.fail_after(timeout_s):
            await fn(*args)
    except trio.TooSlowError:
        log.warning("GitLab %s took over %.0fs", what, timeout_s)
    except GitSyncError as exc:
        log.warning("GitLab %s failed: %s", what, exc.detail or exc.code)
    except Exception:  # best effort: never fail the project operation
        log.exception("GitLab %s crashed", what)
    else:
        return True
    return False


async def sync_after_turn(
    git_sync: GitSync,
    project: ProjectRef,
    handle: SandboxHandle,
    turn: TurnSummary,
    *,
    on_progress: Callable[[str], Awaitable[None]],
    on_error: Callable[[str], Awaitable[None]],
    timeout_s: float = TURN_SYNC_TIMEOUT_S,
) -> SyncResult | None:
    """Commit and push the sandbox after a turn; report instead of raising.

    Args:
        git_sync: the service's :class:`GitSync`.
        project: the project (its current slug and name).
        handle: the session's sandbox.
        turn: the turn's texts and QA outcome (the commit message is built from it).
        on_progress: called once with :data:`PROGRESS_TEXT` before the sync starts.
        on_error: called with ``"git_sync_failed: <detail>"`` if the sync fails.
        timeout_s: overall deadline.

    Returns:
        The result, or None when the sync failed (and ``on_error`` was called).

    Cancellation: the running git command is killed; nothing is reported.
    """
    await on_progress(PROGRESS_TEXT)
    try:
        with trio.fail_after(timeout_s):
            async with open_workspace(handle) as workspace:
                result = await git_sync.sync_turn(project, workspace, turn)
    except trio.TooSlowError:
        detail = f"the sync took over {timeout_s:.0f}s"
    except GitSyncError as exc:
        detail = exc.detail or exc.code
    except AgentError as exc:
        detail = str(exc)
    except Exception as exc:  # best effort: a sync bug must never end the session
        log.exception("git sync of %s crashed", project.project_id)
        detail = type(exc).__name__
    else:
        if result.pushed:
            log.info("pushed %s for %s", result.commit_sha, project.project_id)
        return result
    log.warning("git sync of %s failed: %s", project.project_id, detail)
    await on_error(f"git_sync_failed: {detail}")
    return None


async def prepare_sandbox(
    git_sync: GitSync,
    project: ProjectRef,
    handle: SandboxHandle,
    *,
    restored: bool = False,
    timeout_s: float = TURN_SYNC_TIMEOUT_S,
) -> None:
    """INIT step (best effort): a sandbox without a baseline is restored from the branch when
    it has commits (a reset sandbox must not overwrite the project), and an empty repository
    gets the sandbox as its baseline commit. Failures are logged, never raised.

    ``restored``: the sandbox was just restored from the project's snapshot, which is the
    source of truth (GitLab is a mirror and may be behind): the branch's head becomes the
    sandbox's baseline instead, so the next sync pushes what GitLab is missing.

    Cancellation: the running git command is killed.
    """

    async def steps() -> None:
        async with open_workspace(handle) as workspace:
            if restored:
                await git_sync.adopt_remote_head(project, workspace)
            else:
                pulled = await git_sync.restore_if_fresh(project, workspace)
                if pulled is not None:
                    log.info("restored %s from GitLab at %s", project.project_id, pulled.remote_sha)
            await git_sync.bootstrap_if_empty(project, workspace)

    await best_effort("sandbox preparation", steps, timeout_s=timeout_s)
