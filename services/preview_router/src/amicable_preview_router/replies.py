"""Responses the router makes itself: errors, health, metrics, 404 and the 502 page.

Each one is counted by status and sent whole in one ``send``. None reveals an internal
address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .client import LOCAL
from .http1 import simple_response

if TYPE_CHECKING:
    from .client import Client
    from .http1 import RequestHead
    from .metrics import Metrics
    from .transport import Transport

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_STARTING_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Preview starting</title>
<style>body{font:16px system-ui,sans-serif;color:#444;display:grid;place-items:center;height:90vh}</style>
</head><body><div><h1>The preview is starting&hellip;</h1>
<p>The dev server is not answering yet (it may be starting or it is down).
This page retries by itself.</p></div></body></html>
"""
_PLAIN_502 = b"502 Bad Gateway: the preview's dev server is not reachable (starting or down)\n"
_TEXT = b"text/plain; charset=utf-8"
_HTML = b"text/html; charset=utf-8"


async def reply(
    metrics: Metrics, stream: Transport, status: int, body: bytes, *, close: bool
) -> None:
    """Send a plain-text answer outside any request (a refused connection, a bad head)."""
    metrics.response(status)
    await stream.send_all(simple_response(status, _REASONS[status], body, close=close))


async def local(
    metrics: Metrics,
    client: Client,
    status: int,
    body: bytes,
    keep: bool,
    head_only: bool,
    content_type: bytes = _TEXT,
) -> bool:
    """Answer a request locally; returns ``keep`` (True: the connection stays open)."""
    metrics.response(status)
    response = simple_response(
        status,
        _REASONS[status],
        body,
        content_type=content_type,
        close=not keep,
        head_only=head_only,
    )
    await client.io.send_all(response)
    return keep


async def bad_gateway(metrics: Metrics, client: Client, req: RequestHead, keep: bool) -> bool:
    """Answer 502 because the upstream failed or is not there (counted as an upstream error).

    Browsers (``Accept: text/html``) get a page that reloads itself every 2 s; other clients
    get plain text. Returns ``keep``.
    """
    metrics.upstream_errors += 1
    html = any(b"text/html" in v for v in req.values(b"accept"))
    metrics.response(502)
    response = simple_response(
        502,
        "Bad Gateway",
        _STARTING_PAGE if html else _PLAIN_502,
        content_type=_HTML if html else _TEXT,
        close=not keep,
        head_only=req.method == b"HEAD",
        extra=b"Retry-After: 2\r\n",
    )
    client.phase = LOCAL
    await client.io.send_all(response)
    return keep
