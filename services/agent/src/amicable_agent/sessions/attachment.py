"""How a socket attaches to a session: a bounded queue of outgoing messages.

A session broadcasts to all attachments with ``send_nowait`` and drops an attachment whose
queue is full, so a slow socket never blocks a turn. Each message is encoded once (JSON text,
then a complete WebSocket frame) however many sockets send it.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

import trio
from amicable_protocol.messages import MessageType, ServerMessage, encode_server_message

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)


def frame_bytes(text: str) -> bytes:
    """One unfragmented, unmasked server text frame (no extensions are negotiated)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


class Outgoing:
    """A message on its way to the sockets: encoded at most once, however many sockets
    (and only if some socket actually sends it; a coalesced partial is never encoded)."""

    __slots__ = ("_frame", "_wire", "message")

    def __init__(self, message: ServerMessage) -> None:
        self.message = message
        self._frame: str | None = None
        self._wire: bytes | None = None

    @property
    def frame(self) -> str:
        """The JSON text frame of :attr:`message` (encoded on first use, then cached)."""
        if self._frame is None:
            self._frame = encode_server_message(self.message)
        return self._frame

    @property
    def wire(self) -> bytes:
        """:attr:`frame` as a complete WebSocket frame (built once for every socket)."""
        if self._wire is None:
            self._wire = frame_bytes(self.frame)
        return self._wire


class Attachment:
    """One socket's view of a session: a bounded queue of outgoing messages.

    The socket's writer task takes messages with :meth:`receive` / :meth:`receive_nowait`;
    the session (and the socket's own reader) push with :meth:`send_nowait`, which never
    blocks. When the queue is full the attachment is *dropped*: it stops accepting,
    :attr:`dropped` is set, and the socket closes once the writer has drained the queue.

    ``agent_partial`` messages carry the whole text so far, so a queued partial is
    *superseded* by a newer partial with the same id: the older one is removed and the new
    one is queued at the end. What the socket receives is therefore always the produced
    sequence minus superseded partials, in order; nothing else is ever skipped, and a
    backlog (slow client, busy event loop) shrinks to one partial per streaming message
    instead of growing with the stream.

    With :attr:`direct` set (a socket that can write without blocking), a message sent
    while nothing is queued is written at once by the sending task; only what cannot be
    written then waits in the queue for the writer.
    """

    def __init__(self, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        # Queued entries in order; a superseded partial's slot is set to None and skipped.
        self._queue: deque[Outgoing | None] = deque()
        self._live = 0
        self._partials: dict[str, int] = {}  # msg id -> absolute position in the queue
        self._popped = 0  # absolute position of self._queue[0]
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self._head_offset = 0
        self.dropped = False
        self.coalesced = 0
        self.direct_sends = 0
        #: Set by a socket that can write without blocking: returns how many bytes of the
        #: message's :attr:`Outgoing.wire` it wrote at once (0: none, queue it as usual).
        self.direct: Callable[[Outgoing], int] | None = None
        #: Bytes of the message last taken that were already written (by :attr:`direct`).
        self.taken_offset = 0

    def __len__(self) -> int:
        """How many messages are queued (superseded partials not counted)."""
        return self._live

    def send_nowait(self, message: ServerMessage | Outgoing) -> bool:
        """Queue ``message``; returns False (and drops the socket) if it cannot."""
        if self.dropped:
            return False
        out = message if isinstance(message, Outgoing) else Outgoing(message)
        msg = out.message
        if msg.type is MessageType.AGENT_PARTIAL:
            position = self._partials.pop(msg.id, None)
            if position is not None:  # supersede the queued partial of this message
                self._queue[position - self._popped] = None
                self._live -= 1
                self.coalesced += 1
        written = 0
        if not self._live and self.direct is not None:
            # Nothing queued and the socket idle: write now, in this task, instead of a
            # scheduler pass later in the writer's.
            written = self.direct(out)
            if written >= len(out.wire):
                self.direct_sends += 1
                return True
        if self._live >= self._queue_size:
            log.warning("dropping a slow WebSocket client")
            self.drop()
            return False
        if written > 0:  # the rest goes first, from the writer; never superseded now
            self._head_offset = written
        elif msg.type is MessageType.AGENT_PARTIAL:
            self._partials[msg.id] = self._popped + len(self._queue)
        self._queue.append(out)
        self._live += 1
        self._lot.unpark_all()
        return True

    def receive_nowait(self) -> ServerMessage:
        """The next queued message.

        Raises:
            trio.WouldBlock: nothing is queued.
            trio.EndOfChannel: the attachment was dropped and everything has been taken.
        """
        return self.take_nowait().message

    def take_nowait(self) -> Outgoing:
        """The next queued message with its cached encodings (see :meth:`receive_nowait`)."""
        queue = self._queue
        while queue:
            out = queue.popleft()
            self._popped += 1
            if out is None:
                continue
            self._live -= 1
            self.taken_offset, self._head_offset = self._head_offset, 0
            msg = out.message
            if msg.type is MessageType.AGENT_PARTIAL:
                self._partials.pop(msg.id, None)
            return out
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> Outgoing:
        """Wait for the next queued message (the socket writer's call).

        Takes a queued message without yielding to the scheduler first: the writer's send
        that follows is the checkpoint. Waits only when the queue is empty.

        Raises:
            trio.EndOfChannel: the attachment was dropped and everything has been taken.
        """
        while True:
            try:
                return self.take_nowait()
            except trio.WouldBlock:
                await self._lot.park()

    def drop(self) -> None:
        """Stop accepting messages; the writer ends after draining what is queued."""
        self.dropped = True
        self._closed = True
        self._lot.unpark_all()
