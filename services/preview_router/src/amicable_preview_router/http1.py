"""Strict HTTP/1.x message heads and body framing (pure, synchronous).

The router parses only heads and relays bodies byte for byte, so the framing decision
(``Content-Length``, chunked, until-close) must be exact: anything ambiguous (both
``Content-Length`` and ``Transfer-Encoding``, repeated lengths, obs-fold, bare CR/LF, a
transfer coding other than ``chunked``) is rejected instead of guessed, which closes the door
to request smuggling over the reused upstream connections.
"""

from __future__ import annotations

import re

from .errors import BadRequest, UpstreamProtocolError

#: Body framings besides a non-negative Content-Length.
CHUNKED = -1
UNTIL_CLOSE = -2

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_ORIGIN_FORM = re.compile(rb"/[\x21-\x7e]*")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")

#: Hop-by-hop headers never forwarded as received (RFC 9110 §7.6.1, plus legacy names).
#: ``transfer-encoding`` is kept because chunked bodies are relayed verbatim.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailers",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
#: Headers a Connection option may never remove (we need them for framing and routing).
_PROTECTED = frozenset({b"host", b"content-length", b"transfer-encoding"})

Header = tuple[bytes, bytes, bytes]  # (lower-case name, name as sent, value)


class RequestHead:
    """A parsed request head; ``headers`` keeps order and original spelling."""

    __slots__ = ("headers", "method", "target", "version")

    def __init__(self, method: bytes, target: bytes, version: bytes, headers: list[Header]) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers

    def values(self, lname: bytes) -> list[bytes]:
        """Every value of the header ``lname`` (lower case), in order."""
        return [v for n, _, v in self.headers if n == lname]


class ResponseHead:
    """A parsed response head."""

    __slots__ = ("headers", "reason", "status", "version")

    def __init__(self, version: bytes, status: int, reason: bytes, headers: list[Header]) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers

    def values(self, lname: bytes) -> list[bytes]:
        """Every value of the header ``lname`` (lower case), in order."""
        return [v for n, _, v in self.headers if n == lname]


_TOKEN_RE = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Every field line of a head (each preceded by CRLF): token ":" then visible chars, SP, HTAB.
# This rejects obs-fold, whitespace before the colon, bare CR/LF and control characters.
_FIELD_LINES = re.compile(rb"(?:\r\n" + _TOKEN_RE + rb":[\t\x20-\x7e\x80-\xff]*)*")
_FIELD = re.compile(rb"\r\n(" + _TOKEN_RE + rb"):[ \t]*([^\r\n]*)")


def _parse_fields(block: bytes, error: Exception) -> list[Header]:
    """Parse ``block`` = every field line, each with its leading CRLF."""
    if _FIELD_LINES.fullmatch(block) is None:
        raise error
    return [(name.lower(), name, value.rstrip(b" \t")) for name, value in _FIELD.findall(block)]


def parse_request_head(data: bytes) -> RequestHead:
    """Parse a request head (without its final empty line).

    Only origin-form targets (``/path?query``) are accepted; the router routes on ``Host``
    alone, so absolute-form, authority-form and ``*`` are refused.

    Raises:
        BadRequest: 400 for malformed heads, 505 for HTTP versions other than 1.0/1.1.
    """
    end = data.find(b"\r\n")
    if end < 0:
        end = len(data)
    parts = data[:end].split(b" ")
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        if version.startswith(b"HTTP/") and len(version) == 8:
            raise BadRequest(505, "HTTP version not supported")
        raise BadRequest(400, "malformed request line")
    if _TOKEN.fullmatch(method) is None:
        raise BadRequest(400, "malformed method")
    if _ORIGIN_FORM.fullmatch(target) is None:
        raise BadRequest(400, "only origin-form request targets are accepted")
    headers = _parse_fields(data[end:], BadRequest(400, "malformed header line"))
    return RequestHead(method, target, version, headers)


