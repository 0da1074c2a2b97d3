"""``serve()``: bind, open the resolver and the upstream pool, and accept connections."""

from __future__ import annotations

import functools
import logging
import socket
from typing import TYPE_CHECKING

import trio

from .metrics import Metrics
from .pool import open_upstream_pool
from .proxy import Router
from .resolver import open_resolver
from .transport import Poller, serve_transports

if TYPE_CHECKING:
    from .config import RouterConfig

log = logging.getLogger(__name__)


def open_listener(config: RouterConfig) -> socket.socket:
    """Bind the listening socket (with SO_REUSEPORT when ``config.reuse_port``).

    Raises:
        OSError: the address cannot be bound or resolved.
    """
    infos = socket.getaddrinfo(
        config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        sock.listen(config.backlog)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(
    config: RouterConfig,
    *,
    metrics: Metrics | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the preview router until cancelled.

    Args:
        config: the router configuration (``port=0`` binds a free port).
        metrics: counters to update (a fresh set when omitted; tests pass their own).
        task_status: receives the bound port once the router accepts connections.

    Cancellation: stops accepting, cancels every client connection (each closes its upstream
    connection and tunnel), closes idle pooled connections and the resolver client.
    """
    metrics = metrics if metrics is not None else Metrics()
    listener = open_listener(config)
    try:
        port = int(listener.getsockname()[1])
        async with (
            open_resolver(config, metrics) as resolver,
            open_upstream_pool(
                connect_timeout_s=config.connect_timeout_s,
                idle_timeout_s=config.pool_idle_timeout_s,
                max_idle=config.pool_max_idle,
            ) as pool,
        ):
            poller = Poller()
            router = Router(config, resolver, pool, metrics, poller=poller)
            async with trio.open_nursery() as nursery:
                await nursery.start(poller.run)
                await nursery.start(
                    functools.partial(serve_transports, poller=poller),
                    listener,
                    router.handle_connection,
                )
                log.info(
                    "preview router listening on %s:%d for *.%s",
                    config.host,
                    port,
                    config.base_domain,
                )
                task_status.started(port)
    finally:
        trio.lowlevel.notify_closing(listener)
        listener.close()
