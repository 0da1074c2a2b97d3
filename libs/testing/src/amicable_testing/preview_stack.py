"""A preview as the agent's browser reaches it: the real preview router in front of upstreams,
resolved by :class:`~amicable_testing.fake_resolver.FakeResolver`; and :class:`StubSite`, a
scripted loopback site to put behind it (pages, a page that never answers, request log).

Used by the screenshot tests and the screenshot benchmark::

    site = StubSite({"/": (200, "text/html", b"<body>hi</body>")})
    port = await nursery.start(site.serve)
    async with open_preview_stack({"demo": f"http://127.0.0.1:{port}"}) as stack:
        async with open_preview_browser(BrowserConfig(), stack.address()) as browser:
            shot = await browser.capture("demo", "/")
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import h11
import trio
from amicable_agent.browser import PreviewAddress
from amicable_preview_router.config import RouterConfig
from amicable_preview_router.server import serve as serve_router
from amicable_protocol.preview import PreviewResolution

from .fake_resolver import FakeResolver

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

BASE = "preview.localhost"
TOKEN = "preview-stack-token"

Page = tuple[int, str, bytes]


@attrs.define
class StubSite:
    """A loopback HTTP/1.1 site answering scripted pages.

    Attributes:
        pages: path (without query) -> (status, content type, body); others are 404.
        hang: paths that get no answer until :attr:`release` is set.
        requests: every request target received, in order.
        release: set it to let hung requests answer (their page, or 404).
        redirects: path -> Location answered with a 302.
        host: the loopback address to listen on (any of 127.0.0.0/8).
    """

    pages: dict[str, Page] = attrs.Factory(dict)
    redirects: dict[str, str] = attrs.Factory(dict)
    host: str = "127.0.0.1"
    hang: set[str] = attrs.Factory(set)
    requests: list[str] = attrs.Factory(list)
    release: trio.Event = attrs.Factory(trio.Event)
    seen: trio.Event = attrs.Factory(trio.Event)
    port: int = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on a free loopback port until cancelled; ``started()`` gets the port."""
        listeners = await trio.open_tcp_listeners(0, host=self.host)
        self.port = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def wait_for(self, path: str) -> None:
        """Wait until a request for ``path`` arrived."""
        while not any(t.split("?")[0] == path for t in self.requests):
            await self.seen.wait()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            async with stream:
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        conn.receive_data(data)
                        continue
                    if isinstance(event, h11.Request):
                        await self._answer(conn, stream, event)
                    elif isinstance(event, h11.EndOfMessage):
                        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                            return
                        conn.start_next_cycle()
                    elif isinstance(event, h11.ConnectionClosed):
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return

    async def _answer(
        self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request
    ) -> None:
        target = req.target.decode()
        self.requests.append(target)
        self.seen.set()
        self.seen = trio.Event()
        path = target.split("?")[0]
        if path in self.hang:
            await self.release.wait()
        status, kind, body = self.pages.get(path, (404, "text/plain", b"not found"))
        headers = [("content-type", kind), ("content-length", str(len(body))),
                   ("cache-control", "no-store")]  # fmt: skip
        if path in self.redirects:
            status = 302
            headers.append(("location", self.redirects[path]))
        for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body),
                      h11.EndOfMessage()):  # fmt: skip
            await stream.send_all(conn.send(event) or b"")


@attrs.frozen
class PreviewStack:
    """A running router and its resolver."""

    router_port: int
    resolver: FakeResolver
    base_domain: str = BASE

    def public_url(self, label: str) -> str:
        """The URL a person would open for ``label``."""
        return f"http://{label}.{self.base_domain}:{self.router_port}/"

    def address(self, *, through_router: bool = True) -> PreviewAddress:
        """How the agent's browser reaches these previews (mapped onto the router, or by
        the preview hosts as they resolve, ``*.localhost`` being loopback)."""
        router = f"http://127.0.0.1:{self.router_port}" if through_router else None
        return PreviewAddress(self.base_domain, self.public_url, router)


@asynccontextmanager
async def open_preview_stack(
    upstreams: dict[str, str], *, base_domain: str = BASE
) -> AsyncIterator[PreviewStack]:
    """The real preview router on a free loopback port, routing ``label`` -> upstream URL.

    Cancellation: the router and the resolver stop when the block ends.
    """
    resolver = FakeResolver(token=TOKEN, answers={
        f"{label}.{base_domain}": PreviewResolution(label, url) for label, url in upstreams.items()
    })  # fmt: skip
    config = RouterConfig(host="127.0.0.1", port=0, base_domain=base_domain,
                          resolver_url=None, resolver_token=TOKEN)  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(resolver.serve)
        config = attrs.evolve(config, resolver_url=resolver.url)
        port = await nursery.start(
            lambda task_status: serve_router(config, task_status=task_status)
        )
        try:
            yield PreviewStack(int(port), resolver, base_domain)
        finally:
            nursery.cancel_scope.cancel()