def parse_response_head(data: bytes) -> ResponseHead:
    """Parse a response head from an upstream (without its final empty line).

    Raises:
        UpstreamProtocolError: the head is not a valid HTTP/1.x response head.
    """
    end = data.find(b"\r\n")
    if end < 0:
        end = len(data)
    match = _STATUS_LINE.fullmatch(data, 0, end)
    if match is None:
        raise UpstreamProtocolError("malformed status line")
    version = b"HTTP/1.1" if match.group(1) == b"1" else b"HTTP/1.0"
    headers = _parse_fields(data[end:], UpstreamProtocolError("malformed header line"))
    return ResponseHead(version, int(match.group(2)), match.group(3) or b"", headers)


def connection_tokens(head: RequestHead | ResponseHead) -> set[bytes]:
    """The lower-case options of every ``Connection`` header."""
    tokens: set[bytes] = set()
    for value in head.values(b"connection"):
        tokens.update(t.strip(b" \t").lower() for t in value.split(b","))
    tokens.discard(b"")
    return tokens


def _content_length(values: list[bytes], error: Exception) -> int:
    if len(values) != 1 or _DIGITS.fullmatch(values[0]) is None:
        raise error
    return int(values[0])


def request_body_length(head: RequestHead) -> int:
    """How the request body is framed: a byte count (0 = no body) or ``CHUNKED``.

    Raises:
        BadRequest: ambiguous or unsupported framing (400; 501 for unknown codings).
    """
    te = head.values(b"transfer-encoding")
    cl = head.values(b"content-length")
    if te:
        if cl:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding")
        if len(te) != 1 or te[0].lower() != b"chunked" or head.version != b"HTTP/1.1":
            raise BadRequest(501, "only Transfer-Encoding: chunked is supported")
        return CHUNKED
    if cl:
        return _content_length(cl, BadRequest(400, "invalid Content-Length"))
    return 0


def response_body_length(request_method: bytes, head: ResponseHead) -> int:
    """How the response body is framed (RFC 9112 §6.3): bytes, ``CHUNKED`` or ``UNTIL_CLOSE``.

    Raises:
        UpstreamProtocolError: an invalid ``Content-Length``.
    """
    status = head.status
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        return 0
    te = head.values(b"transfer-encoding")
    if te:
        codings = [c.strip(b" \t").lower() for c in b",".join(te).split(b",")]
        return CHUNKED if codings[-1] == b"chunked" else UNTIL_CLOSE
    cl = head.values(b"content-length")
    if cl:
        if len(set(cl)) == 1:
            cl = cl[:1]
        return _content_length(cl, UpstreamProtocolError("invalid Content-Length"))
    return UNTIL_CLOSE


def is_websocket_upgrade(head: RequestHead, tokens: set[bytes]) -> bool:
    """True for a GET asking to upgrade to WebSocket (the only upgrade we tunnel)."""
    if head.method != b"GET" or head.version != b"HTTP/1.1" or b"upgrade" not in tokens:
        return False
    upgrade = head.values(b"upgrade")
    return len(upgrade) == 1 and upgrade[0].lower() == b"websocket"


class ChunkedScanner:
    """Finds where a chunked body ends while its bytes are relayed verbatim.

    :meth:`scan` looks at a buffer that starts where the previous call stopped and returns
    how many bytes belong to the body (safe to forward) and whether the body is complete.
    """

    __slots__ = ("_remaining", "_state", "_trailer_bytes")

    _MAX_LINE = 4096
    _MAX_TRAILER = 16 * 1024

    def __init__(self) -> None:
        self._state = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailer section
        self._remaining = 0
        self._trailer_bytes = 0

    def scan(self, buf: bytes | bytearray, error: Exception) -> tuple[int, bool]:
        """Consume as much of ``buf`` as is complete.

        Returns:
            ``(consumed, done)``: forward ``buf[:consumed]``; ``done`` once the final
            CRLF of the body was consumed.

        Raises:
            The given ``error`` for malformed framing.
        """
        pos = 0
        end = len(buf)
        while pos < end:
            state = self._state
            if state == 1:
                take = min(self._remaining, end - pos)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = 2
                continue
            if state == 2:
                if end - pos < 2:
                    if buf[pos : pos + 1] != b"\r":
                        raise error
                    return pos, False
                if buf[pos : pos + 2] != b"\r\n":
                    raise error
                pos += 2
                self._state = 0
                continue
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                if end - pos > self._MAX_LINE:
                    raise error
                return pos, False
            line = bytes(buf[pos:nl])
            pos = nl + 2
            if state == 0:
                size = line.split(b";", 1)[0].rstrip(b" \t")
                if _HEX.fullmatch(size) is None or _BAD_VALUE.search(line) is not None:
                    raise error
                self._remaining = int(size, 16)
                self._state = 1 if self._remaining else 3
            else:
                if not line:
                    return pos, True
                self._trailer_bytes += len(line) + 2
                if self._trailer_bytes > self._MAX_TRAILER or b":" not in line:
                    raise error
        return pos, False


