"""Preview host -> upstream address, with a TTL cache in front of the agent's resolver.

Two resolvers share one interface (:class:`Resolver`):

* :class:`TemplateResolver` (no resolver URL): the label is the sandbox id, the upstream is
  ``AMICABLE_PREVIEW_UPSTREAM_TEMPLATE`` (the seed's simple mode).
* :class:`HttpResolver`: asks ``GET <url>?host=<host>`` with ``X-Amicable-Preview-Token``;
  caches 200 answers for ``cache_ttl_s`` and 404s for ``negative_cache_ttl_s``; errors are
  never cached and never guessed around (the proxy answers 503). Concurrent lookups of the
  same host share one request.
"""

from __future__ import annotations

import enum
import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import urlsplit

import attrs
import httpx
import trio
from amicable_protocol import structure
from amicable_protocol.errors import ProtocolError
from amicable_protocol.preview import PREVIEW_TOKEN_HEADER, PreviewResolution

from .errors import ResolverError
from .routing import HostMatch, is_valid_label

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .config import RouterConfig
    from .metrics import Metrics


@attrs.frozen
class Upstream:
    """Where to proxy a preview: a TCP address and the sandbox it belongs to."""

    host: str
    port: int
    sandbox_id: str

    @property
    def key(self) -> tuple[str, int]:
        """The connection-pool key."""
        return (self.host, self.port)


class Miss(enum.Enum):
    """What :meth:`Resolver.cached` returns when it has no answer without I/O."""

    MISS = "miss"


MISS: Final = Miss.MISS


class Resolver(Protocol):
    """Maps a valid preview host to its upstream, or ``None`` when it names no preview."""

    def cached(self, match: HostMatch) -> Upstream | Miss | None:
        """The answer if known without I/O, else :data:`MISS` (the proxy's fast path)."""
        ...

    async def resolve(self, match: HostMatch) -> Upstream | None:
        """Resolve; raises :class:`ResolverError` when the answer is unknown."""
        ...


