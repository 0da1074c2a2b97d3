"""The runtime's ``WebSocket /v1/exec/stream``: one command's output as it happens.

The WebSocket itself is trio-websocket's client (handshake, pings, fragments, close) on a
TCP stream we own; this module only speaks the exec protocol on it: send the
:class:`ExecRequest` as the first frame, then read :class:`ExecOutput` frames in order and
the :class:`ExecExit` last. Closing the socket early (leaving the block, or being
cancelled) makes the runtime kill the command's process group. trio-websocket's errors
become :class:`~amicable_agent.errors.RuntimeClientError` here and nowhere else.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, NoReturn

import trio
from amicable_protocol import ExecExit, ExecOutput, ProtocolError, structure, unstructure
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    wrap_client_stream,
)

from amicable_agent.errors import RuntimeClientError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from urllib.parse import SplitResult

    from amicable_protocol import ExecRequest

#: Deadline of the TCP connect + WebSocket handshake.
CONNECT_TIMEOUT_S = 30.0
#: How long leaving the block before the exit frame waits for the runtime's close reply
#: before closing the socket anyway (either way the runtime sees the disconnect and kills
#: the process group).
CLOSE_TIMEOUT_S = 5.0
#: Largest frame accepted (output chunks are far smaller; this only bounds memory).
MAX_FRAME_BYTES = 16 * 1024 * 1024
_RECEIVE_BYTES = 65536
_PORTS = {"http": 80, "https": 443}


class ExecStream:
    """Async iterator over one command's frames: :class:`ExecOutput` chunks in order, then
    the :class:`ExecExit`, then the end. Get one from :func:`open_exec_stream`.

    Raises (from ``__anext__``):
        RuntimeClientError: ``timeout`` (the whole stream's deadline passed),
            ``unreachable`` (closed before the exit frame), ``invalid_response`` (a frame
            that is not the protocol), or the runtime's error frame (status 400, its code).
    """

    def __init__(
        self, ws: WebSocketConnection, deadline: float, max_bytes: int | None = None
    ) -> None:
        self._ws = ws
        self._deadline = deadline
        self._done = False
        self._max_bytes = max_bytes
        self._received = 0

    @property
    def finished(self) -> bool:
        """The exit frame has been received."""
        return self._done

    def __aiter__(self) -> ExecStream:
        return self

    async def __anext__(self) -> ExecOutput | ExecExit:
        while not self._done:
            try:
                with trio.fail_at(self._deadline):
                    message = await self._ws.get_message()
            except trio.TooSlowError as exc:
                raise RuntimeClientError(0, "timeout", "exec stream deadline passed") from exc
            except ConnectionClosed as exc:
                code = exc.reason.code if exc.reason is not None else 1006
                if code == 1009:  # a message over max_message_size (the runtime is untrusted)
                    raise RuntimeClientError(0, "too_large", "an exec stream message") from exc
                raise RuntimeClientError(
                    0, "unreachable", f"exec stream closed ({code}) before exit"
                ) from exc
            self._received += len(message)
            if self._max_bytes is not None and self._received > self._max_bytes:
                raise RuntimeClientError(
                    0, "too_large", f"the exec stream is larger than {self._max_bytes} bytes"
                )
            item = _frame(message)
            if item is not None:
                self._done = isinstance(item, ExecExit)
                return item
        raise StopAsyncIteration


def _frame(message: str | bytes) -> ExecOutput | ExecExit | None:
    """One frame decoded; None for a frame of no kind we know (ignored, as before)."""
    try:
        raw = json.loads(message)
    except ValueError as exc:
        raise RuntimeClientError(0, "invalid_response", "exec frame is not JSON") from exc
    if not isinstance(raw, dict):
        raise RuntimeClientError(0, "invalid_response", "exec frame is not an object")
    try:
        if "exit_code" in raw:
            return structure(raw, ExecExit)
        if "stream" in raw:
            return structure(raw, ExecOutput)
    except ProtocolError as exc:
        raise RuntimeClientError(0, "invalid_response", exc.message) from exc
    if "error" in raw:
        raise RuntimeClientError(400, str(raw["error"]), str(raw.get("detail") or ""))
    return None


async def _refusal(ws: WebSocketConnection | None) -> RuntimeClientError | None:
    """The error frame a closed connection received before it closed, if any."""
    if ws is None:
        return None
    try:
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            _frame(await ws.get_message())
    except RuntimeClientError as exc:
        return exc if exc.status else None
    except ConnectionClosed:
        return None
    return None


def _rejected(exc: ConnectionRejected) -> RuntimeClientError:
    """The runtime refused the upgrade: its JSON error body, if it sent one."""
    body = exc.body or b""
    code, detail = "rejected", body.decode("utf-8", "replace")[:500] or "exec stream refused"
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        code, detail = parsed["error"], str(parsed.get("detail") or "")
    return RuntimeClientError(exc.status_code, code, detail)


def _raise_one(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the one error in ``group`` (the block's, or the reader's) rather than a group.

    Our nursery only runs trio-websocket's reader task, so a group holds at most one
    error besides ``Cancelled``s (as in ``open_websocket``, which we cannot use: see
    :func:`open_exec_stream`). A refused upgrade becomes a RuntimeClientError.
    """
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    errors = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    if len(errors) > 1 or not leaves:
        raise group
    chosen = errors[0] if errors else leaves[0]
    if isinstance(chosen, ConnectionRejected):
        raise _rejected(chosen) from chosen
    context = chosen.__context__
    try:
        raise chosen
    finally:  # keep the error's own context, not the group we unwrapped it from
        chosen.__context__ = context
        del chosen, context


async def _connect(url: SplitResult) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    host = url.hostname or "127.0.0.1"
    port = url.port or _PORTS.get(url.scheme, 80)
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            if url.scheme == "https":
                return await trio.open_ssl_over_tcp_stream(host, port, https_compatible=True)
            return await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise RuntimeClientError(0, "unreachable", type(exc).__name__) from exc


@asynccontextmanager
async def open_exec_stream(
    url: SplitResult,
    token: str | None,
    request: ExecRequest,
    total_timeout_s: float,
    *,
    message_bytes: int = MAX_FRAME_BYTES,
    stream_bytes: int | None = None,
) -> AsyncIterator[ExecStream]:
    """Start ``request`` on the runtime at ``url``; the block iterates its frames.

    We own the TCP stream and hand it to ``trio_websocket.wrap_client_stream`` rather than
    use ``open_websocket``: trio-websocket 0.12 leaves a client's socket open when the
    server closes the WebSocket first, as the runtime does right after the exit frame
    (``tests/sandbox_runtime/test_auth.py`` works around the same).

    Args:
        url: the runtime's base URL (``http``/``https``, optional path prefix).
        token: the sandbox's bearer token.
        request: the command.
        total_timeout_s: deadline of the whole stream, from now.
        message_bytes: the largest message read (the runtime is untrusted).
        stream_bytes: the most read in all (None: no cap); beyond, ``too_large``.

    Raises:
        RuntimeClientError: the runtime is unreachable or did not complete the handshake
            within ``CONNECT_TIMEOUT_S`` (``unreachable``), refused the upgrade (its status
            and error code), or see :class:`ExecStream`.

    Cancellation: leaving the block, normally or by an exception or cancellation, closes
    the socket; before the exit frame, after a close handshake of at most
    ``CLOSE_TIMEOUT_S`` (none when cancelled). The runtime then kills the command's process
    group.
    """
    deadline = trio.current_time() + total_timeout_s
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    port = url.port or _PORTS.get(url.scheme, 80)
    host = url.hostname or "127.0.0.1"
    host_header = host if port == _PORTS.get(url.scheme) else f"{host}:{port}"
    stream = await _connect(url)
    ws: WebSocketConnection | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    ws = await wrap_client_stream(
                        nursery,
                        stream,
                        host_header,
                        url.path.rstrip("/") + "/v1/exec/stream",
                        extra_headers=headers,
                        max_message_size=message_bytes,
                        receive_buffer_size=_RECEIVE_BYTES,
                    )
                    await ws.send_message(json.dumps(unstructure(request)))
            except (trio.TooSlowError, ConnectionClosed) as exc:
                # A runtime that refuses the request (a wrong token) may answer and close
                # before our request is sent: its error frame is still in the queue.
                refusal = await _refusal(ws) if isinstance(exc, ConnectionClosed) else None
                if refusal is not None:
                    raise refusal from exc
                raise RuntimeClientError(0, "unreachable", type(exc).__name__) from exc
            assert ws is not None
            items = ExecStream(ws, deadline, stream_bytes)
            try:
                yield items
            finally:
                if not items.finished:  # the command may still run: say goodbye properly
                    with trio.move_on_after(CLOSE_TIMEOUT_S):
                        await ws.aclose()
                # After the exit frame the runtime closes anyway; waiting for its close
                # frame would only add a round trip to every command.
                await stream.aclose()  # also ends the reader task
    except BaseExceptionGroup as group:
        _raise_one(group)
    finally:
        await stream.aclose()
