"""Running one local sandbox: its runtime process, its network, its limits, its disk quota.

Isolated (bubblewrap), a start goes:

1. bubblewrap makes the namespaces and the filesystem view (:mod:`.isolation`), reports
   the sandbox's first pid on a pipe and waits on another;
2. the backend puts that pid into the sandbox's cgroup and sets its rlimits (:mod:`.limits`)
   — nothing has run inside yet — and lets it go;
3. inside, our setup script adds the ``prohibit`` routes and drops every capability, then
   executes the runtime, which starts the dev server (ports 8888 and 3000 inside);
4. meanwhile ``pasta`` attaches to the namespace and forwards two free host loopback ports
   to them (:mod:`.network`); the sandbox counts as started once the runtime wrote its
   ready file and its forwarded port accepts connections;
5. while it runs, the disk watchdog (:mod:`.watchdog`) measures its directory.

Without isolation the runtime is a plain process of the agent's user, on ports it picks
itself (no limits but the disk watchdog).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from amicable_agent.errors import ConfigError, SandboxProvisionError

from . import network
from .isolation import (
    HOME,
    OWNER_ENV,
    RUN_DIR,
    WORKSPACE,
    IsolationTools,
    SandboxFilesystem,
    bwrap_argv,
    find_tools,
    prepare_filesystem,
    probe,
)
from .limits import (
    Cgroups,
    SandboxLimits,
)
from .procs import free_port, read_capped, run_process_group, sweep_leftovers
from .readiness import exit_reason
from .sandbox import SandboxView, runtime_env
from .watchdog import disk_usage, free_bytes, watch_disk

if TYPE_CHECKING:
    from typing import BinaryIO

    from amicable_agent.leash import LeashedProcess

    from .isolation import IsolationMode
    from .limits import SandboxCgroup
    from .sandbox import LocalSandbox

log = logging.getLogger(__name__)

#: Deadline for the runtime's ready file (and, isolated, its forwarded port).
RUNTIME_START_S = 60.0
_POLL_S = 0.02


@attrs.frozen
class Isolation:
    """What an isolated start needs, prepared once per backend."""

    tools: IsolationTools
    filesystem: SandboxFilesystem
    cgroups: Cgroups
    blocked: tuple[str, ...]

    def describe(self) -> str:
        """One line: how sandboxes are isolated and limited here."""
        return (
            "bubblewrap (own user, PID, IPC, UTS, network namespaces; only the workspace "
            f"writable) + pasta (no route to this host); limits: {self.cgroups.describe()}"
        )


NOT_ISOLATED_WARNING = (
    "AMICABLE_LOCAL_ISOLATION=none: sandboxes run as plain processes of this user, with its "
    "files, its environment's allow-list and its network (the agent's port, the store, other "
    "sandboxes). Use this only where every project's code is trusted."
)


async def prepare_isolation(
    mode: IsolationMode, runtime_command: tuple[str, ...], system_dir: Path
) -> Isolation | None:
    """Resolve ``mode`` on this machine: an :class:`Isolation` for ``bwrap`` (``auto`` where
    it works), None for ``none`` (logged as a warning).

    Raises:
        ConfigError: ``auto`` or ``bwrap`` on a machine that cannot isolate (with what to
            install, or how to opt out explicitly).
    """
    if mode == "none":
        log.warning(NOT_ISOLATED_WARNING)
        return None
    tools = find_tools()
    reason = tools if isinstance(tools, str) else await probe(tools)
    if reason is not None or isinstance(tools, str):
        raise ConfigError(
            f"sandbox isolation is not available here: {reason}. Install bubblewrap, passt, "
            "iproute2 and util-linux (`make up` does), or set AMICABLE_LOCAL_ISOLATION=none "
            "to run sandboxes without isolation (unsafe)."
        )
    filesystem = await trio.to_thread.run_sync(prepare_filesystem, runtime_command, system_dir)
    cgroups = await trio.to_thread.run_sync(Cgroups.detect)
    blocked = await trio.to_thread.run_sync(network.read_local_addresses)
    iso = Isolation(tools, filesystem, cgroups, tuple(network.blocked_destinations(blocked)))
    log.info("sandboxes are isolated: %s", iso.describe())
    if cgroups.missing:
        log.warning(
            "no writable cgroup for %s here: sandboxes get rlimits/nice instead, which are "
            "weaker (RLIMIT_NPROC counts all of this user's tasks and does not bind root; "
            "RLIMIT_DATA is per process)",
            ", ".join(cgroups.missing),
        )
    return iso


@attrs.frozen
class RunnerConfig:
    """The backend settings a sandbox start uses."""

    runtime_command: tuple[str, ...]
    preview_base_domain: str
    hmr_client_port: int | None
    limits: SandboxLimits
    env_passthrough: tuple[str, ...] = ()
    isolation: Isolation | None = None
    agent_env: Mapping[str, str] = attrs.field(factory=lambda: dict(os.environ), repr=False)
    #: The agent's run directory (children recorded for the next start's sweep).
    record_dir: Path | None = None


def _view(config: RunnerConfig, sandbox: LocalSandbox) -> SandboxView:
    iso = config.isolation
    if iso is None:
        return SandboxView.host(sandbox, config.agent_env.get("PATH", "/usr/bin:/bin"))
    return SandboxView(
        workspace=WORKSPACE,
        home=HOME,
        run_dir=RUN_DIR,
        runtime_port=network.RUNTIME_PORT,
        preview_port=network.PREVIEW_PORT,
        path=iso.filesystem.path,
    )


def _prepare_dirs(sandbox: LocalSandbox) -> None:
    for path in (sandbox.workspace, sandbox.home, sandbox.run_dir):
        path.mkdir(parents=True, exist_ok=True)
    with suppress(FileNotFoundError):
        (sandbox.run_dir / "runtime.ready.json").unlink()  # a stale one (or a planted link)
    log_path = sandbox.root / "runtime.log"
    with suppress(OSError):
        if log_path.stat().st_size > 4 * 1024**2:  # keep one older log, not an ever-growing one
            log_path.replace(sandbox.root / "runtime.log.1")


#: Starts of an isolated sandbox when bubblewrap's own set-up fails (its messages start with
#: :data:`BWRAP_SETUP`), and the pause between them.
BWRAP_ATTEMPTS = 2
BWRAP_SETUP = "exited: bwrap: "
BWRAP_RETRY_DELAY_S = 0.5


async def run_sandbox(
    config: RunnerConfig,
    sandbox: LocalSandbox,
    *,
    workspace_complete: bool,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the sandbox until cancelled or its runtime exits; ``started()`` once the runtime
    answers on ``sandbox.runtime_port``.

    Raises:
        SandboxProvisionError: the runtime (or bubblewrap, or pasta) failed before that.

    Cancellation: the runtime's group gets SIGINT (it stops its dev server), then SIGKILL;
    isolated, the PID namespace takes every process of the sandbox with it, pasta is killed
    and the cgroup removed.
    """
    await trio.to_thread.run_sync(_prepare_dirs, sandbox)
    view = _view(config, sandbox)
    env = runtime_env(
        sandbox,
        view,
        config.agent_env,
        preview_base_domain=config.preview_base_domain,
        hmr_client_port=config.hmr_client_port,
        workspace_pending=not workspace_complete,
        passthrough=config.env_passthrough,
    )
    if config.isolation is not None:
        # bubblewrap's and pasta's own processes; bubblewrap unsets it for the sandbox
        env[OWNER_ENV] = f"{sandbox.root.parent}:{os.getpid()}"
    runtime = [*config.runtime_command, "--ready-file", view.ready_file]
    with (sandbox.root / "runtime.log").open("ab") as log_file:
        try:
            if config.isolation is None:
                await _run_plain(config, sandbox, runtime, env, log_file, task_status)
                return
            for attempt in range(1, BWRAP_ATTEMPTS + 1):
                try:
                    await _run_isolated(
                        config, config.isolation, sandbox, runtime, env, log_file, task_status
                    )
                    return
                except* SandboxProvisionError as group:  # raised inside a nursery
                    failed = group.exceptions[0]
                if attempt == BWRAP_ATTEMPTS or sandbox.serving or BWRAP_SETUP not in str(failed):
                    raise failed
                # bubblewrap failed setting up the namespaces (seen: its loopback's netlink
                # request refused under load): nothing ran yet, so try once more.
                log.warning("sandbox %s: %s; starting it again", sandbox.sandbox_id, failed)
                await trio.sleep(BWRAP_RETRY_DELAY_S)
        except* SandboxProvisionError as failed:  # raised inside a nursery: not a group
            raise failed.exceptions[0] from None
        finally:
            with trio.CancelScope(shield=True):
                await sweep_leftovers(sandbox.root, sandbox.marker)


