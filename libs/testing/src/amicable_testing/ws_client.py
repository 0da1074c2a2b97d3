"""The test side of the agent's WebSocket: send a frame, read messages, expect the close."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import trio
from amicable_protocol.messages import ServerMessage, decode_server_message

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection

__all__ = ["ws_expect_close", "ws_recv", "ws_recv_until", "ws_send"]


async def ws_recv(ws: WebSocketConnection, timeout_s: float = 10) -> ServerMessage:
    """The next server message (fails after ``timeout_s``)."""
    with trio.fail_after(timeout_s):
        return decode_server_message(await ws.get_message())


async def ws_recv_until(
    ws: WebSocketConnection, type_: str, timeout_s: float = 30
) -> list[ServerMessage]:
    """Server messages up to and including the first of type ``type_``."""
    seen: list[ServerMessage] = []
    with trio.fail_after(timeout_s):
        while True:
            msg = decode_server_message(await ws.get_message())
            seen.append(msg)
            if str(msg.type) == type_:
                return seen


async def ws_send(ws: WebSocketConnection, obj: Any) -> None:
    """Send a JSON object (or a raw string) as one text frame."""
    await ws.send_message(obj if isinstance(obj, str) else json.dumps(obj))


async def ws_expect_close(ws: WebSocketConnection, timeout_s: float = 20) -> int:
    """Read until the server closes the socket; returns the close code.

    Also closes the client's TCP stream: trio-websocket leaves it open (and warns later)
    when the peer closes first.
    """
    from trio_websocket import ConnectionClosed

    try:
        with trio.fail_after(timeout_s):
            while True:
                await ws.get_message()
    except ConnectionClosed as exc:
        code = exc.reason.code if exc.reason is not None else 1005
    finally:
        stream = getattr(ws, "_stream", None)
        if stream is not None:
            await stream.aclose()
    return int(code)
