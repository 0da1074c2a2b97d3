"""``init-workspace``: copy a template (``amicable_templates``), add its prepared dependencies.

The browser stacks' runtime-error bridge is not in their folders: it is written from its one
source (``amicable_templates.BRIDGE_SOURCE``) at each manifest's ``[files] bridge`` path.

The dependencies (``node_modules`` for ``npm`` templates, ``.venv`` for ``python`` ones) come
from a cache prepared once per (template, lockfile sha256) — ``npm ci``, or a virtualenv
filled from a hash-pinned ``requirements.lock`` — under a file lock (concurrent callers wait
for the first), then copied into the workspace with ``cp -a --reflink=auto``: copy-on-write
clones where the filesystem has them (btrfs, XFS), plain copies otherwise (ext4). Every
workspace owns its files, so a write in one project never changes a byte of another project
or of the cache (hard links did). ``--hardlink`` keeps the old hard links for the one case
where they are safe: an image that holds exactly one workspace next to its cache.

A copied virtualenv keeps working: its ``bin/python`` links the base interpreter by absolute
path, and the templates run its tools as modules (``.venv/bin/python -m uvicorn``), never
through the console scripts whose shebangs name the cache's path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from amicable_templates import DEFAULT_TEMPLATE, Template, get_template, registry
from amicable_templates import TemplateError as RegistryError

from .errors import TemplateError
from .procs import kill_group

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

__all__ = ["DEFAULT_CACHE_DIR", "DEFAULT_TEMPLATE", "init_workspace", "template_ids"]

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "amicable" / "node_modules"
_LOCK_POLL_S = 0.2
_NOT_COPIED = (
    "node_modules", "dist", ".vite", ".venv", "__pycache__", ".next", ".svelte-kit",
    ".react-router", "build", ".astro", "template.toml",
)  # fmt: skip
#: Files whose presence means a workspace already holds a project (never copied over).
_PROJECT_MARKERS = ("package.json", "requirements.lock", "pyproject.toml")


def template_ids() -> list[str]:
    """Ids of the bundled templates, in the editor's order."""
    return list(registry().ids)


def template_of(template_id: str) -> Template:
    """The registry's template.

    Raises:
        TemplateError: unknown id.
    """
    try:
        return get_template(template_id)
    except RegistryError as exc:
        raise TemplateError(str(exc)) from None


def copy_template(template_id: str, dest: Path) -> bool:
    """Copy the template into ``dest`` unless it already holds a project, and write the
    runtime-error bridge (one source for every stack) at the template's ``[files] bridge``.

    Returns:
        ``True`` when files were copied, ``False`` when ``dest`` held a project.
    """
    template = template_of(template_id)
    if any((dest / marker).exists() for marker in _PROJECT_MARKERS):
        return False
    shutil.copytree(
        template.directory, dest, ignore=shutil.ignore_patterns(*_NOT_COPIED), dirs_exist_ok=True
    )
    bridge = template.bridge_source()
    if template.bridge and bridge is not None:  # the one source, at the stack's path
        target = dest / template.bridge
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bridge)
    return True


def cache_key(template_id: str, project: Path) -> str:
    """``<template>-<first 16 hex of sha256(lockfile)>``.

    Raises:
        TemplateError: the project has no lockfile.
    """
    lock = project / template_of(template_id).lockfile
    try:
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise TemplateError(f"{lock} is missing; dependencies cannot be cached") from None
    return f"{template_id}-{digest[:16]}"