async def _run_plain(
    config: RunnerConfig,
    sandbox: LocalSandbox,
    runtime: list[str],
    env: dict[str, str],
    log_file: BinaryIO,
    task_status: trio.TaskStatus[None],
) -> None:
    async with trio.open_nursery() as nursery:
        process: LeashedProcess = await nursery.start(
            partial(
                run_process_group,
                runtime,
                env,
                sandbox.workspace,
                log_file,
                lambda: sandbox.preview_pid,
                record_dir=config.record_dir,
            )
        )
        sandbox.pid = process.pid
        port = await _wait_ready_file(sandbox, process)
        sandbox.runtime_port = port
        await _serve(config, sandbox, process, nursery, task_status)


async def _run_isolated(
    config: RunnerConfig,
    iso: Isolation,
    sandbox: LocalSandbox,
    runtime: list[str],
    env: dict[str, str],
    log_file: BinaryIO,
    task_status: trio.TaskStatus[None],
) -> None:
    sandbox.runtime_port = network_port = free_port()
    cgroup = await trio.to_thread.run_sync(
        iso.cgroups.create, sandbox.root.name + "-" + sandbox.mark, config.limits
    )
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    argv = bwrap_argv(
        iso.tools,
        iso.filesystem,
        root=sandbox.root,
        command=runtime,
        blocked=iso.blocked,
        info_fd=info_w,
        block_fd=block_r,
        tmp_bytes=config.limits.tmp_bytes,
    )
    try:
        async with trio.open_nursery() as nursery:
            try:
                process: LeashedProcess = await nursery.start(
                    partial(
                        run_process_group,
                        argv,
                        env,
                        sandbox.workspace,
                        log_file,
                        lambda: None,  # the PID namespace takes the dev server along
                        pass_fds=(info_w, block_r),
                        record_dir=config.record_dir,
                    )
                )
            finally:
                os.close(info_w)
                os.close(block_r)
            sandbox.pid = process.pid
            child = await _read_child_pid(info_r, sandbox)
            sandbox.namespace_pid = child
            try:
                await trio.to_thread.run_sync(cgroup.attach, child, config.limits)
            except OSError as exc:
                with trio.move_on_after(2):  # gone already: bubblewrap says why in the log
                    await process.wait()
                reason = exit_reason(sandbox) if process.returncode is not None else str(exc)
                raise SandboxProvisionError(f"cannot limit the sandbox: {reason}") from exc
            os.write(block_w, b"1")  # limits in place: let the sandbox run
            forwards = [
                (network_port, network.RUNTIME_PORT),
                (sandbox.preview_port, network.PREVIEW_PORT),
            ]
            pasta_argv = network.pasta_argv(
                iso.tools.pasta, child, forwards, dns_forward=iso.filesystem.dns_forward
            )
            pasta_env = {OWNER_ENV: env[OWNER_ENV]}
            pasta: LeashedProcess = await nursery.start(
                partial(
                    run_process_group,
                    pasta_argv,
                    pasta_env,
                    sandbox.root,
                    log_file,
                    lambda: None,
                    record_dir=config.record_dir,
                )
            )
            nursery.start_soon(
                _stop_when_exits, pasta, process, sandbox, "its network (pasta) stopped"
            )
            await _wait_ready_file(sandbox, process)
            await _wait_accepts(network_port, process, sandbox)
            sandbox.memory_bytes = cgroup.memory_bytes
            await _serve(config, sandbox, process, nursery, task_status)
    finally:
        os.close(info_r)
        os.close(block_w)
        with trio.CancelScope(shield=True):
            await _remove_cgroup(cgroup)


