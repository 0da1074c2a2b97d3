"""The runtime's ASGI app: the route table for requests hypercorn parsed, quart for the rest.

hypercorn gets the requests the raw lane (``httplane.py``) does not answer. Those for a path
of the route table (``fastpath.py``; chunked bodies, ``Expect``, …) are answered here with
the same logic, quart's body limit (413) and timeout (408) and the client's disconnect
watched during an exec. Every other request (quart's routes, WebSockets) goes to the quart
app, which is built in the background after the runtime listens (:meth:`AsgiEntry.set_app`);
such requests wait for it. The lifespan protocol is answered here: the quart app uses no
lifespan hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from .fastpath import BODY_TIMEOUT_REPLY, BODY_TIMEOUT_S, header

if TYPE_CHECKING:
    from .fastpath import FastRoutes, Headers, Reply, Route

Scope = dict[str, Any]


class _Answered(Exception):
    """The request was already answered (or the client left) while reading its body."""


class AsgiEntry:
    """The ASGI app in front of quart.

    Args:
        fast: the route table and its logic (shared with the lane).
    """

    def __init__(self, fast: FastRoutes) -> None:
        self.fast = fast
        self.app: Any = None
        self._app_set = trio.Event()
        #: Set by the first request that needs the full app (``serve`` then builds it now).
        self.app_wanted = trio.Event()

    def set_app(self, app: Any) -> None:
        """Hand over the full application; requests waiting for it proceed."""
        self.app = app
        self._app_set.set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            route = self.fast.route(method, path)
            if route is not None:
                return await self._answer(route, method, path, scope, receive, send)
        self.app_wanted.set()
        await self._app_set.wait()
        await self.app(scope, receive, send)

    async def _answer(
        self, route: Route, method: str, path: str, scope: Scope, receive: Any, send: Any
    ) -> None:
        headers: Headers = scope["headers"]
        head = method == "HEAD"
        early = self.fast.precheck(route, headers, None)  # the body's size: see _body
        if early is not None:
            return await _respond(send, early, head=head)
        body = b""
        if route.body:
            try:
                body = await self._body(headers, receive, send)
            except _Answered:
                return

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        reply = await self.fast.answer(route, method, path, headers, body, until_disconnect)
        if reply is not None:
            await _respond(send, reply, head=head)

    async def _body(self, headers: Headers, receive: Any, send: Any) -> bytes:
        """The whole request body, with quart's limit (413) and timeout (408)."""
        limit = self.fast.config.max_file_bytes
        length = header(headers, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _respond(send, self.fast.too_large)
            raise _Answered
        body = bytearray()
        with trio.move_on_after(BODY_TIMEOUT_S):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Answered
                body += message.get("body", b"")
                if len(body) > limit:
                    await _respond(send, self.fast.too_large)
                    raise _Answered
                if not message.get("more_body", False):
                    return bytes(body)
        await _respond(send, BODY_TIMEOUT_REPLY)
        raise _Answered


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Any, reply: Reply, *, head: bool = False) -> None:
    """Send ``reply``; for ``head`` (a ``HEAD`` request) its status and headers only."""
    headers = [
        (b"content-type", reply.content_type),
        (b"content-length", str(len(reply.body)).encode()),
        *reply.extra,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else reply.body})
