"""One client connection's state: its stream, its deadline scope and its phase."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .http1 import RequestHead
    from .transport import Transport

#: Connection phases (:attr:`Client.phase`): what a deadline expiry means. ``HEAD``: inside
#: a request head (408); ``UPSTREAM``: waiting for the upstream (502); otherwise a silent
#: close. ``IDLE`` between requests, ``LOCAL`` while routing or answering locally, ``RELAY``
#: while relaying a response.
IDLE, HEAD, LOCAL, UPSTREAM, RELAY = range(5)


class Client:
    """Per-connection state: the client stream, its deadline scope and its current phase."""

    __slots__ = (
        "deadline",
        "io",
        "ip",
        "now",
        "peer_ip",
        "phase",
        "req",
        "scope",
        "served",
        "tail",
        "tail_fields",
        "trusted",
    )

    def __init__(self, io: Transport, peer_ip: str, trusted: bool) -> None:
        self.io = io
        self.peer_ip = peer_ip
        self.ip = peer_ip.encode()
        self.trusted = trusted
        # The upstream head after the request line for the field block seen last (a
        # keep-alive client usually repeats its block): reused while the block is the same.
        self.tail_fields: object = None
        self.tail = b""
        self.scope = trio.CancelScope()
        self.deadline = math.inf
        self.now = 0.0  # trio.current_time() when the current request head arrived
        self.phase = IDLE
        self.req: RequestHead | None = None
        self.served = False  # a response was sent: the next request cannot be here yet

    def arm(self, seconds: float) -> None:
        """Let the next wait last at most ``seconds`` (give or take one second).

        Moving a deadline later by less than a second is skipped: timeouts get a one-second
        granularity and a request costs one or two deadline updates instead of a dozen.
        """
        deadline = trio.current_time() + seconds
        if deadline < self.deadline or deadline - self.deadline > 1.0:
            self.deadline = self.scope.deadline = deadline

    def arm_at(self, now: float, seconds: float) -> None:
        """:meth:`arm` with the caller's recent reading of the clock."""
        deadline = now + seconds
        if deadline < self.deadline or deadline - self.deadline > 1.0:
            self.deadline = self.scope.deadline = deadline

    def disarm(self) -> None:
        """No deadline (an upgraded connection keeps its own)."""
        self.deadline = self.scope.deadline = math.inf
