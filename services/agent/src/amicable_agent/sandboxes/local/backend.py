"""``LocalBackend``: sandboxes as local ``amicable-sandbox-runtime`` processes (embedded mode).

Each sandbox is a directory ``<data>/sandboxes/<sandbox id>`` (``workspace``, ``home``,
``run``) and one runtime process with a random bearer token; the runtime supervises Vite.
By default every sandbox runs isolated (bubblewrap + pasta, cgroup limits, a disk
watchdog: :mod:`.runner`, :mod:`.isolation`, :mod:`.network`, :mod:`.limits`,
:mod:`.watchdog`); ``isolation="none"`` runs plain processes. Processes are children of the
agent, each sandbox in its own process group, and stop with it; after a restart the next
``ensure`` brings the same workspace back. Sandboxes idle for ``idle_ttl_s`` are stopped
(not deleted).

Cold start, fastest first:

* **warm pool** (``warm_pool_size`` per template of ``warm_pool_templates``): sandboxes with
  the dev server already running; ``ensure`` for a new session of that template adopts one
  (its directory is linked under the new sandbox id);
* **spare workspace** (``spare_workspaces``, :mod:`.spares`, default template only): a complete project tree made
  in the background; ``ensure`` renames it into place and starts the runtime on it;
* otherwise the runtime's ``init-workspace`` (template copy + the project's own copy of a
  dependency cache prepared once per template and lockfile: ``npm ci``, or a ``.venv`` for a
  Python template) runs *while* the runtime process boots.
  The template is only ever copied into an empty workspace (the host never writes into a
  directory the sandbox filled).

Either way the runtime runs the template's dev command (:func:`.sandbox.preview_command`;
the Vite template's dev script without npm).

Other modules: :mod:`.sandbox` (a sandbox's state, view and environment),
:mod:`.environment` (the allow-list), :mod:`.procs` (process groups, leftover sweeps),
:mod:`.readiness` (is the dev server up), :mod:`.unshare` (workspaces from before private
node_modules), :mod:`.warm_pool`, :mod:`.spares`.
"""

from __future__ import annotations

import builtins  # noqa: TC003 - `list` is a method name here
import logging
import os
import secrets
import shutil
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import httpx
import trio
from amicable_templates import DEFAULT_TEMPLATE

from amicable_agent.errors import SandboxProvisionError
from amicable_agent.leash import sweep_run_dir
from amicable_agent.sandboxes.base import (
    SandboxHandle,
    SandboxInfo,
    StageCallback,
    ignore_stage,
    sandbox_id_for,
)

from .environment import inherited_env
from .isolation import OWNER_ENV, IsolationMode, compile_runtime_sources
from .limits import SandboxLimits
from .procs import free_port, host_pid, interrupt_group, kill_marked, kill_orphans, tail
from .readiness import restart_preview, wait_preview
from .runner import Isolation, RunnerConfig, prepare_isolation, run_sandbox
from .sandbox import LocalSandbox
from .spares import SpareWorkspaces
from .unshare import mark_private, unshare_node_modules
from .warm_pool import POOL_PREFIX, WarmPool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from amicable_agent.config import AgentConfig

__all__ = [
    "POOL_PREFIX",
    "LocalBackend",
    "LocalBackendConfig",
    "free_port",
    "idle_sandboxes",
    "open_local_backend",
]

log = logging.getLogger(__name__)

_TRASH_PREFIX = ".deleted-"