@contextlib.asynccontextmanager
async def _file_lock(path: Path, log: Callable[[str], None]) -> AsyncIterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log(f"waiting for another process preparing {path.stem} …")
                    waited = True
                await trio.sleep(_LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


async def _run(argv: list[str], cwd: Path) -> int:
    """Run in its own process group; the group is killed when cancelled or done."""
    proc = await trio.lowlevel.open_process(argv, cwd=cwd, start_new_session=True)
    try:
        return await proc.wait()
    finally:
        with trio.CancelScope(shield=True):
            kill_group(proc.pid)
            await proc.wait()


def _install_argv(template: Template, staging: Path) -> list[list[str]]:
    """The commands that fill ``staging`` with the template's locked dependencies."""
    if template.deps_kind == "npm":
        return [["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]]
    venv = str(staging / ".venv")
    # the base interpreter: a venv made from the runtime's own venv would point into it
    base = getattr(sys, "_base_executable", sys.executable)
    uv = shutil.which("uv")
    if uv:
        return [
            [uv, "venv", "--quiet", "--python", base, venv],
            [uv, "pip", "install", "--quiet", "--python", f"{venv}/bin/python",
             "--require-hashes", "--no-deps", "-r", template.lockfile],
        ]  # fmt: skip
    return [
        [base, "-m", "venv", venv],
        [f"{venv}/bin/python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--require-hashes", "--no-deps", "-r", template.lockfile],
    ]  # fmt: skip


async def ensure_cache(
    template_id: str, project: Path, cache_dir: Path, log: Callable[[str], None] = print
) -> Path:
    """The cache entry (a dir with the dependencies) for the project's lockfile; build if
    missing.

    Raises:
        TemplateError: the install failed.
    """
    template = template_of(template_id)
    key = cache_key(template_id, project)
    entry = cache_dir / key
    if (entry / template.deps_dir).is_dir():
        return entry
    cache_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a local mkdir
    async with _file_lock(cache_dir / f"{key}.lock", log):
        if (entry / template.deps_dir).is_dir():
            return entry  # prepared by whoever held the lock before us
        staging = cache_dir / f".{key}.staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in template.manifest_files:
            shutil.copy2(project / name, staging / name)
        for argv in _install_argv(template, staging):
            log(f"preparing dependencies into the cache ({key}): {' '.join(argv[:3])} …")
            code = await _run(argv, cwd=staging)
            if code != 0:
                shutil.rmtree(staging, ignore_errors=True)
                raise TemplateError(f"{argv[0]} {argv[1]} failed with exit code {code}")
        os.replace(staging, entry)
    return entry


def _clear(path: Path) -> None:
    """Remove ``path`` whatever it is, never following a symlink."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


async def copy_node_modules(
    entry: Path,
    dest: Path,
    log: Callable[[str], None] = print,
    *,
    hardlink: bool = False,
    name: str = "node_modules",
) -> None:
    """Copy ``entry/<name>`` to ``dest/<name>`` (reflinks where possible).

    ``dest/<name>`` appears complete or not at all (built under another name, then
    renamed): the dev-server supervisor starts its command once it exists.

    Args:
        hardlink: hard-link instead (copy across filesystems); only for a single workspace.
        name: the dependency directory (``node_modules`` or ``.venv``).

    Raises:
        TemplateError: copying failed.
    """
    src, target = entry / name, dest / name
    staging = dest / f".{name.lstrip('.')}.amicable-tmp"
    _clear(staging)
    if hardlink:
        if await _run(["cp", "-al", str(src), str(staging)], cwd=dest) == 0:
            os.replace(staging, target)
            log(f"linked {name} from {entry}")
            return
        _clear(staging)
        log(f"hard links not possible (another filesystem?); copying {name} …")
    if await _run(["cp", "-a", "--reflink=auto", str(src), str(staging)], cwd=dest) != 0:
        _clear(staging)
        raise TemplateError(f"could not copy {src} to {target}")
    os.replace(staging, target)
    if not hardlink:
        log(f"copied {name} from {entry}")


async def init_workspace(
    dest: Path,
    template_id: str = DEFAULT_TEMPLATE,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    log: Callable[[str], None] = print,
    *,
    hardlink: bool = False,
) -> None:
    """Make ``dest`` a ready-to-run project: template files plus its dependencies.

    An existing project is never overwritten; existing dependencies are kept.

    Args:
        hardlink: hard-link the dependencies from the cache (see the module docstring).

    Raises:
        TemplateError: unknown template, missing lockfile or a failed install.
    """
    template = template_of(template_id)
    dest.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a local mkdir
    if copy_template(template_id, dest):
        log(f"copied template {template_id!r} into {dest}")
    else:
        log(f"{dest} already holds a project; keeping its files")
    if (dest / template.deps_dir).exists():
        log(f"{template.deps_dir} already present")
        return
    entry = await ensure_cache(template_id, dest, cache_dir, log)
    await copy_node_modules(entry, dest, log, hardlink=hardlink, name=template.deps_dir)
