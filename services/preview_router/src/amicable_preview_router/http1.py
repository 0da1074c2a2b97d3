"""Strict HTTP/1.x message heads and body framing (pure, synchronous).

The router parses only heads and relays bodies byte for byte, so the framing decision
(``Content-Length``, chunked, until-close) must be exact: anything ambiguous (both
``Content-Length`` and ``Transfer-Encoding``, repeated lengths, obs-fold, bare CR/LF, a
transfer coding other than ``chunked``) is rejected instead of guessed, which closes the door
to request smuggling over the reused upstream connections.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import BadRequest, UpstreamProtocolError

#: Body framings besides a non-negative Content-Length.
CHUNKED = -1
UNTIL_CLOSE = -2
#: The longest response head accepted from an upstream.
MAX_RESPONSE_HEAD = 64 * 1024

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_ORIGIN_FORM = re.compile(rb"/[\x21-\x7e]*")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")

#: Hop-by-hop headers are never forwarded as received (RFC 9110 §7.6.1, plus legacy names);
#: ``transfer-encoding`` is kept because chunked bodies are relayed verbatim.
#: Headers a Connection option may never remove (we need them for framing and routing).
_PROTECTED = frozenset({b"host", b"content-length", b"transfer-encoding"})
#: Connection options that name no header.
_PLAIN_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})

_TOKEN_RE = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Every field line of a head (each preceded by CRLF): token ":" then visible chars, SP, HTAB.
# This rejects obs-fold, whitespace before the colon, bare CR/LF and control characters.
_FIELD_LINES = re.compile(rb"(?:\r\n" + _TOKEN_RE + rb":[\t\x20-\x7e\x80-\xff]*)*")
_FIELD = re.compile(rb"\r\n(" + _TOKEN_RE + rb"):[ \t]*([^\r\n]*)")
_HOP_NAMES = rb"connection|keep-alive|proxy-connection|te|trailers|upgrade|proxy-authenticate|proxy-authorization"
# Field lines removed from responses / requests (requests also lose client-sent forwarding).
_DROP_RESPONSE = re.compile(rb"\r\n(?:" + _HOP_NAMES + rb"):[^\r\n]*", re.IGNORECASE)
_DROP_REQUEST = re.compile(
    rb"\r\n(?:" + _HOP_NAMES + rb"|x-forwarded-" + _TOKEN_RE + rb"|forwarded|x-real-ip):[^\r\n]*",
    re.IGNORECASE,
)

_FRAMING = re.compile(
    rb"\r\n(host|content-length|transfer-encoding|connection|upgrade):[ \t]*([^\r\n]*)"
)

Header = tuple[bytes, bytes, bytes]  # (lower-case name, name as sent, value)


class Fields:
    """What the router derives from one validated field block, shared by every head parsed
    from equal bytes (see :func:`parse_request_head`).

    Outside this module only two things are meant for use: the object's identity (two
    requests with the same ``fields`` object carry the same header block, so work derived
    from the block alone can be reused) and :attr:`route`, the routing decision that
    :func:`~.routing.route_request` memoises here. The other attributes are this module's.
    """

    __slots__ = ("forward", "framing", "low", "route", "tokens")

    def __init__(self, block: bytes) -> None:
        low = self.low = block.lower()
        found: dict[bytes, list[bytes]] = {}
        for name, value in _FRAMING.findall(low):
            if name in found:
                found[name].append(value.rstrip(b" \t"))
            else:
                found[name] = [value.rstrip(b" \t")]
        self.framing = found
        self.tokens: frozenset[bytes] | None = None
        self.forward: bytes | None = None  # the block as sent upstream (requests)
        # The routing decision for this block (requests): it depends only on the block, the
        # HTTP version and the base domain, which routing.route_request checks on reuse.
        # A routing.Route; typed Any because this module does not import routing (which
        # imports it).
        self.route: Any = None


# Request field blocks seen recently -> their validated, derived form. A browser loading a
# Vite app sends the same header block (Accept, Referer, sec-fetch-*, cookies) for most of
# its requests; only the request line differs. Keys are exact bytes, so a hit is exactly
# what parsing the block again would give. Bounded: small blocks only, cleared when full.
_REQUEST_FIELDS: dict[bytes, Fields] = {}
# Response heads seen recently, keyed by their exact bytes (status line included). A dev
# server answers repeated requests for a resource with the same head until its Date header
# ticks, so a hit skips validation, the framing scan and rewriting (memoised on the head).
_RESPONSE_HEADS: dict[bytes, ResponseHead] = {}
_CACHE_BLOCK_MAX = 4096
_CACHE_ENTRIES_MAX = 256


class _Head:
    """Field lines kept as the raw block (``\r\nName: value`` repeated), scanned on demand.

    Parsing every field into objects costs more than relaying a small response, so a head
    stores its validated block, the values of the few headers the router acts on (found in
    one regex pass when the head is parsed) and answers :meth:`values` with substring
    searches.

    Attributes:
        block: the validated field lines, as received.
        fields: what is derived from ``block``; one shared :class:`Fields` per recently seen
            request block, so identity means "same block".
    """

    __slots__ = ("block", "fields")

    def __init__(self, block: bytes, fields: Fields | None = None) -> None:
        self.block = block
        self.fields = Fields(block) if fields is None else fields

    def framing(self, lname: bytes) -> list[bytes]:
        """Lower-cased values of ``host``, ``content-length``, ``transfer-encoding``,
        ``connection`` or ``upgrade`` (found when the head was parsed; do not mutate)."""
        return self.fields.framing.get(lname, _NONE)

    def values(self, lname: bytes) -> list[bytes]:
        """Every value of the header ``lname`` (lower case), in order, without OWS."""
        low = self.fields.low
        key = b"\r\n" + lname + b":"
        i = low.find(key)
        if i < 0:
            return []
        out = []
        block = self.block
        while i >= 0:
            start = i + len(key)
            end = low.find(b"\r\n", start)
            if end < 0:
                end = len(low)
            out.append(block[start:end].strip(b" \t"))
            i = low.find(key, end)
        return out

    @property
    def headers(self) -> list[Header]:
        """Every field as ``(lower-case name, name as sent, value)``, in order."""
        return [(n.lower(), n, v.rstrip(b" \t")) for n, v in _FIELD.findall(self.block)]


_NONE: list[bytes] = []  # shared "no such header" answer (never mutated)


class RequestHead(_Head):
    """A parsed request head."""

    __slots__ = ("method", "target", "version")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        block: bytes,
        fields: Fields | None = None,
    ) -> None:
        super().__init__(block, fields)
        self.method = method
        self.target = target
        self.version = version


class ResponseHead(_Head):
    """A parsed response head.

    Heads are shared by equal bytes (see :func:`parse_response_head`), so the client-bound
    forms built from one are kept on it (:attr:`out_keep`, :attr:`out_close`).
    """

    __slots__ = ("code", "length", "out_close", "out_keep", "reason", "status", "version")

    def __init__(self, version: bytes, status: int, reason: bytes, block: bytes) -> None:
        super().__init__(block)
        self.version = version
        self.status = status
        self.code = b"%d" % status
        self.reason = reason
        self.out_keep: bytes | None = None  # build_client_response(close=False), memoised
        self.out_close: bytes | None = None  # build_client_response(close=True), memoised
        self.length: int | None = None  # response_body_length for non-HEAD requests, memoised


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
    block = data[end:]
    fields = _REQUEST_FIELDS.get(block)
    if fields is None:
        if _FIELD_LINES.fullmatch(block) is None:
            raise BadRequest(400, "malformed header line")
        fields = Fields(block)
        if len(block) <= _CACHE_BLOCK_MAX:
            if len(_REQUEST_FIELDS) >= _CACHE_ENTRIES_MAX:
                _REQUEST_FIELDS.clear()
            _REQUEST_FIELDS[block] = fields
    return RequestHead(method, target, version, block, fields)


def parse_response_head(data: bytes) -> ResponseHead:
    """Parse a response head from an upstream (without its final empty line).

    Raises:
        UpstreamProtocolError: the head is not a valid HTTP/1.x response head.
    """
    head = _RESPONSE_HEADS.get(data)
    if head is not None:
        return head
    end = data.find(b"\r\n")
    if end < 0:
        end = len(data)
    match = _STATUS_LINE.fullmatch(data, 0, end)
    if match is None:
        raise UpstreamProtocolError("malformed status line")
    version = b"HTTP/1.1" if match.group(1) == b"1" else b"HTTP/1.0"
    block = data[end:]
    if _FIELD_LINES.fullmatch(block) is None:
        raise UpstreamProtocolError("malformed header line")
    head = ResponseHead(version, int(match.group(2)), match.group(3) or b"", block)
    if len(data) <= _CACHE_BLOCK_MAX:
        if len(_RESPONSE_HEADS) >= _CACHE_ENTRIES_MAX:
            _RESPONSE_HEADS.clear()
        _RESPONSE_HEADS[data] = head
    return head


_NO_TOKENS: frozenset[bytes] = frozenset()
_KEEP_ALIVE_TOKENS = frozenset({b"keep-alive"})
_CLOSE_TOKENS = frozenset({b"close"})
_UPGRADE_TOKENS = frozenset({b"upgrade"})
_COMMON_TOKENS = {
    b"keep-alive": _KEEP_ALIVE_TOKENS,
    b"close": _CLOSE_TOKENS,
    b"upgrade": _UPGRADE_TOKENS,
}


def connection_tokens(head: _Head) -> frozenset[bytes]:
    """The lower-case options of every ``Connection`` header (computed once per head)."""
    fields = head.fields
    tokens = fields.tokens
    if tokens is None:
        values = fields.framing.get(b"connection")
        if values is None:
            tokens = _NO_TOKENS
        elif len(values) == 1 and values[0] in _COMMON_TOKENS:
            tokens = _COMMON_TOKENS[values[0]]
        else:
            found: set[bytes] = set()
            for value in values:
                found.update(t.strip(b" \t") for t in value.split(b","))
            found.discard(b"")
            tokens = frozenset(found)
        fields.tokens = tokens
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
    te = head.framing(b"transfer-encoding")
    cl = head.framing(b"content-length")
    if te:
        if cl:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding")
        if len(te) != 1 or te[0] != b"chunked" or head.version != b"HTTP/1.1":
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
    if request_method == b"HEAD":
        return 0
    length = head.length
    if length is None:
        length = head.length = _response_length(head)
    return length


def _response_length(head: ResponseHead) -> int:
    status = head.status
    if status < 200 or status == 204 or status == 304:
        return 0
    found = head.fields.framing
    te = found.get(b"transfer-encoding")
    if te:
        codings = [c.strip(b" \t") for c in b",".join(te).split(b",")]
        return CHUNKED if codings[-1] == b"chunked" else UNTIL_CLOSE
    cl = found.get(b"content-length")
    if cl:
        if len(cl) == 1:
            if _DIGITS.fullmatch(cl[0]) is None:
                raise UpstreamProtocolError("invalid Content-Length")
            return int(cl[0])
        if len(set(cl)) == 1:
            cl = cl[:1]
        return _content_length(cl, UpstreamProtocolError("invalid Content-Length"))
    return UNTIL_CLOSE


def is_websocket_upgrade(head: RequestHead, tokens: frozenset[bytes]) -> bool:
    """True for a GET asking to upgrade to WebSocket (the only upgrade we tunnel)."""
    if head.method != b"GET" or head.version != b"HTTP/1.1" or b"upgrade" not in tokens:
        return False
    upgrade = head.framing(b"upgrade")
    return len(upgrade) == 1 and upgrade[0] == b"websocket"


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


def _drop_named(block: bytes, names: frozenset[bytes]) -> bytes:
    """Remove the field lines whose (lower-case) name is in ``names``."""
    pattern = b"|".join(re.escape(n) for n in sorted(names))
    return re.sub(rb"\r\n(?:" + pattern + rb"):[^\r\n]*", b"", block, flags=re.IGNORECASE)


def build_upstream_request(
    head: RequestHead,
    tokens: frozenset[bytes],
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
    tail = upstream_request_tail(
        head, tokens, client_ip=client_ip, proto=proto, trusted=trusted, websocket=websocket
    )
    return b"".join((head.method, b" ", head.target, b" ", head.version, tail))


def upstream_request_tail(
    head: RequestHead,
    tokens: frozenset[bytes],
    *,
    client_ip: bytes,
    proto: bytes,
    trusted: bool,
    websocket: bool,
) -> bytes:
    """What :func:`build_upstream_request` puts after the request line.

    It depends only on the field block, ``tokens`` and the keyword arguments, so a caller
    may reuse it for later requests that carry the same block (same :class:`Fields`).
    """
    fields = head.fields
    block = fields.forward
    if block is None or tokens is not fields.tokens:
        block = _DROP_REQUEST.sub(b"", head.block)
        if tokens and not tokens <= _PLAIN_OPTIONS:
            named = tokens - _PLAIN_OPTIONS - _PROTECTED
            if named:
                block = _drop_named(block, named)
        if tokens is fields.tokens:
            fields.forward = block
    forwarded_for = client_ip
    if trusted:
        prior = head.values(b"x-forwarded-for")
        if prior:
            forwarded_for = b", ".join([*prior, client_ip])
        claimed = head.values(b"x-forwarded-proto")
        if len(claimed) == 1 and claimed[0] in (b"http", b"https"):
            proto = claimed[0]
    hosts = head.framing(b"host")
    return b"".join(
        (
            block,
            b"\r\nX-Forwarded-For: ",
            forwarded_for,
            b"\r\nX-Forwarded-Host: ",
            hosts[0] if hosts else b"",
            b"\r\nX-Forwarded-Proto: ",
            proto,
            b"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" if websocket else b"\r\n\r\n",
        )
    )


def build_client_response(
    head: ResponseHead,
    *,
    close: bool,
    upgrade: bool = False,
    tokens: frozenset[bytes] | None = None,
) -> bytes:
    """Serialise the response head sent to the client.

    Hop-by-hop headers are dropped; ``Connection: close`` is added when the router will close
    the client connection after this response; a 101 carries ``Connection: Upgrade`` and the
    upstream's ``Upgrade`` value. ``tokens`` are the head's Connection options when the
    caller already has them.
    """
    if not upgrade:
        out = head.out_close if close else head.out_keep
        if out is not None:
            return out
    if upgrade:
        up = head.values(b"upgrade")
        tail = (
            b"\r\nConnection: Upgrade\r\nUpgrade: " + (up[0] if up else b"websocket") + b"\r\n\r\n"
        )
    else:
        tail = b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n"
    block = _DROP_RESPONSE.sub(b"", head.block)
    if tokens is None:
        tokens = connection_tokens(head)
    if tokens and not tokens <= _PLAIN_OPTIONS:
        named = tokens - _PLAIN_OPTIONS - _PROTECTED
        if named:
            block = _drop_named(block, named)
    out = b"".join((b"HTTP/1.1 ", head.code, b" ", head.reason, block, tail))
    if not upgrade and tokens is head.fields.tokens:
        if close:
            head.out_close = out
        else:
            head.out_keep = out
    return out


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