@attrs.frozen
class LocalBackendConfig:
    """Configuration of :class:`LocalBackend`.

    Attributes:
        data_dir: sandboxes live in ``<data_dir>/sandboxes``, the npm cache in
            ``<data_dir>/cache``.
        runtime_command: argv prefix of ``amicable-sandbox-runtime``.
        preview_base_domain: allowed as a host suffix by Vite.
        hmr_client_port: the preview router's port (the browser's HMR socket goes there).
        isolation: ``auto`` (the default: bubblewrap + pasta, refusing to start where
            that is not possible), ``bwrap`` (the same, required) or ``none`` (plain
            processes of the agent's user; a warning is logged). See :mod:`.isolation`.
        limits: memory, processes, CPU share and disk of each sandbox (:mod:`.limits`).
        env_passthrough: extra environment variable names sandboxes may see (besides the
            allow-list of :mod:`.environment`).
        warm_pool_size: sandboxes kept ready (dev server running) for new sessions, per
            template of ``warm_pool_templates``.
        warm_pool_templates: the templates with a warm pool (``AMICABLE_WARM_POOL_TEMPLATES``).
        spare_template: the template spare workspaces are made of (the default template).
        spare_workspaces: complete workspaces of the default template kept on disk for new
            sessions (no process; 0 disables).
        idle_ttl_s: stop a sandbox after this long without activity (0 = never).
        start_timeout_s: deadline for workspace creation + runtime + dev server.
        cache_dir: node_modules cache (default ``<data_dir>/cache``).
        refill_delay_s: wait this long after a warm sandbox or a spare was taken before
            making its replacement, so the refill does not compete with the adopted
            preview's first page loads for CPU.
    """

    data_dir: Path
    runtime_command: tuple[str, ...] = ("amicable-sandbox-runtime",)
    preview_base_domain: str = "preview.localhost"
    hmr_client_port: int | None = None
    isolation: IsolationMode = "auto"
    limits: SandboxLimits = attrs.field(factory=SandboxLimits)
    env_passthrough: tuple[str, ...] = ()
    warm_pool_size: int = 1
    warm_pool_templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
    spare_template: str = DEFAULT_TEMPLATE
    spare_workspaces: int = 1
    idle_ttl_s: float = 1800.0
    start_timeout_s: float = 600.0
    cache_dir: Path | None = None
    refill_delay_s: float = 5.0

    @classmethod
    def from_agent_config(cls, config: AgentConfig) -> LocalBackendConfig:
        """The local backend settings of an agent config."""
        return cls(
            data_dir=config.data_dir,
            runtime_command=config.runtime_command,
            preview_base_domain=config.preview_base_domain,
            hmr_client_port=config.preview_public_port,
            isolation=config.local_isolation,
            limits=SandboxLimits(
                memory_bytes=config.sandbox_memory_bytes,
                pids_max=config.sandbox_pids_max,
                cpu_weight=config.sandbox_cpu_weight,
                disk_bytes=config.sandbox_disk_bytes,
            ),
            env_passthrough=config.sandbox_env_passthrough,
            warm_pool_size=config.warm_pool_size,
            warm_pool_templates=config.pooled_templates,
            spare_template=config.template_id,
            spare_workspaces=config.spare_workspaces,
            idle_ttl_s=config.sandbox_idle_ttl_s,
            cache_dir=config.node_modules_cache_dir,
        )


