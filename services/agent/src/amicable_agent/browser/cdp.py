"""The Chrome DevTools Protocol over Chromium's ``--remote-debugging-pipe``.

Messages are JSON objects separated by NUL bytes: commands ``{id, method, params,
sessionId?}`` go in on the browser's fd 3, answers ``{id, result | error}`` and events
``{method, params, sessionId?}`` come out on its fd 4. A pipe instead of a debugging port means
no other process on the machine (a local sandbox's dev server, say) can drive the browser.

:class:`CdpConnection` multiplexes concurrent calls over the pipe; :meth:`CdpConnection.serve`
is its reader task. Events of a page session go to that session's channel
(:meth:`CdpConnection.open_session`).
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import TYPE_CHECKING, Any

import trio

from .errors import BrowserCrashed, CdpError

if TYPE_CHECKING:
    from trio.abc import ReceiveStream, SendStream

log = logging.getLogger(__name__)

#: Events buffered per page session; more are dropped (a capture drains them as they come).
SESSION_EVENT_BUFFER = 512
#: Largest message accepted from the browser (a full-page JPEG in base64 fits many times).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Event = tuple[str, dict[str, Any]]


class NulFramer:
    """Splits a byte stream into NUL-terminated messages (sync, no I/O)."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_bytes

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """The complete messages after appending ``data``.

        Raises:
            BrowserCrashed: a message grows past the limit (the stream is unusable).
        """
        self._buffer += data
        out: list[bytes] = []
        start = 0
        while (end := self._buffer.find(b"\0", start)) >= 0:
            out.append(bytes(self._buffer[start:end]))
            start = end + 1
        del self._buffer[:start]
        if len(self._buffer) > self._max:
            raise BrowserCrashed("the browser sent a message larger than the limit")
        return out


class _Call:
    __slots__ = ("answer", "done")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.answer: dict[str, Any] | None = None


class CdpConnection:
    """One DevTools connection; ``serve`` must run while calls are made.

    Args:
        send_stream: the browser's command pipe (its fd 3).
        receive_stream: the browser's answer pipe (its fd 4).
    """

    def __init__(self, send_stream: SendStream, receive_stream: ReceiveStream) -> None:
        self._send = send_stream
        self._receive = receive_stream
        self._send_lock = trio.StrictFIFOLock()
        self._ids = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        self._sessions: dict[str, trio.MemorySendChannel[Event]] = {}
        self._closed = trio.Event()

    @property
    def closed(self) -> bool:
        """The pipe is gone (the browser exited or :meth:`aclose` was called)."""
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Wait until the pipe is gone."""
        await self._closed.wait()

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, session_id: str | None = None
    ) -> dict[str, Any]:
        """Send one command and wait for its answer.

        Raises:
            CdpError: the browser answered with an error.
            BrowserCrashed: the pipe closed before the answer came.

        Cancellation: the answer, if it still comes, is dropped.
        """
        if self.closed:
            raise BrowserCrashed("the browser is not running")
        call_id = next(self._ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        pending = self._calls[call_id] = _Call()
        try:
            async with self._send_lock:
                try:
                    await self._send.send_all(json.dumps(message).encode() + b"\0")
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise BrowserCrashed("the browser closed its DevTools pipe") from exc
            await pending.done.wait()
        finally:
            self._calls.pop(call_id, None)
        answer = pending.answer
        if answer is None:
            raise BrowserCrashed("the browser exited while a DevTools call was waiting")
        if "error" in answer:
            error = answer["error"]
            raise CdpError(method, int(error.get("code", 0)), str(error.get("message", "")))
        result: dict[str, Any] = answer.get("result") or {}
        return result

    def open_session(self, session_id: str) -> trio.MemoryReceiveChannel[Event]:
        """Start buffering the events of ``session_id``; :meth:`close_session` stops it."""
        send, receive = trio.open_memory_channel[Event](SESSION_EVENT_BUFFER)
        self._sessions[session_id] = send
        return receive

    def close_session(self, session_id: str) -> None:
        """Stop delivering events of ``session_id`` (its channel sees end-of-stream)."""
        send = self._sessions.pop(session_id, None)
        if send is not None:
            send.close()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read answers and events until the pipe closes; then fail every waiting call.

        Cancellation: the connection counts as closed afterwards.
        """
        framer = NulFramer()
        task_status.started()
        try:
            while True:
                try:
                    data = await self._receive.receive_some(1 << 20)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                for raw in framer.feed(data):
                    self._dispatch(raw)
        except BrowserCrashed:
            log.warning("the browser sent an oversized DevTools message; dropping it")
        finally:
            self._close_all()

    def _dispatch(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("unparsable DevTools message (%d bytes)", len(raw))
            return
        if not isinstance(message, dict):
            return
        if "id" in message:
            pending = self._calls.get(message["id"]) if isinstance(message["id"], int) else None
            if pending is not None:
                pending.answer = message
                pending.done.set()
            return
        channel = self._sessions.get(str(message.get("sessionId", "")))
        if channel is not None:
            try:
                channel.send_nowait((str(message.get("method", "")), message.get("params") or {}))
            except trio.WouldBlock:
                pass  # nobody is capturing on this page: its events do not matter
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._sessions.pop(str(message.get("sessionId", "")), None)

    def _close_all(self) -> None:
        self._closed.set()
        for pending in list(self._calls.values()):
            pending.done.set()  # answer stays None: BrowserCrashed in call()
        for send in self._sessions.values():
            send.close()
        self._sessions.clear()

    async def aclose(self) -> None:
        """Close both pipe ends; waiting calls fail with :class:`BrowserCrashed`."""
        self._close_all()
        with trio.CancelScope(shield=True):
            await self._send.aclose()
            await self._receive.aclose()
