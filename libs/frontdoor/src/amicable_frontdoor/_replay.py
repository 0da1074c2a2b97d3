"""A socket stream whose first read returns bytes already taken from it."""

from __future__ import annotations

import trio


class ReplayStream(trio.abc.Stream):
    """``stream`` with ``head`` served first; hypercorn reads ``.socket`` for the addresses.

    A lane reads a request head (or more) before deciding that hypercorn should answer it;
    hypercorn's connection handler then gets this stream and parses those bytes first,
    exactly as if it had read them itself.

    Args:
        stream: the client connection.
        head: bytes read from it that no one has consumed.
    """

    def __init__(self, stream: trio.SocketStream, head: bytes) -> None:
        self.socket = stream.socket
        self._stream = stream
        self._head = head

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The replayed bytes first (all at once), then the stream's."""
        if self._head:
            data, self._head = self._head, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send on the underlying stream."""
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """As the underlying stream's."""
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Half-close the underlying stream."""
        await self._stream.send_eof()

    async def aclose(self) -> None:
        """Close the underlying stream."""
        await self._stream.aclose()