class LocalBackend:
    """The embedded sandbox backend. Create with :func:`open_local_backend`.

    Cancellation: closing the backend stops every runtime (SIGINT so it stops its dev
    server, then SIGKILL to both process groups) and leaves the workspaces on disk.
    """

    def __init__(
        self, config: LocalBackendConfig, nursery: trio.Nursery, isolation: Isolation | None
    ) -> None:
        self._config = config
        self._nursery = nursery
        self._root = config.data_dir / "sandboxes"
        self._cache = config.cache_dir or config.data_dir / "cache"
        self.isolation = isolation
        self._runner = RunnerConfig(
            runtime_command=config.runtime_command,
            preview_base_domain=config.preview_base_domain,
            hmr_client_port=config.hmr_client_port,
            limits=config.limits,
            env_passthrough=config.env_passthrough,
            isolation=isolation,
            record_dir=run_dir(config.data_dir),
        )
        self._running: dict[str, LocalSandbox] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(5.0), trust_env=False)
        start, size, delay = self._start_pooled, config.warm_pool_size, config.refill_delay_s
        self.pools = {  # one warm pool per template of AMICABLE_WARM_POOL_TEMPLATES
            t: WarmPool(self._root, size, delay, partial(start, t), template_id=t)
            for t in dict.fromkeys(config.warm_pool_templates)
        }
        self.spares = SpareWorkspaces(
            self._root,
            config.spare_template,
            config.spare_workspaces,
            self._init_argv,
            config.refill_delay_s,
            self._init_env(),
        )

    # --- SandboxBackend ---------------------------------------------------------------

    async def ensure(
        self,
        session_id: str,
        *,
        project_id: str,
        template_id: str,
        on_stage: StageCallback = ignore_stage,
    ) -> SandboxHandle:
        """Reconnect to the running sandbox, restart it from its workspace, adopt a warm
        one, or create it (from a spare workspace or the template).

        Raises:
            SandboxProvisionError: with a reason for the user.
        """
        sandbox_id = sandbox_id_for(session_id)
        async with self._lock(sandbox_id):
            running = self._running.get(sandbox_id)
            if running is not None and running.ready:
                running.last_active = trio.current_time()
                await trio.lowlevel.checkpoint()
                return running.handle(existed=True)
            root = self._root / sandbox_id
            existed = await trio.to_thread.run_sync(_holds_project, root / "workspace")
            create_from: str | None = None
            if not existed:
                if template_id in self.pools:
                    adopted = self._adopt_warm(sandbox_id, root, template_id)
                    if adopted is not None:
                        adopted.session_id = session_id
                        await on_stage("starting_preview", "Using a prepared workspace")
                        return adopted.handle(existed=False)
                await on_stage("creating", "Creating the workspace from the template")
                if self.spares.take(template_id, root / "workspace"):
                    await trio.to_thread.run_sync(mark_private, root)
                else:
                    create_from = template_id
            try:
                with trio.fail_after(self._config.start_timeout_s):
                    sandbox = await self._start(
                        sandbox_id, root, on_stage, create_from=create_from, template=template_id
                    )
            except trio.TooSlowError as exc:
                raise SandboxProvisionError("the sandbox did not start in time") from exc
            sandbox.session_id = session_id
            # Vite's first page costs ~0.1 s of one-time work: let it run while the init
            # reply travels to the browser and the router resolves the preview host.
            self._nursery.start_soon(self._prime, sandbox)
            return sandbox.handle(existed=existed)

    async def lookup(self, sandbox_id: str) -> SandboxHandle | None:
        """The running sandbox's handle, or None."""
        await trio.lowlevel.checkpoint()
        sandbox = self._running.get(sandbox_id)
        if sandbox is None or not sandbox.ready:
            return None
        return sandbox.handle(existed=True)

    async def wait_stopped(self, sandbox_id: str) -> None:
        """Return once the sandbox running as ``sandbox_id`` now has stopped, however it
        stopped (at once when none runs). Sessions supervise their sandbox with it."""
        sandbox = self._running.get(sandbox_id)
        if sandbox is None:
            await trio.lowlevel.checkpoint()
            return
        await sandbox.stopped.wait()

    async def touch(self, sandbox_id: str) -> None:
        """Restart the idle clock."""
        await trio.lowlevel.checkpoint()
        sandbox = self._running.get(sandbox_id)
        if sandbox is not None:
            sandbox.last_active = trio.current_time()

    async def delete(self, sandbox_id: str) -> None:
        """Stop the sandbox and remove its workspace (idempotent).

        Waits for an ``ensure`` of the same sandbox in progress, so a delete never races a
        start into a half-removed workspace. The directory is first renamed out of the way
        (atomic), then removed: should the removal fail half-way, the id still has no
        workspace, so a project created again under the same id (an ``init`` naming a
        purged project) starts from the template instead of the deleted project's files.
        """
        async with self._lock(sandbox_id):
            await self.stop(sandbox_id)
            await trio.to_thread.run_sync(self._remove_sandbox_dir, sandbox_id)

    def remove_trash(self) -> None:
        """Remove what a deletion interrupted (e.g. by a stop of the agent) left behind, and
        stop sandboxes an agent that crashed left running."""
        if self.isolation is not None:
            stale = kill_orphans(OWNER_ENV, self._root)
            if stale:
                log.warning("stopped %d sandbox process groups a previous agent left", stale)
        if self._root.is_dir():
            for entry in self._root.glob(_TRASH_PREFIX + "*"):
                shutil.rmtree(entry, ignore_errors=True)

    def _remove_sandbox_dir(self, sandbox_id: str) -> None:
        link = self._root / sandbox_id
        target = link.resolve() if link.is_symlink() else link  # an adopted warm sandbox
        if link.is_symlink():
            link.unlink()
        if not target.exists():
            return
        trash = self._root / f"{_TRASH_PREFIX}{sandbox_id}-{secrets.token_hex(4)}"
        try:
            target.rename(trash)
        except OSError as exc:
            log.warning("cannot move sandbox %s aside for deletion: %s", sandbox_id, exc)
            trash = target
        shutil.rmtree(trash, ignore_errors=True)

    async def list(self) -> builtins.list[SandboxInfo]:
        """Running sandboxes and workspaces on disk."""

        def scan() -> list[str]:
            if not self._root.is_dir():
                return []
            return sorted(p.name for p in self._root.iterdir() if p.name.startswith("amicable-"))

        names = set(await trio.to_thread.run_sync(scan)) | set(self._running)
        now = trio.current_time()
        out = []
        for name in sorted(names):
            sb = self._running.get(name)
            out.append(
                SandboxInfo(
                    sandbox_id=name,
                    session_id=sb.session_id if sb else None,
                    project_id=sb.session_id if sb else None,
                    last_active_s=(now - sb.last_active) if sb else None,
                    ready=bool(sb and sb.ready),
                )
            )
        return out

    async def stop(self, sandbox_id: str) -> None:
        """Stop a sandbox's processes (the workspace stays)."""
        sandbox = self._running.get(sandbox_id)
        if sandbox is None:
            await trio.lowlevel.checkpoint()
            return
        sandbox.scope.cancel()
        with trio.CancelScope(shield=True):
            await sandbox.stopped.wait()

    async def aclose(self) -> None:
        """Stop every sandbox (the owning context manager calls this)."""
        for sandbox_id in list(self._running):
            await self.stop(sandbox_id)
        for sandbox in _warm(self.pools):
            sandbox.scope.cancel()
            with trio.CancelScope(shield=True):
                await sandbox.stopped.wait()
        with trio.CancelScope(shield=True):
            await self._http.aclose()

    def process_ids(self, sandbox_id: str) -> builtins.list[int]:
        """Host pids of a running sandbox's runtime group (bubblewrap's when isolated) and
        dev server, for diagnostics."""
        sandbox = self._running.get(sandbox_id)
        if sandbox is None:
            return []
        preview = sandbox.preview_pid
        if preview is not None and sandbox.namespace_pid is not None:
            preview = host_pid(preview, sandbox.namespace_pid)
        return [p for p in (sandbox.pid, preview) if p is not None]

    def statistics(self) -> dict[str, int]:
        """Running and warm sandbox counts, spare workspaces ready, and the memory (where a
        cgroup counts it) and disk the running and warm sandboxes use together."""
        sandboxes = [*self._running.values(), *_warm(self.pools)]
        return {
            "running": len(self._running),
            "warm": len(_warm(self.pools)),
            "spare": self.spares.statistics(),
            "memory_bytes": sum(s.memory_bytes() or 0 for s in sandboxes),
            "disk_bytes": sum(s.disk_bytes for s in sandboxes),
        }

    # --- processes --------------------------------------------------------------------

    def _lock(self, sandbox_id: str) -> trio.Lock:
        return self._locks.setdefault(sandbox_id, trio.Lock())

    def _init_argv(self, dest: Path, template_id: str) -> builtins.list[str]:
        return [
            *self._config.runtime_command,
            "init-workspace",
            str(dest),
            "--template",
            template_id,
            "--cache-dir",
            str(self._cache),
        ]

    def _init_env(self) -> dict[str, str]:
        """``init-workspace`` runs on the host (it fills the cache with the template's
        locked dependencies): the sandbox allow-list plus the user's ``PATH`` and ``HOME``
        (npm's cache and configuration), never the agent's secrets."""
        env = inherited_env(os.environ, self._config.env_passthrough)
        for name in ("PATH", "HOME"):
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    async def _start(
        self,
        sandbox_id: str,
        root: Path,
        on_stage: StageCallback,
        *,
        create_from: str | None = None,
        template: str = DEFAULT_TEMPLATE,
    ) -> LocalSandbox:
        """Start a sandbox's runtime; with ``create_from``, create its workspace from that
        template *while* the runtime process boots (its dev server is restarted once the
        workspace is complete), which hides the runtime's start-up time."""
        sandbox = LocalSandbox(
            sandbox_id=sandbox_id,
            root=root,
            token=secrets.token_urlsafe(32),
            preview_port=free_port(),
            template_id=create_from or template,
        )
        await trio.to_thread.run_sync(partial(sandbox.workspace.mkdir, parents=True, exist_ok=True))
        if create_from is None:
            await trio.to_thread.run_sync(unshare_node_modules, sandbox.workspace, root)
        init: trio.Process | None = None
        try:
            if create_from is not None:
                init = await self._spawn_init(sandbox, create_from)
            await on_stage("starting_runtime", "Starting the sandbox runtime")
            try:
                await self._nursery.start(self._run_sandbox, sandbox, create_from is None)
            except OSError as exc:
                raise SandboxProvisionError(f"cannot start the sandbox runtime: {exc}") from exc
            self._running[sandbox_id] = sandbox
            if init is not None:
                if await init.wait() != 0:
                    raise SandboxProvisionError(
                        "creating the workspace failed: " + tail(sandbox.root / "init.log")
                    )
                await trio.to_thread.run_sync(mark_private, root)
                await restart_preview(self._http, sandbox)
            await on_stage("starting_preview", "Starting the dev server")
            await wait_preview(self._http, sandbox, trust_port=init is None)
        except BaseException:
            with trio.CancelScope(shield=True):
                if init is not None and init.returncode is None:
                    await interrupt_group(init)
                await self.stop(sandbox_id)
                if create_from is not None:  # half a template is no project: start over next time
                    await trio.to_thread.run_sync(shutil.rmtree, sandbox.workspace, True)
            raise
        sandbox.ready = True
        sandbox.last_active = trio.current_time()  # a slow start is no idleness
        return sandbox

    async def _spawn_init(self, sandbox: LocalSandbox, template_id: str) -> trio.Process:
        argv = self._init_argv(sandbox.workspace, template_id)
        with (sandbox.root / "init.log").open("wb") as log_file:
            try:
                return await trio.lowlevel.open_process(
                    argv,
                    stdout=log_file,
                    stderr=log_file,
                    start_new_session=True,
                    env=self._init_env(),
                )
            except OSError as exc:
                raise SandboxProvisionError(f"cannot run the sandbox runtime: {exc}") from exc

    async def _run_sandbox(
        self,
        sandbox: LocalSandbox,
        workspace_complete: bool,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run one sandbox (:func:`.runner.run_sandbox`) until it stops; bookkeeping after.

        Raises:
            SandboxProvisionError: the sandbox stopped before its runtime answered.
        """
        try:
            with sandbox.scope:
                await run_sandbox(
                    self._runner, sandbox, workspace_complete=workspace_complete,
                    task_status=task_status,
                )  # fmt: skip
        finally:
            if self._running.get(sandbox.sandbox_id) is sandbox:
                del self._running[sandbox.sandbox_id]
            for pool in self.pools.values():
                pool.discard(sandbox)
            sandbox.ready = False
            sandbox.stopped.set()
        if not sandbox.serving:
            raise SandboxProvisionError(
                sandbox.stop_reason or "the sandbox was stopped while starting"
            )
        if sandbox.stop_reason:
            log.warning("sandbox %s stopped: %s", sandbox.sandbox_id, sandbox.stop_reason)

    # --- warm pool --------------------------------------------------------------------

    def _adopt_warm(self, sandbox_id: str, link: Path, template_id: str) -> LocalSandbox | None:
        sandbox = self.pools[template_id].take()
        if sandbox is None:
            return None
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link, ignore_errors=True)
        link.symlink_to(sandbox.root.name)
        sandbox.sandbox_id = sandbox_id
        sandbox.last_active = trio.current_time()
        self._running[sandbox_id] = sandbox
        return sandbox

    async def _start_pooled(self, template_id: str, name: str, root: Path) -> LocalSandbox:
        """Start a warm-pool sandbox and prime it before anyone waits; it is not listed
        as running until adopted."""
        try:
            with trio.fail_after(self._config.start_timeout_s):
                sandbox = await self._start(name, root, ignore_stage, create_from=template_id)
                await self._prime(sandbox)
        except trio.TooSlowError as exc:
            raise SandboxProvisionError("start timed out") from exc
        self._running.pop(name, None)
        return sandbox

    async def _prime(self, sandbox: LocalSandbox) -> None:
        """Request ``/`` once so the dev server's first-request work is done early."""
        with suppress(httpx.HTTPError):
            await self._http.get(f"http://127.0.0.1:{sandbox.preview_port}/")

    async def wait_pool_filled(self) -> None:
        """Wait until every warm pool holds ``warm_pool_size`` ready sandboxes."""
        for pool in self.pools.values():
            await pool.wait_filled()

    async def run_idle_reaper(self) -> None:
        """Stop sandboxes idle for longer than ``idle_ttl_s``."""
        ttl = self._config.idle_ttl_s
        if ttl <= 0:
            return
        while True:
            await trio.sleep(min(ttl / 4, 30.0))
            last_active = {k: v.last_active for k, v in self._running.items() if v.ready}
            for sandbox_id in idle_sandboxes(last_active, trio.current_time(), ttl):
                log.info("stopping idle sandbox %s", sandbox_id)
                await self.stop(sandbox_id)


def _holds_project(workspace: Path) -> bool:
    """Whether ``workspace`` is a project: it has a ``package.json``, or any file at all.

    A workspace with files but no ``package.json`` (the model deleted it) is still the
    project: the template is only ever copied into an empty directory, because the host
    must never write into a directory the sandbox filled (a planted symlink would redirect
    the copy).
    """
    if (workspace / "package.json").exists():
        return True
    try:
        return any(workspace.iterdir())
    except OSError:
        return False


def _warm(pools: dict[str, WarmPool]) -> list[LocalSandbox]:
    return [s for pool in pools.values() for s in pool.sandboxes]


def idle_sandboxes(last_active: dict[str, float], now: float, ttl_s: float) -> builtins.list[str]:
    """The ids whose last activity is more than ``ttl_s`` before ``now`` (0 = never idle)."""
    if ttl_s <= 0:
        return []
    return sorted(sid for sid, seen in last_active.items() if now - seen > ttl_s)


def run_dir(data_dir: Path) -> Path:
    """Where the agent records the children it runs (see :mod:`amicable_agent.leash`)."""
    return data_dir / "run"


def sweep_at_start(data_dir: Path) -> None:
    """End what an earlier agent on ``data_dir`` left running, before any sandbox starts:
    its recorded children (with their process groups) and, without isolation, the dev
    servers of its runtimes (marked processes working under the sandboxes directory).

    Raises:
        RunDirInUse: another live agent runs on ``data_dir``.
    """
    stopped = sweep_run_dir(run_dir(data_dir))
    sandboxes = data_dir / "sandboxes"
    if sandboxes.is_dir():
        stopped += kill_marked(str(sandboxes.resolve()), b"AMICABLE_SANDBOX_MARK=")
    if stopped:
        log.warning("stopped %d processes an earlier run on %s left running", stopped, data_dir)


@asynccontextmanager
async def open_local_backend(config: LocalBackendConfig) -> AsyncIterator[LocalBackend]:
    """Run a :class:`LocalBackend` (with its warm pool, spare workspaces and idle reaper)
    for the block.

    Raises:
        ConfigError: isolation was asked for (or left on ``auto``) where it cannot work.

    Cancellation: leaving the block stops every sandbox process; workspaces stay on disk.
    """
    await trio.to_thread.run_sync(sweep_at_start, config.data_dir)
    await trio.to_thread.run_sync(compile_runtime_sources, config.runtime_command)
    isolation = await prepare_isolation(
        config.isolation, config.runtime_command, config.data_dir / "sandbox-etc"
    )
    async with trio.open_nursery() as nursery:
        backend = LocalBackend(config, nursery, isolation)
        try:
            nursery.start_soon(trio.to_thread.run_sync, backend.remove_trash)
            await nursery.start(backend.spares.run)
            for pool in backend.pools.values():
                await nursery.start(pool.run)
            nursery.start_soon(backend.run_idle_reaper)
            yield backend
        finally:
            with trio.CancelScope(shield=True):
                await backend.aclose()
                if isolation is not None:
                    await trio.to_thread.run_sync(isolation.cgroups.remove_parents)
            nursery.cancel_scope.cancel()
