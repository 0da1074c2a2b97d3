"""Taking a project's snapshot out of its sandbox, and restoring it into a new one.

:meth:`Snapshots.take` runs after each checkpoint: the sandbox bundles the commits made since
the stored chain's head (:func:`._snapshot_scripts.bundle_script`), the agent reads the parts
through the file API with a cap on every read and on the total, and hands the file to the
:class:`~amicable_agent.snapshots.SnapshotStore`, which verifies it before storing it. A
sandbox whose history does not continue the stored one (it started over from the template)
is never stored over it (``diverged``).

:meth:`Snapshots.restore` runs while a sandbox is provisioned, before the preview is shown:
when the stored head is not in the sandbox's history, every bundle of the chain is written
into the sandbox a part at a time and applied, ``HEAD`` and the files become the snapshot's,
and dependencies are installed only when ``package.json``/``package-lock.json`` differ from
what the sandbox had (the template's, for a new sandbox).

One project's takes and restores run one at a time on this replica.
"""

from __future__ import annotations

import logging
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING, Literal

import attrs
import trio

from amicable_agent.errors import RuntimeClientError, SnapshotError
from amicable_agent.snapshots.bundle import check_snapshot_header, parse_header

from ._git_scripts import GIT_ENV, GIT_MISSING_EXIT
from ._snapshot_scripts import (
    BUNDLE_DIR,
    FIRST_PART,
    RESTORE_DIR,
    BundleOutput,
    bundle_script,
    check_script,
    parse_bundle,
    part_path,
    restore_script,
    split_script,
)
from .checkpoints import INSTALL_COMMAND, INSTALL_TIMEOUT_S

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from amicable_protocol.messages import SandboxStage

    from amicable_agent.loop.api import RuntimeClient
    from amicable_agent.snapshots import SnapshotStore
    from amicable_agent.store import SnapshotRecord

log = logging.getLogger(__name__)

DependencyOutcome = Literal["unchanged", "installed", "failed"]


@attrs.frozen
class Restored:
    """What :meth:`Snapshots.restore` did.

    Attributes:
        head: the commit the sandbox now has.
        bundles: how many bundles were applied.
        bytes: their total size.
        dependencies: whether the install command ran.
    """

    head: str
    bundles: int
    bytes: int
    dependencies: DependencyOutcome


def check_stored_header(record: SnapshotRecord, first: bytes) -> None:
    """The start of a stored bundle must be a snapshot bundle of the record's head.

    Raises:
        SnapshotError: ``storage``, saying which snapshot and what is wrong.
    """
    where = f"snapshot {record.seq} of {record.project_id}"
    try:
        _, head = check_snapshot_header(parse_header(first), base=record.base_sha)
    except SnapshotError as exc:
        raise SnapshotError("storage", f"{where} is not a usable bundle: {exc.detail}") from exc
    if head != record.head_sha:
        raise SnapshotError(
            "storage", f"{where} holds {head}, not its recorded head {record.head_sha}"
        )


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


