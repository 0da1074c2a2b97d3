"""One local sandbox's state and how its runtime is launched (argv, bubblewrap, environment).

The dev-server command: the runtime's default is ``npm run dev -- --host H --port P``. Starting
npm costs about 0.3-0.45 s of CPU on every start before it runs the script, which is a third of
a bare Vite start. The backend hands the runtime :func:`dev_command` instead: it does what
``npm run dev`` does for a dev server (read ``scripts.dev`` from ``package.json``, put
``node_modules/.bin`` first on ``PATH``, run the script with the same appended arguments
through ``sh -c``) with a ~30 ms interpreter start. It reads ``package.json`` on every start,
so a project whose dev script the agent changed runs the new one, as with npm. (npm's
``npm_*`` variables are not set; dev servers do not read them.) For a workspace that
``init-workspace`` is still filling, the first start waits (bounded) until ``package.json``
and ``node_modules`` exist, as the runtime does for ``npm`` commands.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Literal

import attrs
import trio

from amicable_agent.sandboxes.base import SandboxHandle

#: Prints ``scripts.dev`` of ./package.json (exit 1 with a message when there is none).
_READ_DEV_SCRIPT = (
    'import json,sys;s=json.load(open("package.json")).get("scripts",{}).get("dev");'
    'sys.exit("package.json has no dev script") if not s else print(s)'
)


#: How long a dev server started with its workspace still being created waits for it.
WORKSPACE_WAIT_S = 120.0


@attrs.define
class LocalSandbox:
    """A sandbox's runtime process state (mutable; owned by the backend)."""

    sandbox_id: str
    root: Path
    token: str
    preview_port: int
    runtime_port: int = 0
    pid: int | None = None
    preview_pid: int | None = None
    ready: bool = False
    session_id: str | None = None
    last_active: float = attrs.field(factory=trio.current_time)
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    stopped: trio.Event = attrs.field(factory=trio.Event)

    @property
    def workspace(self) -> Path:
        """The project directory (``<root>/workspace``)."""
        return self.root / "workspace"

    @property
    def marker(self) -> bytes:
        """An environment entry only this sandbox's processes carry."""
        return f"AMICABLE_PREVIEW_PORT={self.preview_port}".encode()

    def handle(self, existed: bool) -> SandboxHandle:
        """The handle the agent uses to reach the runtime and the preview."""
        return SandboxHandle(
            sandbox_id=self.sandbox_id,
            runtime_url=f"http://127.0.0.1:{self.runtime_port}",
            runtime_token=self.token,
            preview_upstream=f"http://127.0.0.1:{self.preview_port}",
            existed=existed,
        )


def dev_command(python: str, host: str, port: int, *, wait_for_workspace_s: float = 0) -> str:
    """``npm run dev -- --host HOST --port PORT`` without npm (see the module docstring).

    Args:
        wait_for_workspace_s: first wait up to this long for ``package.json`` and
            ``node_modules`` (``node_modules`` appears whole, by a rename).
    """
    args = shlex.quote(f" --host {host} --port {port}")
    read = f"{shlex.quote(python)} -S -c {shlex.quote(_READ_DEV_SCRIPT)}"
    run = f'PATH="$PWD/node_modules/.bin:$PATH"; s=$({read}) && exec sh -c "$s"{args}'
    polls = int(wait_for_workspace_s / 0.05)
    if polls <= 0:
        return run
    return (
        f"i=0; while [ ! -d node_modules ] || [ ! -f package.json ]; do "
        f'[ "$i" -ge {polls} ] && break; i=$((i+1)); sleep 0.05; done; {run}'
    )


def runtime_argv(
    runtime_command: tuple[str, ...],
    sandbox: LocalSandbox,
    ready_file: Path,
    isolation: Literal["none", "bwrap"],
    extra_ro: list[Path],
) -> list[str]:
    """The runtime's argv, wrapped in bubblewrap when ``isolation`` is ``bwrap``."""
    runtime = [*runtime_command, "--ready-file", str(ready_file)]
    if isolation != "bwrap":
        return runtime
    bwrap = shutil.which("bwrap") or "bwrap"
    return [
        bwrap,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        *tmp_binds([Path(runtime_command[0]).parent.parent, *extra_ro]),
        "--bind", str(sandbox.root), str(sandbox.root),
        "--unshare-pid",
        "--unshare-ipc",
        "--die-with-parent",
        "--chdir", str(sandbox.workspace),
        "--",
        *runtime,
    ]  # fmt: skip


def tmp_binds(extra: list[Path]) -> list[str]:
    """Read-only binds for what the runtime needs that lives under /tmp (hidden by the
    sandbox's private /tmp): a checkout or virtualenv there, editable sources on sys.path,
    the node_modules cache."""
    wanted = {Path(sys.prefix), *extra}
    wanted.update(Path(p) for p in sys.path if p)
    bound: list[Path] = []
    for path in sorted({p.resolve() for p in wanted if p.exists()}):  # parents first
        inside_bound = any(path.is_relative_to(b) for b in bound)
        if path.is_relative_to("/tmp") and path != Path("/tmp") and not inside_bound:
            bound.append(path)
    return [arg for path in bound for arg in ("--ro-bind", str(path), str(path))]


def runtime_env(
    sandbox: LocalSandbox,
    *,
    preview_base_domain: str,
    hmr_client_port: int | None,
    workspace_pending: bool,
) -> dict[str, str]:
    """The runtime's environment: ours minus agent secrets, plus the sandbox's settings."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("AMICABLE_", "ANTHROPIC_")) or key.endswith("_TOKEN"):
            del env[key]  # no agent secrets inside the sandbox
    env.update(
        AMICABLE_RUNTIME_PORT="0",
        AMICABLE_RUNTIME_HOST="127.0.0.1",
        AMICABLE_WORKSPACE=str(sandbox.workspace),
        AMICABLE_RUNTIME_TOKEN=sandbox.token,
        AMICABLE_PREVIEW_HOST="127.0.0.1",
        AMICABLE_PREVIEW_PORT=str(sandbox.preview_port),
        AMICABLE_PREVIEW_LOG_PATH=str(sandbox.root / "preview.log"),
        __VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS="." + preview_base_domain,
        AMICABLE_HMR_PROTOCOL="ws",
        BROWSER="none",
    )
    env["AMICABLE_PREVIEW_CMD"] = dev_command(
        sys.executable,
        "127.0.0.1",
        sandbox.preview_port,
        wait_for_workspace_s=WORKSPACE_WAIT_S if workspace_pending else 0,
    )
    if hmr_client_port:
        env["AMICABLE_HMR_CLIENT_PORT"] = str(hmr_client_port)
    return env
