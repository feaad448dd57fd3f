"""``Telemetry``: what the doors, the store and the cluster client report to.

One object per gateway, with metrics, traces, both or neither. The hot paths call it
unconditionally; what is off costs an attribute test. ``service.observability.tracing``
(OpenTelemetry) is imported only by ``with_tracing``: with tracing off, no OpenTelemetry
module is loaded at all.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from service.observability.metrics import GatewayMetrics

if TYPE_CHECKING:
    from yarl import URL

    from service.observability.tracing import ServerSpan, Tracing


def exporter_path(_url: URL) -> tuple[str, dict[str, str]]:
    """A DataExport block endpoint's paths name the volume: one template for all."""
    return "/{dataexport}", {"k8s.resource": "dataexports"}

# One DEBUG line per call (an access log, off at the default INFO level).
log = logging.getLogger("dvp.calls")

# Codes a call can end with besides service.core.errors.Code: success, and the caller
# going away (gRPC's own CANCELLED; on REST, a client that hung up mid-stream).
OK = "OK"
CANCELLED = "CANCELLED"


class CallScope:
    """One call as the telemetry sees it, from its arrival to ``end``."""

    __slots__ = ("_metrics", "_span", "_started", "_streaming", "method", "outcome", "protocol")

    def __init__(self, method: str, protocol: str, metrics: GatewayMetrics | None, span: ServerSpan | None) -> None:
        self.method = method
        self.protocol = protocol
        # A code decided inside the call (a stream that ended with an error event) that
        # the door's own view of the response would not show.
        self.outcome = ""
        self._metrics = metrics
        self._span = span
        self._started = time.perf_counter()
        self._streaming = False

    @property
    def traced(self) -> bool:
        """Whether the call has a span (what only a span needs can then be skipped)."""
        return self._span is not None

    def caller(self, subject: str) -> None:
        if self._span is not None:
            self._span.set("enduser.id", subject)

    def operation(self, operation_id: str) -> None:
        if self._span is not None and operation_id:
            self._span.set("dvp.operation_id", operation_id)

    def streaming(self) -> None:
        """The call is now a stream that stays open (the open streams gauge)."""
        if not self._streaming and self._metrics is not None:
            self._metrics.stream_opened(self.method, self.protocol)
        self._streaming = True

    def end(self, code: str) -> None:
        code = self.outcome or code
        seconds = time.perf_counter() - self._started
        if self._metrics is not None:
            if self._streaming:
                self._metrics.stream_closed(self.method, self.protocol)
            self._metrics.call_finished(self.method, self.protocol, code, seconds)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s answered %s in %.1f ms", self.protocol, self.method, code, seconds * 1000)
        if self._span is not None:
            self._span.end(code)


class Telemetry:
    def __init__(self, metrics: GatewayMetrics | None = None, tracing: Tracing | None = None) -> None:
        self.metrics = metrics
        self.tracing = tracing

    @classmethod
    def off(cls) -> Telemetry:
        return cls()

    @property
    def traced(self) -> bool:
        return self.tracing is not None

    @classmethod
    def with_tracing(cls, metrics: GatewayMetrics | None, *, endpoint: str = "",
                     provider: Any = None) -> Telemetry:
        """Traces exported over OTLP to ``endpoint`` (a StartupError when the exporter
        is not installed), or to the spans processors of an SDK ``provider`` given."""
        from service.observability.tracing import Tracing

        tracing = Tracing(provider) if provider is not None else Tracing.otlp(endpoint)
        return cls(metrics, tracing)

    # ------------------------------------------------------------ calls (the doors)

    def call(self, method: str, protocol: str, request_id: str, carrier: Mapping[str, str] | None = None, *,
             span_name: str = "", attributes: Mapping[str, str] | None = None) -> CallScope:
        """A call begins: its server span (continuing a ``traceparent`` in ``carrier``)
        becomes the current span of the task, so its children find it."""
        span = None
        if self.tracing is not None:
            span = self.tracing.server_span(span_name or method, carrier or {}, {
                "dvp.method": method, "dvp.protocol": protocol, "dvp.request_id": request_id, **(attributes or {})})
        return CallScope(method, protocol, self.metrics, span)

    def exported(self, kind: str, protocol: str, size: int) -> None:
        if self.metrics is not None and size:
            self.metrics.exported(kind, protocol, size)

    # ------------------------------------------------------------ the cluster

    def watch_restarted(self, kind: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.watch_restarted(kind, reason)

    def cluster_trace_configs(self, *, exporter: bool = False) -> list[Any]:
        """aiohttp ``TraceConfig``s for a session that talks to the cluster's API (or,
        ``exporter``, to a DataExport's block endpoint)."""
        if self.tracing is None:
            return []
        return [self.tracing.client_trace_config(exporter_path if exporter else None)]

    # ------------------------------------------------------------ the store

    def span_context(self) -> object | None:
        """The current span (to link a shared database batch to), or None."""
        return self.tracing.current_span_context() if self.tracing is not None else None

    @contextlib.contextmanager
    def db_batch(self, parents: Sequence[object | None]) -> Iterator[None]:
        """Around one group-commit transaction serving the calls ``parents`` name."""
        if self.tracing is None:
            yield
            return
        with self.tracing.batch_span(parents):
            yield

    def batch_committed(self, size: int, seconds: float, reached: Sequence[tuple[str, str]]) -> None:
        if self.metrics is None:
            return
        self.metrics.batch_committed(size, seconds)
        for op_type, state in reached:
            self.metrics.operation_reached(op_type, state)

    def instrument_engine(self, sync_engine: Any) -> None:
        if self.tracing is not None:
            self.tracing.instrument_engine(sync_engine)

    async def close(self) -> None:
        if self.tracing is not None:
            await self.tracing.close()
