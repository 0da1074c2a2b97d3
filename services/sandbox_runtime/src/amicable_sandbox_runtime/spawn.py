"""Spawning the dev server, without trio: ``serve`` starts it before importing trio.

Importing trio takes a good part of the runtime's start-up, and on a cold start the dev
server's own start is the critical path. So ``__main__`` spawns the dev server first with
:func:`spawn_dev_server` (plain :mod:`subprocess`), and the supervisor adopts that process
as its first run (:class:`~amicable_sandbox_runtime.supervisor.PreviewSupervisor`, argument
``spawned``). Everything here is shared with the supervisor's later spawns, so the first run
and every restart get the same command, environment and process group; and ``npm run``
commands skip npm's own start-up (:func:`npm_run`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from .config import RuntimeConfig

#: Never handed to commands or the dev server: the runtime's own credentials.
PRIVATE_ENV = ("AMICABLE_RUNTIME_TOKEN", "AMICABLE_RUNTIME_TOKEN_FILE")
#: A command that runs the workspace's own ``.venv`` (relative: an interpreter named by an
#: absolute path, e.g. ``/srv/agent/.venv/bin/python``, is not the workspace's).
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


def dev_server(config: RuntimeConfig) -> tuple[str, dict[str, str]]:
    """The dev server's shell command and environment, decided now (at every start).

    The environment is :func:`child_env` plus where the server must listen. A command of the
    form ``npm run NAME [-- ARGS]`` is run as npm would run it (:func:`npm_run`), without
    npm's own start-up, when the workspace's ``package.json`` makes that exact.
    """
    assert config.preview_cmd is not None
    env = child_env(
        {
            "AMICABLE_PREVIEW_HOST": config.preview_host,
            "AMICABLE_PREVIEW_PORT": str(config.preview_port),
        }
    )
    direct = npm_run(config.preview_cmd, config.workspace, env)
    if direct is None:
        return config.preview_cmd, env
    command, npm_env = direct
    return command, {**env, **npm_env}


#: ``npm run NAME`` / ``npm run-script NAME``, optionally ``-- ARGS`` (shell text).
_NPM_RUN = re.compile(r"\s*npm\s+run(?:-script)?\s+([\w:.@/-]+)(?:\s+--(?:\s+(.*?))?)?\s*", re.S)
#: Shell syntax in ARGS that would make the command more than one npm invocation.
_SHELL_CONTROL = re.compile(r"[;&|<>()`\n]")


def npm_run(
    command: str, workspace: Path, env: dict[str, str]
) -> tuple[str, dict[str, str]] | None:
    """``npm run NAME -- ARGS`` as the shell command npm would run, and the variables to add.

    npm spends 0.3-0.45 s of CPU starting before it runs a script, on every dev-server start.
    What it then does for a script is simple: ``node_modules/.bin`` first on ``PATH``, the
    script with the arguments appended, through ``sh -c``, with ``npm_lifecycle_event``,
    ``npm_lifecycle_script``, ``npm_package_json``, ``npm_package_name`` and
    ``npm_package_version`` set. This does the same, reading ``package.json`` each time (a
    project whose script the model changed runs the new one). Returns ``None`` (run npm
    itself) whenever that would not be exact: another command shape, npm options, shell
    control characters in the arguments, no readable ``package.json``, no such script (npm
    says so in its own words), or ``pre``/``post`` scripts around it.
    """
    match = _NPM_RUN.fullmatch(command)
    if match is None:
        return None
    name, args = match.group(1), match.group(2) or ""
    if _SHELL_CONTROL.search(args):
        return None
    manifest = workspace / "package.json"
    try:
        package = json.loads(manifest.read_bytes())
    except (OSError, ValueError):
        return None
    scripts = package.get("scripts") if isinstance(package, dict) else None
    if not isinstance(scripts, dict) or f"pre{name}" in scripts or f"post{name}" in scripts:
        return None
    script = scripts.get(name)
    if not isinstance(script, str) or not script.strip():
        return None
    added = {
        "PATH": f"{workspace / 'node_modules' / '.bin'}{os.pathsep}{env.get('PATH', os.defpath)}",
        "npm_lifecycle_event": name,
        "npm_lifecycle_script": script,
        "npm_package_json": str(manifest),
    }
    for key in ("name", "version"):
        if isinstance(package.get(key), str):
            added[f"npm_package_{key}"] = package[key]
    return (f"{script} {args}" if args else script), added


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
    command, env = dev_server(config)
    return subprocess.Popen(
        ["sh", "-c", command],
        cwd=config.workspace,
        env=env,
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


def kill_children() -> int:
    """SIGKILL every child of this process still running, with its process group (each
    child the runtime starts leads a session of its own); how many. Reads ``/proc``.

    The last word of ``__main__``: whatever interrupted the runtime (a signal before trio's
    receiver was up, even one landing inside the dev server's spawn), nothing it started
    outlives it.
    """
    me, killed = os.getpid(), 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) < 2 or int(fields[1]) != me or fields[0] == b"Z":
            continue
        pid = int(entry.name)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # not a group leader: itself only
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
        killed += 1
    return killed
