"""A fake of the agent's preview resolver, for tests of the preview router (and its peers).

:class:`FakeResolver` speaks the agent's resolver protocol on a real loopback socket:
``GET <path>?host=<host>`` with ``X-Amicable-Preview-Token`` -> 200 :class:`PreviewResolution`
JSON, 404, or whatever status/behaviour a test sets for a host. It parses and answers with
the router's own HTTP/1 functions, so it accepts exactly what the router would.
:data:`HOSTILE_HOSTS` lists Host values the router must never proxy.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
from amicable_preview_router.http1 import RequestHead, parse_request_head, simple_response
from amicable_protocol import PreviewResolution, unstructure

#: Host header values that must never reach an upstream (with base ``preview.localhost``).
HOSTILE_HOSTS: tuple[bytes, ...] = (
    b"",
    b" ",
    b"preview.localhost",
    b"a.b.preview.localhost",
    b"x.app.preview.localhost",
    b"app.preview.localhost.",
    b"app.preview.localhost..",
    b".app.preview.localhost",
    b"app..preview.localhost",
    b"-app.preview.localhost",
    b"app-.preview.localhost",
    b"ap_p.preview.localhost",
    b"a" * 64 + b".preview.localhost",
    b"app.preview.localhost.evil.com",
    b"app.preview-localhost",
    b"apppreview.localhost",
    b"app.localhost",
    b"evil.com",
    b"127.0.0.1",
    b"127.0.0.1:8080",
    b"[::1]",
    b"[::1]:3000",
    b"169.254.169.254",
    b"user@app.preview.localhost",
    b"app.preview.localhost@evil.com",
    b"app.preview.localhost:abc",
    b"app.preview.localhost:99999",
    b"app.preview.localhost:80:80",
    b"app.preview.localhost/x",
    b"app.preview.localhost?x",
    b"app.preview.localhost#x",
    b"app%2epreview.localhost",
    b"app.preview.localhost%00",
    b"app.preview.localhost\\evil",
    b"\xc3\xa4pp.preview.localhost",
    b"xn--pp-qia.preview.localhost.evil",
    b"app .preview.localhost",
    b"app,evil.preview.localhost",
    b"*.preview.localhost",
    b"app.preview.localhost evil.com",
)


@attrs.define
class FakeResolver:
    """A resolver endpoint with scripted answers.

    Attributes:
        token: the expected ``X-Amicable-Preview-Token`` (401 otherwise); ``None`` accepts any.
        answers: host -> resolution (200) or an int status to answer with.
        hang: hosts whose lookups never answer (to test timeouts).
        calls: every ``host`` query received, in order.
        port: the bound port once :meth:`serve` started.
    """

    token: str | None = None
    answers: dict[str, PreviewResolution | int] = attrs.Factory(dict)
    hang: set[str] = attrs.Factory(set)
    calls: list[str] = attrs.Factory(list)
    port: int = 0

    @property
    def url(self) -> str:
        """The URL to configure as ``AMICABLE_PREVIEW_RESOLVER_URL``."""
        return f"http://127.0.0.1:{self.port}/internal/preview/resolve"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on a free loopback port until cancelled; ``started()`` gets the port."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        async with stream:
            while True:
                idx = buf.find(b"\r\n\r\n")
                if idx >= 0:
                    head = parse_request_head(bytes(buf[:idx]))
                    del buf[: idx + 4]
                    await stream.send_all(await self._answer(head))
                    continue
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not data:
                    return
                buf += data

    async def _answer(self, head: RequestHead) -> bytes:
        query = parse_qs(urlsplit(head.target.decode()).query)
        host = query.get("host", [""])[0]
        self.calls.append(host)
        tokens = [v.decode() for v in head.values(b"x-amicable-preview-token")]
        if self.token is not None and tokens != [self.token]:
            return simple_response(401, "Unauthorized", b"")
        if host in self.hang:
            await trio.sleep_forever()
        answer = self.answers.get(host, 404)
        if isinstance(answer, int):
            return simple_response(answer, "Scripted", b"{}", content_type=b"application/json")
        body = json.dumps(unstructure(answer)).encode()
        return simple_response(200, "OK", body, content_type=b"application/json")
