"""The routes of the runtime that quart serves (quart-trio): everything the route table of
``fastpath.py`` leaves to it. The work happens in other modules."""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from amicable_protocol._converter import structure, unstructure
from amicable_protocol.errors import ProtocolError
from amicable_protocol.http import ErrorBody
from amicable_protocol.runtime import (
    EditRequest,
    ExecOutput,
    ExecRequest,
    GlobRequest,
    GrepRequest,
    MoveRequest,
    PathRequest,
)
from quart import Response, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import PathConverter

from . import archive, execs, listing
from .errors import InvalidRequest, RuntimeApiError, Unauthorized
from .fastpath import PUBLIC_PATHS
from .files import WORKER_THREADS, Files

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from .config import RuntimeConfig
    from .paths import Jail
    from .supervisor import PreviewSupervisor

T = TypeVar("T")
_FIRST_FRAME_TIMEOUT_S = 30.0


class _AnyPath(PathConverter):
    """Like ``path`` but also matches empty and ``/``-leading paths (``/v1/files//src/a``)."""

    regex = ".*?"
    part_isolating = False


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(unstructure(obj)), status=status, mimetype="application/json")


def _error(code: str, detail: str, status: int) -> Response:
    return _json(ErrorBody(error=code, detail=detail), status)


def _flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes", "on")


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"query parameter {name} must be an integer") from None


async def _body(cls: type[T]) -> T:
    raw = await request.get_data()
    try:
        return structure(json.loads(raw or b"null"), cls, strict=True)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not JSON: {exc}") from None
    except ProtocolError as exc:
        raise InvalidRequest(exc.message) from None


