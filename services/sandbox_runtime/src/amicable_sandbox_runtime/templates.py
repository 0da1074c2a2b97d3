"""Workspace templates (package data) and ``init-workspace``: copy a template, add node_modules.

``node_modules`` comes from a cache prepared once per (template, ``package-lock.json`` sha256)
with ``npm ci`` under a file lock (concurrent callers wait for the first), then copied into
the workspace with ``cp -a --reflink=auto``: copy-on-write clones where the filesystem has
them (btrfs, XFS), plain copies otherwise (ext4). Every workspace owns its files, so a write
in one project never changes a byte of another project or of the cache (hard links did).
``--hardlink`` keeps the old hard links for the one case where they are safe: an image that
holds exactly one workspace next to its cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .errors import TemplateError
from .procs import kill_group

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

TEMPLATES_DIR = Path(__file__).parent / "templates"
DEFAULT_TEMPLATE = "vite"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "amicable" / "node_modules"
_LOCK_POLL_S = 0.2
_NOT_COPIED = ("node_modules", "dist", ".vite")


def template_ids() -> list[str]:
    """Ids of the bundled templates (directories with a ``package.json``)."""
    return sorted(p.name for p in TEMPLATES_DIR.iterdir() if (p / "package.json").is_file())


def template_path(template_id: str) -> Path:
    """The directory of a bundled template.

    Raises:
        TemplateError: unknown id.
    """
    if template_id not in template_ids():
        raise TemplateError(f"unknown template {template_id!r}; known: {', '.join(template_ids())}")
    return TEMPLATES_DIR / template_id


def copy_template(template_id: str, dest: Path) -> bool:
    """Copy the template into ``dest`` unless it already holds a project.

    Returns:
        ``True`` when files were copied, ``False`` when ``dest/package.json`` existed.
    """
    if (dest / "package.json").exists():
        return False
    shutil.copytree(
        template_path(template_id),
        dest,
        ignore=shutil.ignore_patterns(*_NOT_COPIED),
        dirs_exist_ok=True,
    )
    return True


def cache_key(template_id: str, project: Path) -> str:
    """``<template>-<first 16 hex of sha256(package-lock.json)>``.

    Raises:
        TemplateError: the project has no ``package-lock.json``.
    """
    lock = project / "package-lock.json"
    try:
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise TemplateError(f"{lock} is missing; node_modules cannot be cached") from None
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


async def ensure_cache(
    template_id: str, project: Path, cache_dir: Path, log: Callable[[str], None] = print
) -> Path:
    """The cache entry (a dir with ``node_modules``) for the project's lockfile; build if missing.

    Raises:
        TemplateError: ``npm ci`` failed.
    """
    key = cache_key(template_id, project)
    entry = cache_dir / key
    if (entry / "node_modules").is_dir():
        return entry
    cache_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a local mkdir
    async with _file_lock(cache_dir / f"{key}.lock", log):
        if (entry / "node_modules").is_dir():
            return entry  # prepared by whoever held the lock before us
        staging = cache_dir / f".{key}.staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(project / name, staging / name)
        log(f"installing dependencies into the cache ({key}) with npm ci …")
        code = await _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=staging)
        if code != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise TemplateError(f"npm ci failed with exit code {code}")
        os.replace(staging, entry)
    return entry


def _clear(path: Path) -> None:
    """Remove ``path`` whatever it is, never following a symlink."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


async def copy_node_modules(
    entry: Path, dest: Path, log: Callable[[str], None] = print, *, hardlink: bool = False
) -> None:
    """Copy ``entry/node_modules`` to ``dest/node_modules`` (reflinks where possible).

    ``dest/node_modules`` appears complete or not at all (built under another name, then
    renamed): the dev-server supervisor starts ``npm`` commands once it exists.

    Args:
        hardlink: hard-link instead (copy across filesystems); only for a single workspace.

    Raises:
        TemplateError: copying failed.
    """
    src, target = entry / "node_modules", dest / "node_modules"
    staging = dest / ".node_modules.amicable-tmp"
    _clear(staging)
    if hardlink:
        if await _run(["cp", "-al", str(src), str(staging)], cwd=dest) == 0:
            os.replace(staging, target)
            log(f"linked node_modules from {entry}")
            return
        _clear(staging)
        log("hard links not possible (another filesystem?); copying node_modules …")
    if await _run(["cp", "-a", "--reflink=auto", str(src), str(staging)], cwd=dest) != 0:
        _clear(staging)
        raise TemplateError(f"could not copy {src} to {target}")
    os.replace(staging, target)
    if not hardlink:
        log(f"copied node_modules from {entry}")


async def init_workspace(
    dest: Path,
    template_id: str = DEFAULT_TEMPLATE,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    log: Callable[[str], None] = print,
    *,
    hardlink: bool = False,
) -> None:
    """Make ``dest`` a ready-to-run project: template files plus ``node_modules``.

    An existing project (``package.json`` present) is never overwritten; existing
    ``node_modules`` are kept.

    Args:
        hardlink: hard-link ``node_modules`` from the cache (see the module docstring).

    Raises:
        TemplateError: unknown template, missing lockfile or a failed install.
    """
    dest.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a local mkdir
    if copy_template(template_id, dest):
        log(f"copied template {template_id!r} into {dest}")
    else:
        log(f"{dest} already holds a project; keeping its files")
    if (dest / "node_modules").exists():
        log("node_modules already present")
        return
    entry = await ensure_cache(template_id, dest, cache_dir, log)
    await copy_node_modules(entry, dest, log, hardlink=hardlink)
