"""Errors raised while decoding wire data.

Exception tree::

    ProtocolError            a frame or body that is not a valid protocol message
                             (``code`` is one of ``invalid_json``, ``unknown_message_type``,
                             ``invalid_field``, ``too_large``, ``text_too_long``)
"""

from __future__ import annotations

from typing import Literal

ProtocolErrorCode = Literal[
    "invalid_json", "unknown_message_type", "invalid_field", "too_large", "text_too_long"
]


class ProtocolError(ValueError):
    """A frame or body could not be decoded into a protocol message.

    Attributes:
        code: stable machine-readable code, sent on the wire as ``error``.
        message: human-readable explanation naming the offending field.
    """

    def __init__(self, code: ProtocolErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ProtocolErrorCode = code
        self.message = message

    def __repr__(self) -> str:
        return f"ProtocolError(code={self.code!r}, message={self.message!r})"
