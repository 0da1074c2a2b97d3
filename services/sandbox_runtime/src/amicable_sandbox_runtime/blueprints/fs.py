"""Workspace file-system routes other than file read/write (those are the route table's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amicable_protocol.runtime import (
    EditRequest,
    GlobRequest,
    GrepRequest,
    MoveRequest,
    PathRequest,
)
from quart import Blueprint, request

from amicable_sandbox_runtime import listing

from ._shared import body, flag, int_arg, json_response, services

if TYPE_CHECKING:
    from quart import Response

blueprint = Blueprint("fs", __name__)


@blueprint.delete("/v1/files/<anypath:path>")
async def delete_file(path: str) -> Response:
    """``DELETE /v1/files/<path>[?recursive=1]`` → ``PathResult``."""
    recursive = flag("recursive")
    svc = services()
    return json_response(await svc.in_thread(lambda: svc.files.delete(path, recursive=recursive)))


@blueprint.post("/v1/fs/move")
async def move() -> Response:
    """``POST /v1/fs/move`` ``MoveRequest`` → ``PathResult``."""
    req = await body(MoveRequest)
    svc = services()
    return json_response(await svc.in_thread(svc.files.move, req.from_, req.to))


@blueprint.post("/v1/fs/mkdir")
async def mkdir() -> Response:
    """``POST /v1/fs/mkdir`` ``PathRequest`` → ``PathResult``."""
    req = await body(PathRequest)
    svc = services()
    return json_response(await svc.in_thread(svc.files.mkdir, req.path))


@blueprint.post("/v1/fs/edit")
async def edit() -> Response:
    """``POST /v1/fs/edit`` ``EditRequest`` → ``EditResult``."""
    req = await body(EditRequest)
    svc = services()
    return json_response(
        await svc.in_thread(
            lambda: svc.files.edit(
                req.path, req.old_string, req.new_string, replace_all=req.replace_all
            )
        )
    )


@blueprint.get("/v1/fs/tree")
async def tree() -> Response:
    """``GET /v1/fs/tree?path=&depth=&include_hidden=&include_skipped=`` → ``TreeResult``."""
    path = request.args.get("path", "") or "/"
    depth = int_arg("depth")
    hidden, skipped = flag("include_hidden"), flag("include_skipped")
    svc = services()
    return json_response(
        await svc.in_thread(
            lambda: listing.tree(
                svc.jail, path, depth=depth, include_hidden=hidden, include_skipped=skipped
            )
        )
    )


@blueprint.post("/v1/fs/glob")
async def glob() -> Response:
    """``POST /v1/fs/glob`` ``GlobRequest`` → ``GlobResult``."""
    req = await body(GlobRequest)
    svc = services()
    return json_response(await svc.in_thread(listing.glob, svc.jail, req.pattern, req.path))


@blueprint.post("/v1/fs/grep")
async def grep() -> Response:
    """``POST /v1/fs/grep`` ``GrepRequest`` → ``GrepResult``."""
    req = await body(GrepRequest)
    svc = services()
    return json_response(
        await svc.in_thread(
            lambda: listing.grep(
                svc.jail,
                req.pattern,
                req.path,
                glob_pattern=req.glob,
                fixed_strings=req.fixed_strings,
                max_results=req.max_results,
            )
        )
    )
