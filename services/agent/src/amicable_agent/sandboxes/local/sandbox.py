"""One local sandbox's state, its view of itself and its environment; the dev command.

The dev-server command is the template's registry ``[dev] command``. The Vite template's is
``npm run dev -- --host H --port P``: the runtime runs such commands as npm would, without
npm's 0.3-0.45 s start-up (``amicable_sandbox_runtime.spawn.npm_run``), and on a workspace
``init-workspace`` is still filling it first waits (bounded) for ``package.json`` and
``node_modules``. Other templates' commands run with ``node_modules/.bin`` first on ``PATH``,
the first start waiting here for the template's dependency directory (``node_modules`` or
``.venv``) (:func:`preview_command`).
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio
from amicable_templates import DEFAULT_TEMPLATE, get_template

from amicable_agent.sandboxes.base import SandboxHandle

from .environment import sandbox_env

if TYPE_CHECKING:
    from collections.abc import Mapping

#: How long a dev server started with its workspace still being created waits for it.
WORKSPACE_WAIT_S = 120.0


@attrs.define
class LocalSandbox:
    """A sandbox's runtime process state (mutable; owned by the backend)."""

    sandbox_id: str
    root: Path
    token: str
    preview_port: int
    #: the project's template (its dev command; a warm pool's sandboxes are of one template)
    template_id: str = DEFAULT_TEMPLATE
    runtime_port: int = 0
    pid: int | None = None
    preview_pid: int | None = None
    ready: bool = False
    session_id: str | None = None
    last_active: float = attrs.field(factory=trio.current_time)
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    mark: str = attrs.field(factory=lambda: secrets.token_hex(8))
    stopped: trio.Event = attrs.field(factory=trio.Event)
    #: isolated: the host pid of the sandbox's first process (its PID namespace's init)
    namespace_pid: int | None = None
    #: the runtime answers (set just before the start counts as done)
    serving: bool = False
    #: why the backend stopped it (disk quota, network gone), for the log and the user
    stop_reason: str | None = None
    #: last measured size of its directory
    disk_bytes: int = 0
    #: current memory use, when a memory cgroup counts it
    memory_bytes: Callable[[], int | None] = lambda: None

    @property
    def workspace(self) -> Path:
        """The project directory (``<root>/workspace``)."""
        return self.root / "workspace"

    @property
    def home(self) -> Path:
        """The sandbox's private home directory (``<root>/home``)."""
        return self.root / "home"

    @property
    def run_dir(self) -> Path:
        """Where the runtime writes its ready file and the dev-server log (``<root>/run``)."""
        return self.root / "run"

    @property
    def marker(self) -> bytes:
        """An environment entry only this sandbox's processes carry."""
        return f"AMICABLE_SANDBOX_MARK={self.mark}".encode()

    def handle(self, existed: bool) -> SandboxHandle:
        """The handle the agent uses to reach the runtime and the preview."""
        return SandboxHandle(
            sandbox_id=self.sandbox_id,
            runtime_url=f"http://127.0.0.1:{self.runtime_port}",
            runtime_token=self.token,
            preview_upstream=f"http://127.0.0.1:{self.preview_port}",
            existed=existed,
        )


def preview_command(template_id: str, *, wait_for_workspace_s: float = 0) -> str:
    """The dev-server command of a template: the registry's ``[dev] command`` (it reads
    ``AMICABLE_PREVIEW_HOST``/``_PORT``); an ``npm`` command as it is (the runtime runs it
    without npm and waits for the workspace itself), any other first waiting for the
    template's dependency directory."""
    template = get_template(template_id)
    if template.dev_command.startswith("npm "):
        return template.dev_command
    deps = shlex.quote(template.deps_dir)
    run = f'PATH="$PWD/node_modules/.bin:$PATH"; exec sh -c {shlex.quote(template.dev_command)}'
    polls = int(wait_for_workspace_s / 0.05)
    if polls <= 0:
        return run
    return (
        f"i=0; while [ ! -d {deps} ]; do "
        f'[ "$i" -ge {polls} ] && break; i=$((i+1)); sleep 0.05; done; {run}'
    )


@attrs.frozen
class SandboxView:
    """Where a sandbox's runtime finds its directories and ports, as seen from inside.

    Without isolation that is the host's view (the runtime picks a free port and reports it
    in its ready file); inside bubblewrap the workspace is ``/app`` and the ports are the
    fixed ones of a Kubernetes sandbox, forwarded from free host ports.
    """

    workspace: str
    home: str
    run_dir: str
    runtime_port: int
    preview_port: int
    path: str

    @classmethod
    def host(cls, sandbox: LocalSandbox, path: str) -> SandboxView:
        """The view of a sandbox run as a plain process."""
        return cls(
            workspace=str(sandbox.workspace),
            home=str(sandbox.home),
            run_dir=str(sandbox.run_dir),
            runtime_port=0,
            preview_port=sandbox.preview_port,
            path=path,
        )

    @property
    def ready_file(self) -> str:
        """The runtime's ready file (``{"port", "pid"}`` once it listens)."""
        return f"{self.run_dir}/runtime.ready.json"


def runtime_env(
    sandbox: LocalSandbox,
    view: SandboxView,
    agent_env: Mapping[str, str],
    *,
    preview_base_domain: str,
    hmr_client_port: int | None,
    workspace_pending: bool,
    passthrough: tuple[str, ...] = (),
) -> dict[str, str]:
    """The runtime's environment: an allow-list of the agent's (no agent secret, see
    :mod:`.environment`) plus the sandbox's own settings."""
    settings = {
        "AMICABLE_RUNTIME_PORT": str(view.runtime_port),
        "AMICABLE_RUNTIME_HOST": "127.0.0.1",
        "AMICABLE_WORKSPACE": view.workspace,
        "AMICABLE_RUNTIME_TOKEN": sandbox.token,
        "AMICABLE_PREVIEW_HOST": "127.0.0.1",
        "AMICABLE_PREVIEW_PORT": str(view.preview_port),
        "AMICABLE_PREVIEW_LOG_PATH": f"{view.run_dir}/preview.log",
        "AMICABLE_SANDBOX_MARK": sandbox.mark,
        "__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS": "." + preview_base_domain,
        "AMICABLE_HMR_PROTOCOL": "ws",
        "BROWSER": "none",
        "AMICABLE_TEMPLATE": sandbox.template_id,
        "AMICABLE_PREVIEW_CMD": preview_command(
            sandbox.template_id,
            wait_for_workspace_s=WORKSPACE_WAIT_S if workspace_pending else 0,
        ),
    }
    if hmr_client_port:
        settings["AMICABLE_HMR_CLIENT_PORT"] = str(hmr_client_port)
    return sandbox_env(agent_env, settings, path=view.path, home=view.home, passthrough=passthrough)