class Snapshots:
    """Snapshots of projects through their sandboxes' runtimes.

    Args:
        store: where snapshots are kept.
        install_command: run after a restore that changed the dependencies.
        install_timeout_s: its deadline.

    Cancellation: a cancelled take stores nothing (a half-read bundle is dropped); a
    cancelled restore leaves the sandbox without the stored head, so the next provisioning
    restores again. Commands cut in the sandbox are killed by the runtime.
    """

    def __init__(
        self,
        store: SnapshotStore,
        *,
        install_command: str = INSTALL_COMMAND,
        install_timeout_s: float = INSTALL_TIMEOUT_S,
    ) -> None:
        self.store = store
        self._install_command = install_command
        self._install_timeout_s = install_timeout_s
        self._locks: dict[str, trio.Lock] = {}
        #: Project -> (the base, what the bundle script printed) of a bundle a checkpoint's
        #: exec already made (:meth:`preparer`).
        self._prepared: dict[str, tuple[str | None, BundleOutput]] = {}

    def preparer(self, project_id: str) -> BundlePreparer:
        """The :class:`~.checkpoints.AfterCommit` that makes the next snapshot's bundle in
        the checkpoint's own exec, so :meth:`take` only reads it."""
        return BundlePreparer(self, project_id)

    @asynccontextmanager
    async def _locked(self, project_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(project_id, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            stats = lock.statistics()
            if not stats.locked and stats.tasks_waiting == 0:
                self._locks.pop(project_id, None)

    async def _exec(self, runtime: RuntimeClient, script: str) -> str:
        timeout_s = self.store.config.timeout_s
        try:
            result = await runtime.exec(script, env=GIT_ENV, timeout_s=timeout_s)
        except RuntimeClientError as exc:
            raise SnapshotError("failed", f"the sandbox did not run git: {exc}") from exc
        if result.exit_code == GIT_MISSING_EXIT and "not installed" in result.stderr:
            raise SnapshotError("failed", "git is not installed in the sandbox")
        if result.timed_out or result.exit_code != 0:
            detail = (result.stderr or result.stdout).strip()[-400:]
            raise SnapshotError("failed", detail or f"git exited with {result.exit_code}")
        return result.stdout

    # --- take ---------------------------------------------------------------------------

    async def take(self, project_id: str, runtime: RuntimeClient) -> SnapshotRecord | None:
        """Store the commits the sandbox made since the last snapshot.

        Returns:
            The new record, or None when there was nothing new.

        Raises:
            SnapshotError: ``diverged`` (the sandbox's history does not continue the stored
                one: nothing stored), ``too_large``, ``invalid_bundle``, ``conflict``,
                ``storage``, ``failed``.
        """
        async with self._locked(project_id):
            prepared = self._prepared.pop(project_id, None)
            base = await self.store.head(project_id)
            ready = None
            if prepared is not None and prepared[0] == base:
                ready = prepared[1] if prepared[1].state in ("ready", "same", "none") else None
            try:
                return await self._take(project_id, runtime, base, ready)
            except SnapshotError as exc:
                if exc.code not in ("conflict", "failed") or (exc.code == "failed" and not ready):
                    raise
                if exc.code == "failed":  # the prepared bundle is gone (another sandbox?)
                    log.info("bundling %s again: the prepared bundle failed: %s", project_id, exc)
                    return await self._take(project_id, runtime, base)
            # another replica moved the chain: once more from the stored head
            chain = await self.store.chain(project_id)
            return await self._take(project_id, runtime, chain[-1].head_sha if chain else None)

    async def _take(
        self,
        project_id: str,
        runtime: RuntimeClient,
        base: str | None,
        prepared: BundleOutput | None = None,
    ) -> SnapshotRecord | None:
        out = prepared or parse_bundle(await self._exec(runtime, bundle_script(base)))
        if out.state in ("none", "same"):
            return None
        if out.state == "diverged":
            raise SnapshotError(
                "diverged",
                f"the sandbox's history does not continue the stored one (at {base})",
            )
        if out.state != "ready":
            raise SnapshotError("failed", out.detail or f"the sandbox answered {out.state}")
        async with self.store.spool() as path:
            data = await self._copy_out(runtime, path)
            return await self.store.add(project_id, path, base=base, data=data)

    async def _copy_out(self, runtime: RuntimeClient, path: Path) -> bytes | None:
        """Read the bundle into ``path``: its one part when small (the common case: its
        bytes are returned too), else split first (None)."""
        config = self.store.config
        try:
            data, _ = await runtime.read_file(f"/{FIRST_PART}", max_bytes=config.part_bytes)
        except RuntimeClientError as exc:
            if exc.code != "too_large":
                raise SnapshotError("failed", f"cannot read the bundle: {exc}") from exc
        else:
            await trio.to_thread.run_sync(_append, path, data)
            return data
        out = parse_bundle(
            await self._exec(
                runtime,
                split_script(part_bytes=config.part_bytes, max_bytes=config.max_bundle_bytes),
            )
        )
        if out.state == "too_large":
            raise SnapshotError("too_large", f"{out.size} bytes, over {config.max_bundle_bytes}")
        if out.state != "ready":
            raise SnapshotError("failed", out.detail or f"the sandbox answered {out.state}")
        total = 0
        for name in out.parts:
            try:
                data, _ = await runtime.read_file(
                    f"/{BUNDLE_DIR}/{name}", max_bytes=config.part_bytes
                )
            except RuntimeClientError as exc:
                raise SnapshotError("failed", f"cannot read the bundle: {exc}") from exc
            total += len(data)
            if total > config.max_bundle_bytes:
                raise SnapshotError("too_large", f"over {config.max_bundle_bytes} bytes")
            await trio.to_thread.run_sync(_append, path, data)
        return None

    # --- restore ------------------------------------------------------------------------

    async def restore(
        self,
        project_id: str,
        runtime: RuntimeClient,
        on_stage: Callable[[SandboxStage, str], Awaitable[None]] | None = None,
    ) -> Restored | None:
        """Bring the stored history into the sandbox when it does not have it.

        Returns:
            What was restored, or None when there is no snapshot or the sandbox is current.

        Raises:
            SnapshotError: ``storage`` (a stored bundle is missing or damaged: nothing in the
                sandbox changed), ``failed`` (the sandbox refused it).
        """
        async with self._locked(project_id):
            self._prepared.pop(project_id, None)  # made in a sandbox this one replaces
            chain = await self.store.chain(project_id)
            if not chain:
                return None
            head = chain[-1].head_sha
            state = (await self._exec(runtime, check_script(head))).strip().rpartition(" ")[2]
            if state == "current":
                return None
            if on_stage is not None:
                await on_stage("restoring", "Restoring your project and its history…")
            try:  # parts an earlier, cut restore left
                await runtime.delete(f"/{RESTORE_DIR}", recursive=True)
            except RuntimeClientError as exc:
                if exc.code != "not_found":
                    raise SnapshotError("failed", f"cannot prepare the restore: {exc}") from exc
            size = 0
            for record in chain:
                size += await self._copy_in(runtime, record)
            out = await self._exec(runtime, restore_script([r.seq for r in chain], head))
            dependencies: DependencyOutcome = "unchanged"
            if "deps 1" in out.splitlines():
                dependencies = await self._install(runtime)
            log.info(
                "restored %s from %d snapshot(s), %d bytes, at %s (dependencies %s)",
                project_id, len(chain), size, head, dependencies,
            )  # fmt: skip
            return Restored(head, len(chain), size, dependencies)

    async def _copy_in(self, runtime: RuntimeClient, record: SnapshotRecord) -> int:
        """Write the stored bundle of ``record`` into the sandbox, a part at a time: its
        header must carry the recorded head (checked before anything is written), its bytes
        the recorded digest (checked after the last part, before anything is applied)."""
        size = 0
        async with aclosing(self.store.read(record)) as parts:
            index = 0
            async for part in parts:
                if index == 0:
                    check_stored_header(record, part)
                try:
                    await runtime.write_file(part_path(record.seq, index), part)
                except RuntimeClientError as exc:
                    raise SnapshotError("failed", f"cannot write the snapshot: {exc}") from exc
                size += len(part)
                index += 1
        return size

    async def _install(self, runtime: RuntimeClient) -> DependencyOutcome:
        try:
            result = await runtime.exec(self._install_command, timeout_s=self._install_timeout_s)
        except RuntimeClientError as exc:
            log.warning("dependency install after a snapshot restore failed: %s", exc)
            return "failed"
        if result.exit_code != 0:
            log.warning("dependency install after a snapshot restore exited %s", result.exit_code)
            return "failed"
        try:
            await runtime.preview_restart()  # the dev server picks up the new dependencies
        except RuntimeClientError as exc:
            log.warning("could not restart the dev server after a restore: %s", exc)
        return "installed"


class BundlePreparer:
    """Makes a project's next snapshot bundle inside the checkpoint commit's exec (an
    :class:`~.checkpoints.AfterCommit`): the bundle of the commits after the stored head,
    which :meth:`Snapshots.take` then reads without running git in the sandbox again. A
    bundle made against a head that has moved on by then is ignored (take makes its own)."""

    def __init__(self, snapshots: Snapshots, project_id: str) -> None:
        self._snapshots = snapshots
        self._project_id = project_id
        self._base: str | None = None

    async def script(self) -> str | None:
        try:
            self._base = await self._snapshots.store.head(self._project_id)
        except SnapshotError as exc:  # the take reports it
            log.debug("no bundle with the checkpoint of %s: %s", self._project_id, exc)
            return None
        return bundle_script(self._base)

    def printed(self, stdout: str) -> None:
        self._snapshots._prepared[self._project_id] = (self._base, parse_bundle(stdout))
