"""ASGI wrapper: refuse WebSockets by accepting and closing, never with an HTTP rejection.

hypercorn 0.18 crashes its whole server (not just the connection) when a client sends bytes
during a WebSocket handshake that the app then rejects with an HTTP response (the
``websocket.http.response`` extension, which Quart uses for errors raised before accept):
h11 is asked to send a second response and the ``LocalProtocolError`` escapes the
connection's handler. ``amicable_frontdoor`` confines such an error to its connection; this
wrapper keeps it from happening at all. Two defences: a send that the protocol layer refuses
(the connection is already answered) is dropped instead of propagating, and every refusal
is turned into ``accept`` + one text frame with the error body + ``close`` (1008 for
401/403, 1011 for 5xx, 1003 otherwise); once accepted, hypercorn hands further bytes to
wsproto.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]


def _close_code(status: int) -> int:
    if status in (401, 403):
        return 1008
    return 1011 if status >= 500 else 1003


class WebSocketRejectionGuard:
    """Wraps an ASGI app; HTTP and lifespan scopes pass through untouched.

    Args:
        app: the ASGI application.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        # Keep advertising ``websocket.http.response`` so the app sends its error body, which
        # is then delivered as a frame (see the module docstring).
        extensions = dict(scope.get("extensions") or {})
        extensions.setdefault("websocket.http.response", {})
        scope = {**scope, "extensions": extensions}
        accepted = False
        status = 403
        body = bytearray()
        dead = False

        async def safe_send(message: Message) -> None:
            nonlocal dead
            if dead:
                return
            try:
                await send(message)
            except Exception as exc:  # h11 state errors: the connection was already answered
                dead = True
                log.debug("dropping WebSocket send on a finished connection: %r", exc)

        async def guarded_send(message: Message) -> None:
            nonlocal accepted, status
            kind = message["type"]
            if kind == "websocket.accept":
                accepted = True
                await safe_send(message)
            elif kind == "websocket.close" and not accepted:
                accepted = True
                await safe_send({"type": "websocket.accept"})
                await safe_send(message)
            elif kind == "websocket.http.response.start":
                status = int(message.get("status", 403))
            elif kind == "websocket.http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    accepted = True
                    await safe_send({"type": "websocket.accept"})
                    if body:
                        await safe_send(
                            {"type": "websocket.send", "text": body.decode("utf-8", "replace")}
                        )
                    await safe_send({"type": "websocket.close", "code": _close_code(status)})
            else:
                await safe_send(message)

        await self.app(scope, receive, guarded_send)
