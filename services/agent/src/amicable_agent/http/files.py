"""``/api/sandbox/{id}/…``: the editor Code pane's file API (upstream §2.5 shapes).

Paths are public workspace paths (``/src/App.tsx``); relative input gets a leading ``/``;
``..``, NUL and empty paths are 400 ``invalid_path`` (upstream answered 500); a path over
4096 bytes or with a name over 255 bytes (UTF-8) is 400 ``path_too_long``. Mutating
``/src/main.tsx``, ``/node_modules`` or ``/.git`` is 403 ``permission_denied``; deleting or
renaming away one of the template's protected files (``[files] protected``), or a folder
holding one, is 409 ``protected_file``.

The runtime's own errors keep their status and code (``not_found``, ``conflict``,
``too_large`` for content over its ``AMICABLE_MAX_FILE_BYTES`` …); only a runtime that does
not answer (or answers 5xx) is 502 ``sandbox_unreachable``, 504 ``sandbox_timeout`` when it
took too long.
"""

from __future__ import annotations

import hashlib
import posixpath
from contextlib import AsyncExitStack, aclosing
from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol import path_length_problem
from quart import Blueprint, Response, current_app, jsonify, request

from amicable_agent.errors import RuntimeClientError, SandboxError, UnsafeArchive
from amicable_agent.loop.protected import protected_paths, protected_problem, protected_under
from amicable_agent.sandboxes.archives import spool_checked, stream_file

from .authz import checked_project, requires
from .bodies import HttpError, json_object, optional_str

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from amicable_agent.loop.api import RuntimeClient

    from .state import AppState

MAX_TEXT_BYTES = 500_000
PROTECTED_FILES = frozenset({"/src/main.tsx"})
PROTECTED_DIRS = ("/node_modules", "/.git")
#: Left out of the Code pane's listings: the checkpoints' repository (as editors hide it).
HIDDEN_NAMES = frozenset({".git"})

bp = Blueprint("sandbox_fs", __name__)


