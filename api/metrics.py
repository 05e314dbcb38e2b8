"""Prometheus metrics: requests, match latency and hits, index, sync and backlogs.

Each app has its own registry (tests build several apps in one process).
Labels are route templates, methods, statuses, hash types, sharing labels
and peer ids: never a path as sent, which may hold a hash value
(``GET /api/v1/match/{type}/{value}``), and never a list name, which a
principal holding only the ``metrics`` scope may not be cleared for.

Request counting is a pure ASGI middleware that keeps the labelled children
it has made, so the hot single-hash GET pays a dict lookup and an increment.
Everything read from the node (index sizes, lags, peer health, backlogs) is
collected at scrape time, not on the request path.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from api.deps import AppState

__all__ = ["MetricsMiddleware", "NodeMetrics"]

# Match answers take microseconds (one hash) to a second (100,000 hashes).
MATCH_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
MATCH_PREFIX = "/api/v1/match"
UNMATCHED = "unmatched"  # a 404's path is the caller's text: never a label


class NodeMetrics:
    """The node's metrics and the hooks that feed the scrape-time ones.

    Requests and match latencies are counted in plain dicts and lists by the
    middleware, which runs on the event loop's one thread (no lock), and
    exported at scrape time: a labelled prometheus_client child costs a lock
    and several attribute lookups per request, which is most of the price
    on the single-hash GET.
    """

    def __init__(self, state: Callable[[], AppState | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.match_queries = Counter(
            "hashfed_match_queries", "Hashes queried", registry=self.registry
        )
        self.match_hits = Counter(
            "hashfed_match_hits",
            "Hits answered (in lists the caller may see)",
            registry=self.registry,
        )
        # (route, method, status) -> requests; route -> [bucket counts..., +Inf count, sum].
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, list[float]] = {}
        # Queue name -> its length; the audit log's is built in, webhooks register theirs.
        self.backlogs: dict[str, Callable[[], int]] = {}
        self.registry.register(_RequestCollector(self))
        self.registry.register(_NodeCollector(state, self.backlogs))

    def register_backlog(self, queue: str, length: Callable[[], int]) -> None:
        """Report ``length()`` as ``hashfed_backlog{queue=...}`` at every scrape."""
        self.backlogs[queue] = length

    def matched(self, queries: int, hits: int) -> None:
        self.match_queries.inc(queries)
        if hits:
            self.match_hits.inc(hits)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request (on the event loop thread only)."""
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if route.startswith(MATCH_PREFIX):
            hist = self.latency.get(route)
            if hist is None:
                hist = self.latency[route] = [0.0] * (len(MATCH_BUCKETS) + 2)
            hist[bisect_left(MATCH_BUCKETS, seconds)] += 1
            hist[-1] += seconds


class _RequestCollector(Collector):
    def __init__(self, metrics: NodeMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "hashfed_http_requests",
            "HTTP requests answered, by route template, method and status",
            labels=["route", "method", "status"],
        )
        for (route, method, status), n in sorted(dict(self._m.requests).items()):
            requests.add_metric([route, method, str(status)], n)
        yield requests
        latency = HistogramMetricFamily(
            "hashfed_match_duration_seconds",
            "Time to answer a match request, by route template",
            labels=["route"],
        )
        for route, hist in sorted(dict(self._m.latency).items()):
            counts = list(hist)
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, in_bucket in zip((*MATCH_BUCKETS, float("inf")), counts[:-1], strict=True):
                cumulative += in_bucket
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric([route], buckets, sum_value=counts[-1])
        yield latency


class _NodeCollector(Collector):
    def __init__(
        self, state: Callable[[], AppState | None], backlogs: dict[str, Callable[[], int]]
    ) -> None:
        self._state = state
        self._backlogs = backlogs

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        if state is None:
            return
        index = GaugeMetricFamily(
            "hashfed_index_codes", "Hashes held in the match index, by hash type", labels=["type"]
        )
        memory = GaugeMetricFamily(
            "hashfed_index_memory_bytes",
            "Memory of the match index, by hash type",
            labels=["type"],
        )
        for name, st in sorted(state.matcher.stats().items()):
            index.add_metric([name], st["codes"])
            memory.add_metric([name], st["memory_bytes"])
        yield index
        yield memory
        follower = state.follower.status()
        yield GaugeMetricFamily(
            "hashfed_index_apply_lag_entries",
            "Committed entries not yet applied to this process's index",
            value=follower["lag_entries"],
        )
        yield GaugeMetricFamily(
            "hashfed_index_commit_to_applied_seconds",
            "Last commit-to-matchable delay of this process's index",
            value=(follower["last_commit_to_applied_ms"] or 0) / 1000,
        )
        hashes = GaugeMetricFamily(
            "hashfed_list_hashes",
            "Live hashes in the node's lists, by sharing label",
            labels=["label"],
        )
        lists = GaugeMetricFamily(
            "hashfed_lists", "Lists on the node, by sharing label", labels=["label"]
        )
        by_label: dict[str, list[int]] = {}
        store = state.node.store
        for row in store.all_lists():
            agg = by_label.setdefault(row.label, [0, 0])
            agg[0] += 1
            agg[1] += store.get_state(list_id=row.id).live_count
        for label, (count, live) in sorted(by_label.items()):
            lists.add_metric([label], count)
            hashes.add_metric([label], live)
        yield lists
        yield hashes
        yield from _peer_metrics(state)
        backlog = GaugeMetricFamily(
            "hashfed_backlog", "Records waiting to be written or sent, by queue", labels=["queue"]
        )
        backlog.add_metric(["audit"], state.audit.pending)
        for queue, length in sorted(self._backlogs.items()):
            backlog.add_metric([queue], length())
        yield backlog
        yield GaugeMetricFamily(
            "hashfed_audit_lost",
            "Audit records given up on (a gap record will say so)",
            value=state.audit.lost,
        )


def _peer_metrics(state: AppState) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "hashfed_peer_sync_lag_entries",
        "Entries a peer offers that we do not hold yet",
        labels=["peer"],
    )
    failures = GaugeMetricFamily(
        "hashfed_peer_sync_failures", "Consecutive failed pulls from a peer", labels=["peer"]
    )
    age = GaugeMetricFamily(
        "hashfed_peer_last_success_age_seconds",
        "Seconds since the last good pull from a peer",
        labels=["peer"],
    )
    now_ms = time.time() * 1000
    for row in state.node.store.peer_health():
        peer = str(row["peer"])
        lag.add_metric([peer], row["lag_entries"] or 0)
        failures.add_metric([peer], row["failures"] or 0)
        if row["last_success_ms"]:
            age.add_metric([peer], max(0.0, (now_ms - row["last_success_ms"]) / 1000))
    yield lag
    yield failures
    yield age


class MetricsMiddleware:
    """Count every HTTP request by the route template it matched and its status."""

    def __init__(self, app: Any, *, metrics: NodeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before answering
        start = time.perf_counter()

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            self.metrics.observe(template, scope["method"], status, time.perf_counter() - start)