async def _serve(
    config: RunnerConfig,
    sandbox: LocalSandbox,
    process: LeashedProcess,
    nursery: trio.Nursery,
    task_status: trio.TaskStatus[None],
) -> None:
    """Started: watch the disk quota, wait for the runtime to exit, then stop the rest."""
    root = sandbox.root.resolve()

    def record(usage: int) -> None:
        sandbox.disk_bytes = usage

    async def quota() -> None:
        usage = await watch_disk(
            config.limits.disk_bytes,
            partial(trio.to_thread.run_sync, disk_usage, root),
            partial(free_bytes, root),
            record,
        )
        log.warning(
            "sandbox %s uses %d MiB of disk, over its quota of %d MiB: stopping it",
            sandbox.sandbox_id, usage >> 20, config.limits.disk_bytes >> 20,
        )  # fmt: skip
        sandbox.stop_reason = "it went over its disk quota"
        sandbox.scope.cancel()

    nursery.start_soon(quota)
    sandbox.serving = True
    task_status.started()
    await process.wait()
    log.warning("sandbox %s runtime exited (%s)", sandbox.sandbox_id, process.returncode)
    nursery.cancel_scope.cancel()


async def _read_child_pid(info_r: int, sandbox: LocalSandbox) -> int:
    """The sandbox's first pid from bubblewrap's info pipe."""
    raw = b""
    with trio.move_on_after(RUNTIME_START_S):
        while b"}" not in raw and len(raw) < 4096:
            await trio.lowlevel.wait_readable(info_r)
            chunk = os.read(info_r, 4096)
            if not chunk:
                break
            raw += chunk
    try:
        pid = json.loads(raw)["child-pid"]
    except (ValueError, KeyError, TypeError):
        raise SandboxProvisionError(exit_reason(sandbox)) from None
    if not isinstance(pid, int):
        raise SandboxProvisionError("bubblewrap reported no sandbox pid")
    return pid