def _forwarded_for(prior: list[bytes], client_ip: bytes) -> bytes:
    return b", ".join([*prior, client_ip]) if prior else client_ip


def build_upstream_request(
    head: RequestHead,
    tokens: set[bytes],
    *,
    client_ip: bytes,
    proto: bytes,
    trusted: bool,
    websocket: bool,
) -> bytes:
    """Serialise the request head sent upstream.

    ``Host`` is preserved; hop-by-hop headers (and those named by ``Connection``) are dropped;
    ``X-Forwarded-For/-Host/-Proto`` are replaced by ours (a trusted proxy's
    ``X-Forwarded-For`` chain and ``X-Forwarded-Proto`` are kept). HTTP/1.0 clients are
    forwarded as HTTP/1.0 so the upstream closes after answering.
    """
    drop = HOP_BY_HOP | (tokens - _PROTECTED)
    out = [head.method, b" ", head.target, b" ", head.version, b"\r\n"]
    prior_for: list[bytes] = []
    host = b""
    for lname, name, value in head.headers:
        if lname in drop:
            continue
        if lname[:12] == b"x-forwarded-" or lname == b"forwarded" or lname == b"x-real-ip":
            if trusted and lname == b"x-forwarded-for":
                prior_for.append(value)
            elif trusted and lname == b"x-forwarded-proto" and value in (b"http", b"https"):
                proto = value
            continue
        if lname == b"host":
            host = value
        out += (name, b": ", value, b"\r\n")
    out += (b"X-Forwarded-For: ", _forwarded_for(prior_for, client_ip), b"\r\n")
    out += (b"X-Forwarded-Host: ", host, b"\r\nX-Forwarded-Proto: ", proto, b"\r\n")
    if websocket:
        out.append(b"Connection: Upgrade\r\nUpgrade: websocket\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def build_client_response(head: ResponseHead, *, close: bool, upgrade: bool = False) -> bytes:
    """Serialise the response head sent to the client.

    Hop-by-hop headers are dropped; ``Connection: close`` is added when the router will close
    the client connection after this response; a 101 carries ``Connection: Upgrade`` and the
    upstream's ``Upgrade`` value.
    """
    drop = HOP_BY_HOP | (connection_tokens(head) - _PROTECTED)
    out = [b"HTTP/1.1 ", str(head.status).encode(), b" ", head.reason, b"\r\n"]
    for lname, name, value in head.headers:
        if lname not in drop:
            out += (name, b": ", value, b"\r\n")
    if upgrade:
        up = head.values(b"upgrade")
        out += (b"Connection: Upgrade\r\nUpgrade: ", up[0] if up else b"websocket", b"\r\n")
    elif close:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def simple_response(
    status: int,
    reason: str,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    close: bool = False,
    head_only: bool = False,
    extra: bytes = b"",
) -> bytes:
    """A complete response generated by the router itself."""
    parts = [
        f"HTTP/1.1 {status} {reason}\r\n".encode(),
        b"Content-Type: ",
        content_type,
        b"\r\nContent-Length: ",
        str(len(body)).encode(),
        b"\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        extra,
    ]
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)
