"""The router's configuration: one frozen object, built once from the environment.

=========================================  ======================  ================================
variable                                   default                 meaning
=========================================  ======================  ================================
PREVIEW_BASE_DOMAIN                        ``preview.localhost``   previews are ``<label>.<this>``
AMICABLE_PREVIEW_ROUTER_HOST               ``0.0.0.0``             listen address
AMICABLE_PREVIEW_ROUTER_PORT               ``8080``                listen port (0: any free port)
SANDBOX_NAMESPACE                          ``default``             ``{namespace}`` in the template
AMICABLE_PREVIEW_RESOLVER_URL              unset                   agent resolver endpoint
AMICABLE_PREVIEW_RESOLVER_TOKEN(_FILE)     unset                   ``X-Amicable-Preview-Token``
AMICABLE_PREVIEW_UPSTREAM_TEMPLATE         see below               ``http://{sandbox_id}...:3000``
AMICABLE_PREVIEW_RESOLVER_TIMEOUT_S        ``5``                   deadline of one resolver call
AMICABLE_PREVIEW_CACHE_TTL_S               ``60``                  positive answers are cached
AMICABLE_PREVIEW_NEGATIVE_CACHE_TTL_S      ``5``                   404 answers are cached
AMICABLE_PREVIEW_CONNECT_TIMEOUT_S         ``5``                   upstream TCP connect
AMICABLE_PREVIEW_HEADER_TIMEOUT_S          ``10``                  a request head must arrive in it
AMICABLE_PREVIEW_HTTP_IDLE_TIMEOUT_S       ``60``                  idle HTTP (keep-alive, body) I/O
AMICABLE_PREVIEW_WS_IDLE_TIMEOUT_S         ``3600``                idle upgraded (WebSocket) tunnel
AMICABLE_PREVIEW_POOL_IDLE_TIMEOUT_S       ``4``                   idle upstream connections kept
AMICABLE_PREVIEW_POOL_MAX_IDLE             ``64``                  idle connections per upstream
AMICABLE_PREVIEW_MAX_HEADER_BYTES          ``16384``               larger request heads get 431
AMICABLE_PREVIEW_MAX_CONNECTIONS           ``10000``               per worker; more are refused
AMICABLE_PREVIEW_FORWARDED_PROTO           ``http``                ``X-Forwarded-Proto`` we send
AMICABLE_PREVIEW_TRUSTED_PROXIES           unset                   CIDRs whose X-Forwarded-* we keep
=========================================  ======================  ================================

Without a resolver URL the template alone is used (label = sandbox id, the seed's simple mode);
its default is ``http://{sandbox_id}.{namespace}.svc.cluster.local:3000``.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import attrs
from amicable_settings import comma_list, errors_as, integer, seconds, secret, string

from .errors import ConfigError
from .routing import normalise_base_domain

if TYPE_CHECKING:
    from collections.abc import Mapping

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_UPSTREAM_TEMPLATE = "http://{sandbox_id}.{namespace}.svc.cluster.local:3000"


@attrs.frozen
class RouterConfig:
    """Everything the router needs; see the module docstring for the environment names.

    ``resolver_url`` set: the resolver decides (its ``upstream``, else the template with its
    ``sandbox_id``). Unset: the label itself is the sandbox id in ``upstream_template``.
    """

    base_domain: str = "preview.localhost"
    host: str = "0.0.0.0"
    port: int = 8080
    sandbox_namespace: str = "default"
    resolver_url: str | None = None
    resolver_token: str | None = attrs.field(default=None, repr=False)
    upstream_template: str = DEFAULT_UPSTREAM_TEMPLATE
    resolver_timeout_s: float = 5.0
    cache_ttl_s: float = 60.0
    negative_cache_ttl_s: float = 5.0
    cache_max_entries: int = 10_000
    connect_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    http_idle_timeout_s: float = 60.0
    ws_idle_timeout_s: float = 3600.0
    pool_idle_timeout_s: float = 4.0
    pool_max_idle: int = 64
    max_header_bytes: int = 16 * 1024
    max_connections: int = 10_000
    forwarded_proto: str = "http"
    trusted_proxies: tuple[IPNetwork, ...] = ()
    #: Bind with SO_REUSEPORT so several worker processes share the port.
    reuse_port: bool = False
    backlog: int = 1024

    def __attrs_post_init__(self) -> None:
        try:
            object.__setattr__(self, "base_domain", normalise_base_domain(self.base_domain))
        except ValueError as exc:
            raise ConfigError(f"PREVIEW_BASE_DOMAIN: {exc}") from exc
        if self.forwarded_proto not in ("http", "https"):
            raise ConfigError("AMICABLE_PREVIEW_FORWARDED_PROTO must be http or https")
        try:
            self.upstream_template.format(sandbox_id="x", namespace="y")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                "AMICABLE_PREVIEW_UPSTREAM_TEMPLATE may use only {sandbox_id} and {namespace}"
            ) from exc


def _networks(parts: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(part) for part in parts)
    except ValueError as exc:
        raise ConfigError(f"AMICABLE_PREVIEW_TRUSTED_PROXIES: {exc}") from exc


def config_from_env(env: Mapping[str, str]) -> RouterConfig:
    """Build the configuration from environment variables (called once, in ``__main__``).

    Raises:
        ConfigError: a variable has an invalid value (the message names it).
    """
    with errors_as(ConfigError):
        return _from_env(env)


def _from_env(env: Mapping[str, str]) -> RouterConfig:
    return RouterConfig(
        base_domain=string(env, "PREVIEW_BASE_DOMAIN", "preview.localhost"),
        host=string(env, "AMICABLE_PREVIEW_ROUTER_HOST", "0.0.0.0"),
        port=integer(env, "AMICABLE_PREVIEW_ROUTER_PORT", 8080, minimum=0, maximum=65535),
        sandbox_namespace=string(env, "SANDBOX_NAMESPACE", "default"),
        resolver_url=string(env, "AMICABLE_PREVIEW_RESOLVER_URL", None),
        resolver_token=secret(env, "AMICABLE_PREVIEW_RESOLVER_TOKEN"),
        upstream_template=string(
            env, "AMICABLE_PREVIEW_UPSTREAM_TEMPLATE", DEFAULT_UPSTREAM_TEMPLATE
        ),
        resolver_timeout_s=seconds(env, "AMICABLE_PREVIEW_RESOLVER_TIMEOUT_S", 5.0, positive=True),
        cache_ttl_s=seconds(env, "AMICABLE_PREVIEW_CACHE_TTL_S", 60.0, positive=True),
        negative_cache_ttl_s=seconds(
            env, "AMICABLE_PREVIEW_NEGATIVE_CACHE_TTL_S", 5.0, positive=True
        ),
        connect_timeout_s=seconds(env, "AMICABLE_PREVIEW_CONNECT_TIMEOUT_S", 5.0, positive=True),
        header_timeout_s=seconds(env, "AMICABLE_PREVIEW_HEADER_TIMEOUT_S", 10.0, positive=True),
        http_idle_timeout_s=seconds(
            env, "AMICABLE_PREVIEW_HTTP_IDLE_TIMEOUT_S", 60.0, positive=True
        ),
        ws_idle_timeout_s=seconds(env, "AMICABLE_PREVIEW_WS_IDLE_TIMEOUT_S", 3600.0, positive=True),
        pool_idle_timeout_s=seconds(
            env, "AMICABLE_PREVIEW_POOL_IDLE_TIMEOUT_S", 4.0, positive=True
        ),
        pool_max_idle=integer(env, "AMICABLE_PREVIEW_POOL_MAX_IDLE", 64, minimum=0),
        max_header_bytes=integer(env, "AMICABLE_PREVIEW_MAX_HEADER_BYTES", 16 * 1024, minimum=1024),
        max_connections=integer(env, "AMICABLE_PREVIEW_MAX_CONNECTIONS", 10_000, minimum=1),
        forwarded_proto=string(env, "AMICABLE_PREVIEW_FORWARDED_PROTO", "http"),
        trusted_proxies=_networks(comma_list(env, "AMICABLE_PREVIEW_TRUSTED_PROXIES", ())),
    )
