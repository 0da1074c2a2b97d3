"""Counters of one router process, rendered in the Prometheus text format.

Each worker process (``--workers N``) keeps its own counters; a scrape sees the worker that
accepted it. Counters are plain integers: everything runs on one Trio thread.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class MetricsSnapshot:
    """An immutable copy of the counters (what :meth:`Metrics.statistics` returns)."""

    requests: int
    responses_by_class: dict[str, int]
    upstream_errors: int
    websockets_open: int
    websockets_total: int
    connections_open: int
    connections_rejected: int
    resolver_cache_hits: int
    resolver_cache_misses: int
    resolver_errors: int


class Metrics:
    """Mutable counters updated by the proxy, resolver and server."""

    __slots__ = (
        "connections_open",
        "connections_rejected",
        "requests",
        "resolver_cache_hits",
        "resolver_cache_misses",
        "resolver_errors",
        "responses",
        "upstream_errors",
        "websockets_open",
        "websockets_total",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.responses = [0, 0, 0, 0, 0, 0]  # index = status // 100
        self.upstream_errors = 0
        self.websockets_open = 0
        self.websockets_total = 0
        self.connections_open = 0
        self.connections_rejected = 0
        self.resolver_cache_hits = 0
        self.resolver_cache_misses = 0
        self.resolver_errors = 0

    def response(self, status: int) -> None:
        """Count one response with this status code."""
        self.responses[min(max(status // 100, 1), 5)] += 1

    def statistics(self) -> MetricsSnapshot:
        """An immutable snapshot of the counters."""
        return MetricsSnapshot(
            requests=self.requests,
            responses_by_class={f"{i}xx": self.responses[i] for i in range(1, 6)},
            upstream_errors=self.upstream_errors,
            websockets_open=self.websockets_open,
            websockets_total=self.websockets_total,
            connections_open=self.connections_open,
            connections_rejected=self.connections_rejected,
            resolver_cache_hits=self.resolver_cache_hits,
            resolver_cache_misses=self.resolver_cache_misses,
            resolver_errors=self.resolver_errors,
        )

    def render(self) -> str:
        """The Prometheus text exposition of every counter."""
        s = self.statistics()
        out = [
            "# HELP amicable_preview_requests_total Requests received (all hosts).",
            "# TYPE amicable_preview_requests_total counter",
            f"amicable_preview_requests_total {s.requests}",
            "# HELP amicable_preview_responses_total Responses sent, by status class.",
            "# TYPE amicable_preview_responses_total counter",
        ]
        out += [
            f'amicable_preview_responses_total{{code="{cls}"}} {n}'
            for cls, n in s.responses_by_class.items()
        ]
        for name, kind, help_, value in (
            (
                "upstream_errors_total",
                "counter",
                "Upstream connect/read failures.",
                s.upstream_errors,
            ),
            ("websockets_open", "gauge", "Upgraded connections being relayed.", s.websockets_open),
            ("websockets_total", "counter", "Upgraded connections relayed.", s.websockets_total),
            ("connections_open", "gauge", "Client connections open.", s.connections_open),
            (
                "connections_rejected_total",
                "counter",
                "Connections over the limit.",
                s.connections_rejected,
            ),
            (
                "resolver_cache_hits_total",
                "counter",
                "Resolver answers served from cache.",
                s.resolver_cache_hits,
            ),
            (
                "resolver_cache_misses_total",
                "counter",
                "Resolver lookups not in cache.",
                s.resolver_cache_misses,
            ),
            (
                "resolver_errors_total",
                "counter",
                "Resolver failures (answered 503).",
                s.resolver_errors,
            ),
        ):
            out += [
                f"# HELP amicable_preview_{name} {help_}",
                f"# TYPE amicable_preview_{name} {kind}",
                f"amicable_preview_{name} {value}",
            ]
        return "\n".join(out) + "\n"
