"""The quart adapter of the DB proxy: the whole body of the ``/db/apps/<app_id>/graphql``
view, so the route in ``app.py`` is one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response, request

from .proxy import disabled_response

if TYPE_CHECKING:
    from .service import AppDatabase


async def answer_db_request(db: AppDatabase | None, app_id: str) -> Response:
    """Answer the current quart request to the DB proxy (``POST``/``OPTIONS``).

    Args:
        db: the integration, or None when Hasura is not configured (404).
        app_id: the ``<app_id>`` path segment.

    A body whose Content-Length exceeds the limit is not read at all.
    """
    if db is None:
        answer = disabled_response()
    else:
        declared = request.content_length
        too_big = declared is not None and declared > db.proxy.max_body_bytes
        raw = b"" if too_big else await request.get_data(cache=False, as_text=False)
        body = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = await db.proxy.handle(
            request.method, app_id, headers, body, declared_length=declared
        )
    response = Response(answer.body, status=answer.status)
    response.headers.clear()
    for name, value in answer.headers:
        response.headers.add(name, value)
    return response
