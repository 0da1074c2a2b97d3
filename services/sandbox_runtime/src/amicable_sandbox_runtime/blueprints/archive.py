"""``GET /v1/archive``: the workspace as a streamed tar.gz or zip."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, Response, request

from amicable_sandbox_runtime import archive
from amicable_sandbox_runtime.errors import InvalidRequest

from ._shared import flag, services

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

blueprint = Blueprint("archive", __name__)


@blueprint.get("/v1/archive")
async def get_archive() -> Response:
    """``GET /v1/archive?format=&exclude=PAT&no_default_excludes=1``: the archive, streamed
    in chunks read by worker threads (the temporary file is closed when the stream ends)."""
    fmt = request.args.get("format", "tar.gz")
    if fmt not in archive.FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(archive.FORMATS)}")
    excludes = [] if flag("no_default_excludes") else list(archive.DEFAULT_EXCLUDES)
    excludes += [p for p in request.args.getlist("exclude") if p]
    svc = services()
    fh = await svc.in_thread(archive.build_archive, svc.jail, excludes, fmt)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await svc.in_thread(fh.read, archive.CHUNK_BYTES):
                yield chunk
        finally:
            fh.close()

    mimetype, suffix = archive.FORMATS[fmt]
    return Response(
        chunks(),
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="workspace.{suffix}"'},
    )
