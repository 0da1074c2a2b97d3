"""Where a request goes: the Host header -> preview label, and the routing decision made
once per request head (pure, synchronous, no I/O).

A preview host is exactly ``<label>.<base domain>`` (optionally with a numeric port), where the
label matches ``^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$``. Everything else is either *foreign*
(not under the base domain at all: health checks, metrics scrapes) or *invalid* (under the base
domain but not exactly one valid label, or syntactically broken) and is never proxied.

:func:`route_request` is the one place that decides a request's route; the task path
(``proxy.py``) and the keep-alive lane (``lane.py``) both call it.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import TYPE_CHECKING

import attrs

from .errors import BadRequest
from .http1 import connection_tokens, request_body_length

if TYPE_CHECKING:
    from .http1 import RequestHead

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A hostname made of LDH labels; deliberately narrower than RFC 3986 reg-name.
_HOSTNAME = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")
_PORT = re.compile(r"[0-9]{1,5}")


class HostKind(enum.Enum):
    """How the router treats a request, decided by its Host header alone."""

    PREVIEW = "preview"  #: proxy to the sandbox named by ``label``
    FOREIGN = "foreign"  #: not a preview host: only /healthz and /metrics answer
    INVALID = "invalid"  #: 404, never proxied


@attrs.frozen
class HostMatch:
    """The classification of one Host header.

    Attributes:
        kind: what to do with the request.
        host: the normalised host (lower case, no port); empty when invalid.
        label: the preview label when ``kind`` is PREVIEW, else ``""``.
    """

    kind: HostKind
    host: str = ""
    label: str = ""


_INVALID = HostMatch(HostKind.INVALID)


def is_valid_label(label: str) -> bool:
    """True when ``label`` is a single lower-case DNS label (1-63 chars, no edge hyphens)."""
    return _LABEL.fullmatch(label) is not None


def normalise_base_domain(base_domain: str) -> str:
    """Lower-case a configured base domain and check it is a plain hostname.

    Raises:
        ValueError: the base domain is empty or not made of LDH labels.
    """
    base = base_domain.strip().lower().rstrip(".")
    if not base or _HOSTNAME.fullmatch(base) is None:
        raise ValueError(f"invalid preview base domain: {base_domain!r}")
    if not all(is_valid_label(part) for part in base.split(".")):
        raise ValueError(f"invalid preview base domain: {base_domain!r}")
    return base


@functools.lru_cache(maxsize=4096)
def classify_host(raw: bytes | str | None, base_domain: str) -> HostMatch:
    """Classify a Host header value against ``base_domain`` (already normalised).

    Lower-cases, strips a numeric port, and accepts a preview host only when exactly one valid
    label precedes the base domain. IP literals, userinfo, extra labels, empty hosts, trailing
    dots, percent-escapes and any byte outside ``[a-z0-9.-]`` are invalid.

    Args:
        raw: the Host header value as received (``None`` when absent).
        base_domain: output of :func:`normalise_base_domain`.

    Returns:
        The classification; only ``HostKind.PREVIEW`` may be proxied. Results are memoised
        (bounded LRU): the function is pure and sits on the hot path.
    """
    if raw is None:
        return _INVALID
    if isinstance(raw, bytes):
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            return _INVALID
    else:
        text = raw
    if not text.isascii():
        return _INVALID
    text = text.lower()
    name, sep, port = text.partition(":")
    if sep and (_PORT.fullmatch(port) is None or int(port) > 65535):
        return _INVALID
    if not name or _HOSTNAME.fullmatch(name) is None or len(name) > 253:
        return _INVALID
    suffix = "." + base_domain
    if name == base_domain or not name.endswith(suffix):
        return HostMatch(HostKind.FOREIGN, name)
    label = name[: -len(suffix)]
    if "." in label or not is_valid_label(label):
        return _INVALID
    return HostMatch(HostKind.PREVIEW, name, label)


@attrs.frozen
class Route:
    """A request's routing decision (see :func:`route_request`).

    It follows from the request's field block, its HTTP version and the base domain alone,
    so one decision serves every request that repeats the block.

    Attributes:
        base_domain: the base domain it was decided against (the memo's key, by identity).
        version: the request's HTTP version (the memo's key).
        match: the classification of the single Host header.
        body_length: the request body's framing: a byte count (0: no body) or
            ``http1.CHUNKED``.
        tokens: the options of the request's ``Connection`` headers.
        keep_alive: the client keeps the connection after the answer (HTTP/1.1 without
            ``Connection: close``).
        plain: a keep-alive request for a preview, with no body and no upgrade: what the
            keep-alive lane may serve in the poller (for GET and HEAD).
    """

    base_domain: str
    version: bytes
    match: HostMatch
    body_length: int
    tokens: frozenset[bytes]
    keep_alive: bool
    plain: bool


def route_request(req: RequestHead, base_domain: str) -> Route:
    """Decide where ``req`` goes, reusing the decision memoised on its field block.

    Args:
        req: a parsed request head.
        base_domain: output of :func:`normalise_base_domain`; a router passes the same
            string object every time (the memo compares it by identity).

    Returns:
        The decision (memoised on ``req.fields``; a block that fails raises every time).

    Raises:
        BadRequest: not exactly one Host header (400), or ambiguous or unsupported body
            framing (400, 501).
    """
    fields = req.fields
    route: Route | None = fields.route
    if route is not None and route.version == req.version and route.base_domain is base_domain:
        return route
    hosts = req.framing(b"host")
    if len(hosts) != 1:
        raise BadRequest(400, "exactly one Host header is required")
    match = classify_host(hosts[0], base_domain)
    body_length = request_body_length(req)
    tokens = connection_tokens(req)
    keep_alive = req.version == b"HTTP/1.1" and b"close" not in tokens
    plain = (
        keep_alive
        and body_length == 0
        and match.kind is HostKind.PREVIEW
        and b"upgrade" not in tokens
    )
    route = Route(base_domain, req.version, match, body_length, tokens, keep_alive, plain)
    fields.route = route
    return route