def public_path(raw: str | None) -> str:
    """Normalise a client path to ``/a/b``; 400 ``invalid_path`` for ``..``/NUL/empty."""
    if raw is None or not raw.strip():
        raise HttpError(400, "invalid_path", "path is required")
    if "\x00" in raw:
        raise HttpError(400, "invalid_path", "path contains a NUL byte")
    too_long = path_length_problem(raw)
    if too_long is not None:
        raise HttpError(400, "path_too_long", too_long)
    parts = [p for p in raw.strip().split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise HttpError(400, "invalid_path", "path must not contain '..'")
    return "/" + "/".join(parts)


def mutable_path(raw: str | None) -> str:
    """:func:`public_path` for a mutation: not ``/``, not a protected file or directory."""
    path = public_path(raw)
    if path == "/":
        raise HttpError(400, "invalid_path", "cannot modify the workspace root")
    if path in PROTECTED_FILES or any(
        path == d or path.startswith(d + "/") for d in PROTECTED_DIRS
    ):
        raise HttpError(403, "permission_denied", f"{path} is managed by the platform")
    return path


async def _refuse_protected(project_id: str, runtime: RuntimeClient, path: str) -> None:
    """409 ``protected_file`` when removing ``path`` would lose a protected file that is
    there (a folder whose protected files are missing may go)."""
    project = await checked_project(project_id, "viewer")
    present = []
    for hit in protected_under(path, protected_paths(project.template_id)):
        try:
            await runtime.read_file(hit, max_bytes=1)
        except RuntimeClientError as exc:
            if exc.code == "not_found":
                continue
            if exc.code not in ("too_large", "is_directory"):
                raise _translate(exc) from exc
        present.append(hit)
    problem = protected_problem(path, tuple(present))
    if problem:
        raise HttpError(409, "protected_file", problem)


def _translate(exc: RuntimeClientError) -> HttpError:
    """The runtime's error for the editor: its own 4xx answer as it is (a 401 means our
    token is wrong: that is ours, not the caller's), the rest as the sandbox failing."""
    if 400 <= exc.status < 500 and exc.status != 401:
        return HttpError(exc.status, exc.code, exc.detail or None)
    if exc.status == 0 and exc.code == "timeout":
        return HttpError(504, "sandbox_timeout", "the sandbox runtime did not answer in time")
    return HttpError(502, "sandbox_unreachable", "the sandbox runtime did not answer")


async def _runtime(project_id: str) -> AbstractAsyncContextManager[RuntimeClient]:
    state: AppState = current_app.config["AMICABLE_STATE"]
    project = await checked_project(project_id, "viewer")
    try:
        return await state.manager.ensure_runtime(project)
    except SandboxError as exc:
        raise HttpError(503, "sandbox_unavailable", str(exc)) from exc
    except trio.TooSlowError as exc:
        raise HttpError(504, "sandbox_timeout", "the sandbox did not start in time") from exc


@bp.get("/api/sandbox/<project_id>/ls")
@requires("viewer")
async def ls(project_id: str) -> Response:
    """Direct children of ``path``: ``{path, entries: [{path, name, is_dir}]}`` (no ``.git``)."""
    path = public_path(request.args.get("path", "/"))
    async with await _runtime(project_id) as runtime:
        try:
            tree = await runtime.tree(path, depth=1, include_hidden=True)
        except RuntimeClientError as exc:
            raise _translate(exc) from exc
    entries: list[dict[str, Any]] = []
    for entry in tree.entries:
        full = "/" + entry.path.lstrip("/")
        if full == path or posixpath.dirname(full) != path:
            continue
        if posixpath.basename(full) in HIDDEN_NAMES:
            continue
        entries.append(
            {"path": full, "name": posixpath.basename(full), "is_dir": entry.kind == "dir"}
        )
    entries.sort(key=lambda e: e["name"])
    return jsonify({"path": path, "entries": entries})


@bp.get("/api/sandbox/<project_id>/read")
@requires("viewer")
async def read(project_id: str) -> Response:
    """``{path, content, sha256, is_binary}`` (content null for binary or > 500 kB)."""
    path = public_path(request.args.get("path"))
    async with await _runtime(project_id) as runtime:
        try:
            data, sha = await runtime.read_file(path)
        except RuntimeClientError as exc:
            raise _translate(exc) from exc
    sha = sha or hashlib.sha256(data).hexdigest()
    content: str | None = None
    if len(data) <= MAX_TEXT_BYTES and b"\x00" not in data:
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError:
            content = None
    return jsonify({"path": path, "content": content, "sha256": sha, "is_binary": content is None})


async def _write(runtime: RuntimeClient, path: str, content: str, expected: str | None) -> str:
    try:
        result = await runtime.write_file(path, content.encode("utf-8"), if_match=expected)
    except RuntimeClientError as exc:
        raise _translate(exc) from exc
    return result.sha256


@bp.put("/api/sandbox/<project_id>/write")
@requires("editor")
async def write(project_id: str) -> Response:
    """``{path, content, expected_sha256?}`` -> ``{path, sha256}``; 409 ``conflict``."""
    body = await json_object()
    path = mutable_path(optional_str(body, "path"))
    content = optional_str(body, "content") or ""
    expected = optional_str(body, "expected_sha256")
    async with await _runtime(project_id) as runtime:
        if expected:
            try:
                _, current = await runtime.read_file(path)
            except RuntimeClientError as exc:
                raise _translate(exc) from exc
            if current and current != expected:
                raise HttpError(409, "conflict", "the file changed since it was read")
        sha = await _write(runtime, path, content, expected or None)
    return jsonify({"path": path, "sha256": sha})


@bp.post("/api/sandbox/<project_id>/mkdir")
@requires("editor")
async def mkdir(project_id: str) -> Response:
    """``{path}`` -> ``{path}`` (``mkdir -p``)."""
    body = await json_object()
    path = mutable_path(optional_str(body, "path"))
    async with await _runtime(project_id) as runtime:
        try:
            await runtime.mkdir(path)
        except RuntimeClientError as exc:
            raise _translate(exc) from exc
    return jsonify({"path": path})


@bp.post("/api/sandbox/<project_id>/create")
@requires("editor")
async def create(project_id: str) -> Response:
    """``{path, kind: file|dir, content?}`` -> ``{path, sha256?}``."""
    body = await json_object()
    path = mutable_path(optional_str(body, "path"))
    kind = body.get("kind")
    if kind not in ("file", "dir"):
        raise HttpError(400, "invalid_kind", "kind must be 'file' or 'dir'")
    async with await _runtime(project_id) as runtime:
        if kind == "dir":
            try:
                await runtime.mkdir(path)
            except RuntimeClientError as exc:
                raise _translate(exc) from exc
            return jsonify({"path": path})
        sha = await _write(runtime, path, optional_str(body, "content") or "", None)
    return jsonify({"path": path, "sha256": sha})


@bp.post("/api/sandbox/<project_id>/rename")
@requires("editor")
async def rename(project_id: str) -> Response:
    """``{from, to}`` -> ``{from, to}``."""
    body = await json_object()
    src = mutable_path(optional_str(body, "from"))
    dst = mutable_path(optional_str(body, "to"))
    async with await _runtime(project_id) as runtime:
        if src != dst:
            await _refuse_protected(project_id, runtime, src)
        try:
            await runtime.move(src, dst)
        except RuntimeClientError as exc:
            raise _translate(exc) from exc
    return jsonify({"from": src, "to": dst})


@bp.delete("/api/sandbox/<project_id>/rm")
@requires("editor")
async def rm(project_id: str) -> Response:
    """``?path=&recursive=0|1`` -> ``{path}``; a missing path is not an error (``rm -f``)."""
    path = mutable_path(request.args.get("path"))
    recursive = request.args.get("recursive", "0") in ("1", "true")
    async with await _runtime(project_id) as runtime:
        await _refuse_protected(project_id, runtime, path)
        try:
            await runtime.delete(path, recursive=recursive)
        except RuntimeClientError as exc:
            if exc.status != 404:
                raise _translate(exc) from exc
    return jsonify({"path": path})


#: ``format`` query value -> (media type, file name suffix) of a project download.
DOWNLOAD_FORMATS = {"zip": ("application/zip", "zip"), "tar.gz": ("application/gzip", "tar.gz")}


@bp.get("/api/sandbox/<project_id>/download")
@requires("viewer")
async def download(project_id: str) -> Response:
    """``?format=zip|tar.gz`` (default zip): the project's files as an attachment named after
    its slug. Dependencies, VCS data, build output, ``.env*`` and caches are left out (the
    runtime's default archive excludes). The sandbox made the archive, so it is spooled and
    checked first (size, entry count, no entry or link leaving the project): 502
    ``too_large`` / ``unsafe_archive`` otherwise."""
    fmt = request.args.get("format", "zip")
    if fmt not in DOWNLOAD_FORMATS:
        raise HttpError(400, "invalid_request", "format must be zip or tar.gz")
    project = await checked_project(project_id, "viewer")
    async with AsyncExitStack() as stack:
        runtime = await stack.enter_async_context(await _runtime(project_id))
        chunks = await stack.enter_async_context(aclosing(runtime.archive(fmt)))
        try:
            spooled = await spool_checked(chunks, fmt)
        except RuntimeClientError as exc:
            raise _translate(exc) from exc
        except UnsafeArchive as exc:
            raise HttpError(
                502, exc.code, f"the sandbox's archive was refused: {exc.detail}"
            ) from exc

    media, suffix = DOWNLOAD_FORMATS[fmt]
    response = Response(stream_file(spooled), mimetype=media)
    response.headers["Content-Disposition"] = f'attachment; filename="{project.slug}.{suffix}"'
    response.headers["Cache-Control"] = "no-store"
    return response