async def _wait_ready_file(sandbox: LocalSandbox, process: LeashedProcess) -> int:
    """The port in the runtime's ready file, once it is there."""
    ready = sandbox.run_dir / "runtime.ready.json"
    with trio.move_on_after(RUNTIME_START_S):
        # Another process writes the file: poll (no event to wait on).
        while process.returncode is None:
            try:
                info = json.loads(read_capped(ready, 4096))
                return int(info["port"])
            except (OSError, ValueError, KeyError, TypeError):
                await trio.sleep(_POLL_S)
        raise SandboxProvisionError(exit_reason(sandbox))
    raise SandboxProvisionError("the sandbox runtime did not start in time")


async def _wait_accepts(port: int, process: LeashedProcess, sandbox: LocalSandbox) -> None:
    """Wait until pasta forwards the runtime's port."""
    with trio.move_on_after(RUNTIME_START_S):
        while process.returncode is None:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(_POLL_S)
                continue
            await stream.aclose()
            return
        raise SandboxProvisionError(exit_reason(sandbox))
    raise SandboxProvisionError("the sandbox's network did not come up in time")


async def _stop_when_exits(
    helper: LeashedProcess, sandbox_process: LeashedProcess, sandbox: LocalSandbox, reason: str
) -> None:
    """Stop the sandbox when ``helper`` (pasta) exits, unless the sandbox ended first
    (then pasta lost its namespace, and the sandbox's own exit is the story)."""
    await helper.wait()
    with trio.move_on_after(1):
        await sandbox_process.wait()
    if sandbox_process.returncode is not None:
        return
    log.warning("sandbox %s: %s (exit %s)", sandbox.sandbox_id, reason, helper.returncode)
    sandbox.stop_reason = reason
    sandbox.scope.cancel()


async def _remove_cgroup(cgroup: SandboxCgroup) -> None:
    with trio.move_on_after(5):
        for _ in range(50):  # the last processes of a killed sandbox may take a moment
            await trio.to_thread.run_sync(cgroup.remove)
            if not any(p.exists() for p in cgroup.dirs):
                return
            await trio.sleep(0.1)
