"""What the fake model APIs share: the script (:class:`Reply`, :class:`Text`,
:class:`ToolUse`, :class:`Fault`), the recorded requests and the HTTP/1.1 server (raw Trio +
h11) they run on.

A script item is a :class:`Reply`, a :class:`Fault` (HTTP error, a stream dropped mid-way,
or an error reported mid-stream), or a callable taking the request body and returning one
of those. The same script drives :class:`~.fake_anthropic.FakeAnthropic` and
:class:`~.fake_openai.FakeOpenAI`, so one test runs against both providers.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import attrs
import h11
import trio

_ids = itertools.count(1)


def next_id() -> int:
    """A process-wide counter for ids the fakes make up."""
    return next(_ids)


@attrs.frozen
class Text:
    """A text content block, streamed in ``chunk``-character deltas."""

    text: str
    chunk: int = 8


@attrs.frozen
class ToolUse:
    """A ``tool_use`` block; ``input`` is streamed as ``input_json_delta`` fragments."""

    name: str
    input: dict[str, Any]
    id: str = attrs.field(factory=lambda: f"toolu_fake{next(_ids):06d}")
    chunk: int = 16
    #: Streamed instead of ``input``'s JSON (a model that writes broken arguments).
    raw_input: str | None = None

    def arguments(self) -> str:
        """The argument text the fake streams."""
        return self.raw_input if self.raw_input is not None else json.dumps(self.input)


@attrs.frozen
class Reply:
    """One streamed message.

    Attributes:
        blocks: content blocks in order.
        stop_reason: defaults to ``tool_use`` when a block is a tool call, else ``end_turn``.
        input_tokens / output_tokens: reported usage (output defaults to ~chars/4).
        delay_s: pause before each delta event (slow tokens).
        hold: when set, the server waits for this event after the first delta (tests use it
            to act while a stream is open); it never finishes if the event is never set.
    """

    blocks: list[Text | ToolUse]
    stop_reason: str | None = None
    input_tokens: int = 100
    output_tokens: int | None = None
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    delay_s: float = 0.0
    hold: trio.Event | None = None
    #: Chat Completions servers that send tool calls without ids, or a ``finish_reason``
    #: of their own (``stop`` after tool calls); ignored by the Messages fake.
    omit_tool_ids: bool = False
    finish_reason: str | None = None


@attrs.frozen
class Fault:
    """A failure instead of a reply.

    ``status`` answers with that HTTP status and the API's error JSON (429 and 529 carry
    ``retry-after`` when given); ``drop_after_events`` instead starts streaming ``reply``
    and closes the connection after that many SSE events; ``error_after_events`` streams
    that many events and then an SSE ``error`` event of ``status``'s type (as the API does
    when it is overloaded mid-stream).
    """

    status: int = 500
    message: str = "fake failure"
    retry_after: float | None = None
    drop_after_events: int | None = None
    error_after_events: int | None = None
    reply: Reply | None = None


ScriptItem = Reply | Fault | Callable[[dict[str, Any]], "Reply | Fault"]


@attrs.frozen
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ScriptedServer:
    """The HTTP/1.1 server and script of a fake model API; subclasses speak the wire format
    (:meth:`_respond`). ``script`` items are used in order; ``responder`` (if given) answers
    requests once the script is used up. Without either, requests get a short "Done." reply.
    """

    #: The provider the fake stands in for (``anthropic`` or ``openai``).
    provider = ""

    def __init__(
        self,
        script: list[ScriptItem] | None = None,
        *,
        responder: Callable[[dict[str, Any]], Reply | Fault] | None = None,
    ) -> None:
        self.script: list[ScriptItem] = list(script or [])
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self.dropped_streams = 0
        self._changed = trio.Event()

    def add(self, *items: ScriptItem) -> None:
        """Append items to the script."""
        self.script.extend(items)

    async def wait_requests(self, count: int) -> None:
        """Wait until at least ``count`` requests arrived."""
        while len(self.requests) < count:
            await self._changed.wait()

    def _next(self, body: dict[str, Any]) -> Reply | Fault:
        if self.script:
            item = self.script.pop(0)
        elif self.responder is not None:
            item = self.responder
        else:
            item = Reply([Text("Done.")])
        if callable(item) and not isinstance(item, Reply | Fault):
            return item(body)
        return item

    async def serve(
        self, *, host: str = "127.0.0.1", port: int = 0, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; ``task_status.started(base_url)``."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        task_status.started(f"http://{host}:{bound}")
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, stream)
                if request is None:
                    return
                keep = await self._respond(conn, stream, request, body)
                if not keep or conn.our_state is not h11.DONE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            await stream.aclose()

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return request, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, event: Any) -> None:
        data = conn.send(event)
        if data:
            await stream.send_all(data)

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request, raw: bytes
    ) -> bool:
        """Answer one request; False closes the connection."""
        raise NotImplementedError

    def _record(self, request: h11.Request, raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        self.requests.append(
            RecordedRequest(request.method.decode(), request.target.decode(), headers, body)
        )
        self._changed.set()
        self._changed = trio.Event()
        return body if isinstance(body, dict) else {}

    def view(self, index: int) -> dict[str, Any]:
        """Request ``index`` as a Messages API body (``system``, ``messages``, ``tools``), so
        tests read every provider's requests the same way."""
        raise NotImplementedError

    async def _json(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        status: int,
        payload: dict[str, Any],
        headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    ) -> None:
        data = json.dumps(payload).encode()
        await self._send(conn, stream, h11.Response(status_code=status, headers=[
            ("content-type", "application/json"), ("content-length", str(len(data))),
            *headers]))  # fmt: skip
        await self._send(conn, stream, h11.Data(data=data))
        await self._send(conn, stream, h11.EndOfMessage())


def tool_results_with_images(
    messages: list[dict[str, Any]], image_tools: tuple[str, ...] = ("capture_preview_screenshot",)
) -> list[dict[str, Any]]:
    """The tool results of the last user message of a request (as ``view`` gives it), each
    with its images inside, whichever provider carried them: the Messages API puts a
    screenshot in its tool result, Chat Completions (text-only tool messages) sends the images
    right after, in order. Each comes back as ``{tool_use_id, is_error, content: [blocks]}``."""
    asked, answer = messages[-2], messages[-1]
    imaging = {
        block["id"]
        for block in asked["content"]
        if block.get("type") == "tool_use" and block.get("name") in image_tools
    }
    loose = [block for block in answer["content"] if block.get("type") == "image"]
    out = []
    for result in (b for b in answer["content"] if b.get("type") == "tool_result"):
        inner = result["content"]
        if isinstance(inner, str):
            inner = [{"type": "text", "text": inner}]
            if result["tool_use_id"] in imaging and not result.get("is_error") and loose:
                inner.append(loose.pop(0))
        out.append({**result, "content": inner})
    return out
