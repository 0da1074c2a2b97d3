"""Where ``web_fetch`` may connect: public addresses only, resolved once and pinned.

Every hop of a fetch (the first URL and each redirect) goes through :func:`pin`: the host is
resolved once by a :class:`Resolver`, *every* address it answers must be public, and the
connection then goes to that checked address (the Host header and TLS name stay the
hostname's). A second lookup that could answer differently (DNS rebinding) never happens.

Tests inject a resolver and, only there, extra allowed networks (``allow``): that is how a
test reaches its loopback server while 127.0.0.1 itself stays refused.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Protocol

import attrs
import httpx
import trio

from .errors import FetchRefused

if TYPE_CHECKING:
    from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_MULTICAST_AND_FRIENDS = (
    ipaddress.IPv4Network("224.0.0.0/4"),
    ipaddress.IPv4Network("100.64.0.0/10"),  # carrier-grade NAT, cluster networks use it
    ipaddress.IPv6Network("ff00::/8"),
)


def is_public(ip: IPAddress) -> bool:
    """True for a globally routable unicast address.

    Refused: private (10/8, 172.16/12, 192.168/16, fc00::/7), loopback, link-local (cloud
    metadata at 169.254.169.254, fe80::/10), unspecified, shared 100.64/10, multicast,
    reserved and documentation ranges; IPv4 addresses embedded in IPv6 (mapped, 6to4,
    NAT64) are judged as the IPv4 address they carry.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
        if ip.teredo is not None:
            return False
    if any(ip in net for net in _MULTICAST_AND_FRIENDS):
        return False
    return ip.is_global


class Resolver(Protocol):
    """Turns a hostname into addresses (the seam tests replace)."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """All addresses of ``host``; raises ``OSError`` when it has none."""
        ...


class SystemResolver:
    """The system's resolver (``getaddrinfo`` in a worker thread, as Trio does)."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [ipaddress.ip_address(info[4][0]) for info in infos]


@attrs.frozen
class Pinned:
    """One checked hop: where to connect, and what to call the host."""

    url: httpx.URL
    ip: IPAddress

    @property
    def connect_url(self) -> httpx.URL:
        """The URL with the checked address as its host (the connection goes there)."""
        return self.url.copy_with(host=str(self.ip))

    @property
    def host_header(self) -> str:
        default = 443 if self.url.scheme == "https" else 80
        port = self.url.port
        host = self.url.host if ":" not in self.url.host else f"[{self.url.host}]"
        return host if port in (None, default) else f"{host}:{port}"


def parse_fetch_url(raw: str) -> httpx.URL:
    """A URL the fetch may try: http(s), a host, no credentials.

    Raises:
        FetchRefused: anything else.
    """
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchRefused(f"not a valid URL: {raw[:200]!r}") from exc
    if url.scheme not in ("http", "https"):
        raise FetchRefused("only http:// and https:// URLs can be fetched")
    if not url.host:
        raise FetchRefused("the URL has no host")
    if url.userinfo:
        raise FetchRefused("URLs with credentials are not fetched")
    return url


def _allowed(ip: IPAddress, allow: Sequence[IPNetwork]) -> bool:
    return is_public(ip) or any(ip.version == net.version and ip in net for net in allow)


async def pin(url: httpx.URL, resolver: Resolver, allow: Sequence[IPNetwork] = ()) -> Pinned:
    """Resolve ``url``'s host once and check every address.

    Raises:
        FetchRefused: the host does not resolve (fail closed) or any of its addresses is
            not public (and not in ``allow``).
    """
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = await resolver.resolve(host, port)
        except OSError as exc:
            raise FetchRefused(f"{host} could not be resolved") from exc
    if not addresses:
        raise FetchRefused(f"{host} could not be resolved")
    for ip in addresses:
        if not _allowed(ip, allow):
            raise FetchRefused(
                f"{host} resolves to {ip}, a private, loopback, link-local or otherwise "
                "non-public address: refused"
            )
    return Pinned(url, addresses[0])