def create_app(
    config: RuntimeConfig,
    jail: Jail,
    supervisor: PreviewSupervisor,
    *,
    files: Files | None = None,
    limiter: trio.CapacityLimiter | None = None,
) -> QuartTrio:
    """Build the ASGI app for one workspace.

    Args:
        config: runtime config (token, limits, exec defaults).
        jail: the workspace jail every path goes through.
        supervisor: the dev-server supervisor behind ``/v1/preview`` and ``/readyz``.
        files / limiter: the file API and worker-thread limiter, when shared with
            :class:`~amicable_sandbox_runtime.fastpath.FastRoutes` (one write lock).
    """
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_file_bytes
    app.url_map.merge_slashes = False
    app.url_map.converters["anypath"] = _AnyPath
    if files is None:
        files = Files(jail, max_file_bytes=config.max_file_bytes)
    if limiter is None:
        limiter = trio.CapacityLimiter(WORKER_THREADS)

    async def _thread(fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)

    expected = f"Bearer {config.token}".encode() if config.token else None

    def check_auth(path: str, header: str | None) -> None:
        # deny by default: only the health probes are public
        if path in PUBLIC_PATHS or expected is None:
            return
        if not hmac.compare_digest((header or "").encode(), expected):
            raise Unauthorized("missing or wrong bearer token")

    @app.before_request
    async def _auth_http() -> None:
        check_auth(request.path, request.headers.get("Authorization"))

    @app.before_websocket
    async def _auth_ws() -> None:
        check_auth(websocket.path, websocket.headers.get("Authorization"))

    @app.errorhandler(RuntimeApiError)
    async def _api_error(exc: RuntimeApiError) -> Response:
        return _error(exc.code, exc.detail, exc.status)

    @app.errorhandler(RequestEntityTooLarge)
    async def _too_large(exc: RequestEntityTooLarge) -> Response:
        return _error("too_large", f"body over {config.max_file_bytes} bytes", 413)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.code or 0, "http_error")
        return _error(code, exc.description or "", exc.code or 500)

    # --- files (GET/PUT: the route table of fastpath.py) -----------------------------------

    @app.delete("/v1/files/<anypath:path>")
    async def delete_file(path: str) -> Response:
        recursive = _flag("recursive")
        return _json(await _thread(lambda: files.delete(path, recursive=recursive)))

    @app.post("/v1/fs/move")
    async def move() -> Response:
        body = await _body(MoveRequest)
        return _json(await _thread(files.move, body.from_, body.to))

    @app.post("/v1/fs/mkdir")
    async def mkdir() -> Response:
        body = await _body(PathRequest)
        return _json(await _thread(files.mkdir, body.path))

    @app.post("/v1/fs/edit")
    async def edit() -> Response:
        body = await _body(EditRequest)
        return _json(
            await _thread(
                lambda: files.edit(
                    body.path, body.old_string, body.new_string, replace_all=body.replace_all
                )
            )
        )

    @app.get("/v1/fs/tree")
    async def tree() -> Response:
        path = request.args.get("path", "") or "/"
        depth = _int_arg("depth")
        hidden, skipped = _flag("include_hidden"), _flag("include_skipped")
        return _json(
            await _thread(
                lambda: listing.tree(
                    jail, path, depth=depth, include_hidden=hidden, include_skipped=skipped
                )
            )
        )

    @app.post("/v1/fs/glob")
    async def glob() -> Response:
        body = await _body(GlobRequest)
        return _json(await _thread(listing.glob, jail, body.pattern, body.path))

    @app.post("/v1/fs/grep")
    async def grep() -> Response:
        b = await _body(GrepRequest)
        return _json(
            await _thread(
                lambda: listing.grep(
                    jail,
                    b.pattern,
                    b.path,
                    glob_pattern=b.glob,
                    fixed_strings=b.fixed_strings,
                    max_results=b.max_results,
                )
            )
        )

    @app.get("/v1/archive")
    async def get_archive() -> Response:
        fmt = request.args.get("format", "tar.gz")
        if fmt not in archive.FORMATS:
            raise InvalidRequest(f"format must be one of {', '.join(archive.FORMATS)}")
        excludes = [] if _flag("no_default_excludes") else list(archive.DEFAULT_EXCLUDES)
        excludes += [p for p in request.args.getlist("exclude") if p]
        fh = await _thread(archive.build_archive, jail, excludes, fmt)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await _thread(fh.read, archive.CHUNK_BYTES):
                    yield chunk
            finally:
                fh.close()

        mimetype, suffix = archive.FORMATS[fmt]
        return Response(
            chunks(),
            mimetype=mimetype,
            headers={"Content-Disposition": f'attachment; filename="workspace.{suffix}"'},
        )

    # --- exec ---------------------------------------------------------------------------

    def exec_cwd(cwd: str | None) -> Path:
        return execs.resolve_cwd(jail, cwd)

    @app.websocket("/v1/exec/stream")
    async def exec_stream() -> None:
        first: str | bytes = ""
        with trio.move_on_after(_FIRST_FRAME_TIMEOUT_S):
            first = await websocket.receive()
        try:
            try:
                body = structure(json.loads(first), ExecRequest, strict=True)
            except (json.JSONDecodeError, TypeError) as exc:
                raise InvalidRequest(f"first frame is not a JSON exec request: {exc}") from None
            except ProtocolError as exc:
                raise InvalidRequest(exc.message) from None
            cwd = exec_cwd(body.cwd)
        except RuntimeApiError as exc:
            await websocket.send(json.dumps(unstructure(ErrorBody(exc.code, exc.detail))))
            await websocket.close(1008 if exc.status == 401 else 1003)
            return

        async def send(stream: execs.Stream, data: str) -> None:
            await websocket.send(json.dumps(unstructure(ExecOutput(stream=stream, data=data))))

        done = await execs.run_command(
            body,
            cwd=cwd,
            default_timeout_s=config.exec_timeout_s,
            max_output_chars=config.exec_max_output_chars,
            on_output=send,
        )
        await websocket.send(json.dumps(unstructure(done)))
        await websocket.close(1000)

    # --- dev server (status and restart: the route table of fastpath.py) ---------------------------------------------------------------------

    @app.get("/v1/preview/logs")
    async def preview_logs() -> Response:
        return _json(supervisor.logs(_int_arg("tail")))

    return app
