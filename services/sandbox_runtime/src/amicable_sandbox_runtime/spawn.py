"""Spawning the dev server, without trio: ``serve`` starts it before importing trio.

Importing trio takes a good part of the runtime's start-up, and on a cold start the dev
server's own start is the critical path. So ``__main__`` spawns the dev server first with
:func:`spawn_dev_server` (plain :mod:`subprocess`), and the supervisor adopts that process
as its first run (:class:`~amicable_sandbox_runtime.supervisor.PreviewSupervisor`, argument
``spawned``). Everything here is shared with the supervisor's later spawns, so the first run
and every restart get the same command, environment and process group.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from .config import RuntimeConfig

#: Never handed to commands or the dev server: the runtime's own credentials.
PRIVATE_ENV = ("AMICABLE_RUNTIME_TOKEN", "AMICABLE_RUNTIME_TOKEN_FILE")
#: A command that runs the workspace's own ``.venv`` (relative, not e.g. the agent's
#: ``/…/.venv/bin/python`` in the local backend's wait loop).
_WORKSPACE_VENV = re.compile(r"(?:^|[\s;&|(])(?:\./)?\.venv/bin/")

#: ``os.environ``'s raw bytes mapping when :func:`child_env` last filtered it, and the result.
_env_cache: tuple[dict[bytes, bytes], dict[str, str]] | None = None


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: ours minus the runtime's secrets, plus ``extra``.

    Returns a new dict. Filtering ``os.environ`` decodes every variable, so the filtered
    copy is kept and reused while ``os.environ`` is unchanged (compared as raw bytes).
    """
    global _env_cache
    raw: dict[bytes, bytes] | None = getattr(os.environ, "_data", None)
    if _env_cache is None or raw is None or _env_cache[0] != raw:
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        _env_cache = (dict(raw) if raw is not None else {}, env)
    env = dict(_env_cache[1])
    if extra:
        env.update(extra)
    return env


def dev_server_env(config: RuntimeConfig) -> dict[str, str]:
    """The dev server's environment: :func:`child_env` plus where it must listen."""
    return child_env(
        {
            "AMICABLE_PREVIEW_HOST": config.preview_host,
            "AMICABLE_PREVIEW_PORT": str(config.preview_port),
        }
    )


def workspace_incomplete(command: str, workspace: Path) -> bool:
    """Whether ``command`` would start in a workspace that init-workspace is still filling.

    ``npm run dev`` there would only burn CPU the init and the real start need, and a Python
    template's command runs ``.venv/bin/python``: it waits for the ``.venv``.
    """
    if _WORKSPACE_VENV.search(command):  # the workspace's own venv, not an absolute one
        return not (workspace / ".venv").exists()
    return command.lstrip().startswith(("npm ", "node_modules/")) and not (
        (workspace / "package.json").exists() and (workspace / "node_modules").exists()
    )


def spawn_dev_server(config: RuntimeConfig) -> subprocess.Popen[bytes]:
    """Start ``config.preview_cmd`` through ``sh -c`` in its own session in the workspace,
    stdin from ``/dev/null``, stdout and stderr merged into one pipe.

    Raises:
        OSError: ``sh`` could not be started.
    """
    assert config.preview_cmd is not None
    return subprocess.Popen(
        ["sh", "-c", config.preview_cmd],
        cwd=config.workspace,
        env=dev_server_env(config),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def spawn_early(config: RuntimeConfig) -> subprocess.Popen[bytes] | None:
    """The dev server, spawned now when it may start now (a command, a complete workspace);
    else ``None`` and the supervisor starts it (after waiting for the workspace)."""
    if config.preview_cmd is None or workspace_incomplete(config.preview_cmd, config.workspace):
        return None
    try:
        return spawn_dev_server(config)
    except OSError:
        return None  # the supervisor's own spawn reports it
