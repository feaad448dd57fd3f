"""The gateway's Prometheus metrics, on a registry of their own (one per ``GatewayApp``:
several gateways in one process do not collide, and nothing else leaks in).

Labels are bounded sets only: contract method names, canonical codes, protocols,
operation types and states, resource kinds. Never a resource name, a namespace, a
subject or an operation id.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector
from sqlalchemy.pool import Pool, QueuePool

PREFIX = "dvp_gateway"
# 1 ms to 30 s: a cached read answers in about a millisecond, a create in a few, a
# cluster timeout takes 15 s; streams (watches, exports) land in the last buckets.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Group-commit batches hold up to 256 jobs (store.group_commit.MAX_BATCH).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
UNKNOWN_METHOD = "unknown"


class GatewayMetrics:
    """Every metric of one gateway; the methods are what the hot paths call."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(f"{PREFIX}_requests", "Calls answered, by contract method, canonical code "
                                "(OK, NOT_FOUND...: the same on both doors) and protocol; streams count when "
                                "they end", ("method", "code", "protocol"), registry=r)
        self.request_seconds = Histogram(f"{PREFIX}_request_duration_seconds", "Time from a call's arrival to "
                                         "its answer (a stream: to its end)", ("method", "protocol"),
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.open_streams = Gauge(f"{PREFIX}_open_streams", "Streams open now (watches, exports, audit "
                                  "streams)", ("method", "protocol"), registry=r)
        self.operations = Counter(f"{PREFIX}_operations", "Operations this replica stored in each state "
                                  "(created in one, or moved to it)", ("type", "state"), registry=r)
        self.watch_restarts = Counter(f"{PREFIX}_watch_restarts", "Times the watch hub listed or watched "
                                      "the cluster again, by resource kind and reason", ("kind", "reason"),
                                      registry=r)
        self.export_bytes = Counter(f"{PREFIX}_export_bytes", "Bytes of disk images delivered by exports "
                                    "(holes included, as the image's length counts them)", ("kind", "protocol"),
                                    registry=r)
        self.batch_size = Histogram(f"{PREFIX}_db_batch_size", "Writes (operation rows, saves, audit events) "
                                    "committed together in one group-commit transaction", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.transaction_seconds = Histogram(f"{PREFIX}_db_transaction_duration_seconds", "Time a group-commit "
                                             "transaction took, from its start to its commit",
                                             buckets=LATENCY_BUCKETS, registry=r)
        # labels() takes a lock and builds a tuple; the few label sets a call uses are kept.
        self._children: dict[tuple[object, ...], MetricWrapperBase] = {}
        self._pool: PoolCollector | None = None

    def _child(self, metric: MetricWrapperBase, *labels: str) -> MetricWrapperBase:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def call_finished(self, method: str, protocol: str, code: str, seconds: float) -> None:
        self._child(self.requests, method, code, protocol).inc()   # type: ignore[attr-defined]
        self._child(self.request_seconds, method, protocol).observe(seconds)   # type: ignore[attr-defined]

    def stream_opened(self, method: str, protocol: str) -> None:
        self._child(self.open_streams, method, protocol).inc()   # type: ignore[attr-defined]

    def stream_closed(self, method: str, protocol: str) -> None:
        self._child(self.open_streams, method, protocol).dec()   # type: ignore[attr-defined]

    def operation_reached(self, op_type: str, state: str) -> None:
        self._child(self.operations, op_type, state).inc()   # type: ignore[attr-defined]

    def watch_restarted(self, kind: str, reason: str) -> None:
        self._child(self.watch_restarts, kind, reason).inc()   # type: ignore[attr-defined]

    def exported(self, kind: str, protocol: str, size: int) -> None:
        self._child(self.export_bytes, kind, protocol).inc(size)   # type: ignore[attr-defined]

    def batch_committed(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.transaction_seconds.observe(seconds)

    def observe_pool(self, pool: Pool) -> None:
        """Report ``pool``'s connections at every scrape (a pool without a size, such as
        ``NullPool``, has nothing to report)."""
        if self._pool is not None:
            self.registry.unregister(self._pool)
        self._pool = PoolCollector(pool)
        self.registry.register(self._pool)


class PoolCollector(Collector):
    """The database pool read at scrape time: counts the pool keeps anyway, so nothing is
    added to the hot path. Scrapes run on the event loop, as every use of the pool does."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())   # the samples depend on the pool: not described up front

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pool = self._pool
        if not isinstance(pool, QueuePool):
            return
        size, in_use, idle, overflow = pool.size(), pool.checkedout(), pool.checkedin(), max(0, pool.overflow())
        max_overflow = getattr(pool, "_max_overflow", 0)
        sizes = GaugeMetricFamily(f"{PREFIX}_db_pool_size", "Connections the database pool keeps "
                                  "(size), and may open at most (max: size plus overflow)", labels=("limit",))
        sizes.add_metric(("size",), size)
        sizes.add_metric(("max",), size + max(0, max_overflow))
        yield sizes
        connections = GaugeMetricFamily(f"{PREFIX}_db_pool_connections", "Database connections open now, "
                                        "in use by a call or idle in the pool", labels=("state",))
        connections.add_metric(("in_use",), in_use)
        connections.add_metric(("idle",), idle)
        yield connections
        yield GaugeMetricFamily(f"{PREFIX}_db_pool_overflow", "Connections open beyond the pool's size now",
                                value=overflow)