def parse_upstream_url(url: str, sandbox_id: str) -> Upstream:
    """Parse ``http://host[:port][/]`` (no userinfo, path, query or fragment).

    Raises:
        ValueError: anything else.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.username or parts.password:
        raise ValueError("upstream must be http://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("upstream must not have a path")
    host = parts.hostname
    port = parts.port or 80
    if not host:
        raise ValueError("upstream has no host")
    return Upstream(host, port, sandbox_id)


def upstream_from_template(template: str, namespace: str, sandbox_id: str) -> Upstream:
    """Fill the upstream template for a sandbox id (which must be a DNS label).

    Raises:
        ValueError: the id is not a label or the filled template is not an upstream URL.
    """
    if not is_valid_label(sandbox_id):
        raise ValueError("sandbox id is not a DNS label")
    return parse_upstream_url(
        template.format(sandbox_id=sandbox_id, namespace=namespace), sandbox_id
    )


class TemplateResolver:
    """Label = sandbox id; the upstream comes from the template (no network)."""

    def __init__(self, template: str, namespace: str) -> None:
        self._template = template
        self._namespace = namespace
        self._memo: dict[str, Upstream] = {}

    async def resolve(self, match: HostMatch) -> Upstream | None:
        """The templated upstream of ``match.label``."""
        await trio.lowlevel.checkpoint()
        return self.cached(match)

    def cached(self, match: HostMatch) -> Upstream | None:
        """The templated upstream (computed without I/O, memoised)."""
        upstream = self._memo.get(match.label)
        if upstream is None:
            try:
                upstream = upstream_from_template(self._template, self._namespace, match.label)
            except ValueError as exc:
                raise ResolverError(f"upstream template: {exc}") from exc
            if len(self._memo) > 10_000:
                self._memo.clear()
            self._memo[match.label] = upstream
        return upstream


class _Flight:
    __slots__ = ("done", "event", "result")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.done = False
        self.result: Upstream | None = None


class HttpResolver:
    """Asks the agent's resolver endpoint and caches its answers.

    Cancellation: a cancelled lookup caches nothing; tasks waiting on it retry themselves.
    """

    def __init__(self, config: RouterConfig, client: httpx.AsyncClient, metrics: Metrics) -> None:
        assert config.resolver_url is not None
        self._config = config
        self._url = config.resolver_url
        self._client = client
        self._metrics = metrics
        self._cache: dict[str, tuple[float, Upstream | None]] = {}
        self._inflight: dict[str, _Flight] = {}

    def cached(self, match: HostMatch) -> Upstream | Miss | None:
        """The cached answer for ``match.host`` or :data:`MISS`."""
        cached = self._cache.get(match.host)
        if cached is not None and cached[0] > trio.current_time():
            self._metrics.resolver_cache_hits += 1
            return cached[1]
        return MISS

    async def resolve(self, match: HostMatch) -> Upstream | None:
        """The upstream for ``match.host`` (cached), ``None`` when the resolver says 404.

        Raises:
            ResolverError: timeout, transport error, unexpected status or a bad body.
        """
        host = match.host
        cached = self._cache.get(host)
        if cached is not None and cached[0] > trio.current_time():
            self._metrics.resolver_cache_hits += 1
            await trio.lowlevel.checkpoint()
            return cached[1]
        self._metrics.resolver_cache_misses += 1
        while (flight := self._inflight.get(host)) is not None:
            await flight.event.wait()
            if flight.done:
                return flight.result
        flight = _Flight()
        self._inflight[host] = flight
        try:
            result = await self._fetch(host)
            flight.result, flight.done = result, True
        except ResolverError:
            self._metrics.resolver_errors += 1
            raise
        finally:
            del self._inflight[host]
            flight.event.set()
        ttl = self._config.cache_ttl_s if result is not None else self._config.negative_cache_ttl_s
        self._store(host, trio.current_time() + ttl, result)
        return result

    def _store(self, host: str, expires: float, result: Upstream | None) -> None:
        if len(self._cache) >= self._config.cache_max_entries:
            now = trio.current_time()
            for key in [k for k, (exp, _) in self._cache.items() if exp <= now]:
                del self._cache[key]
            while len(self._cache) >= self._config.cache_max_entries:
                del self._cache[next(iter(self._cache))]
        self._cache[host] = (expires, result)

    async def _fetch(self, host: str) -> Upstream | None:
        headers = {}
        if self._config.resolver_token:
            headers[PREVIEW_TOKEN_HEADER] = self._config.resolver_token
        with trio.move_on_after(self._config.resolver_timeout_s) as scope:
            try:
                response = await self._client.get(self._url, params={"host": host}, headers=headers)
            except httpx.HTTPError as exc:
                raise ResolverError(f"resolver unreachable: {type(exc).__name__}") from exc
        if scope.cancelled_caught:
            raise ResolverError("resolver timed out")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ResolverError(f"resolver answered {response.status_code}")
        try:
            answer = structure(json.loads(response.content), PreviewResolution, strict=True)
        except (ValueError, ProtocolError) as exc:
            raise ResolverError("resolver answer is not a PreviewResolution") from exc
        try:
            if answer.upstream:
                return parse_upstream_url(answer.upstream, answer.sandbox_id)
            return upstream_from_template(
                self._config.upstream_template, self._config.sandbox_namespace, answer.sandbox_id
            )
        except ValueError as exc:
            raise ResolverError(f"resolver answer unusable: {exc}") from exc


@asynccontextmanager
async def open_resolver(config: RouterConfig, metrics: Metrics) -> AsyncIterator[Resolver]:
    """The resolver the configuration asks for, with its HTTP client open.

    Cancellation: the HTTP client is closed on exit.
    """
    if config.resolver_url is None:
        yield TemplateResolver(config.upstream_template, config.sandbox_namespace)
        return
    timeout = httpx.Timeout(config.resolver_timeout_s)
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        yield HttpResolver(config, client, metrics)
