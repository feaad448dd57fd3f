"""OpenTelemetry traces: imported only when tracing is on (``Telemetry.with_tracing``).

- a server span per call on both doors, continuing the caller's W3C ``traceparent``
  (HTTP header, gRPC metadata), current in the call's task so its children find it;
- a client span per cluster HTTP request (aiohttp ``TraceConfig``), the ``traceparent``
  passed on to the cluster;
- a client span per SQL statement (SQLAlchemy cursor events), and a span per
  group-commit transaction: one transaction serves several calls, so its span is a
  child of the first call it serves and links the others.

Work no call asked for (watches, the reconciler's resyncs) starts no trace: a span is
only made under a current one, so background loops do not flood the collector with
root spans. The provider is the gateway's own (never the process-global one): tests
give theirs, and several gateways in one process keep their spans apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from typing import Any

import aiohttp
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from yarl import URL

from service.log import request_id_var, trace_id_var
from service.settings import StartupError

SERVICE_NAME = "dvp-snapshot-gateway"
OTLP_EXTRA = "pip install 'dvp-snapshot-gateway[otlp]'"
# The canonical codes that are the server's failure (OpenTelemetry's gRPC conventions);
# the others are the caller's (NOT_FOUND, INVALID_ARGUMENT...) and leave the span unset.
SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
                           "DATA_LOSS"})
# Statement text is kept (placeholders only, never values), cut to this length.
MAX_STATEMENT = 2048
_SPAN = "_dvp_span"   # where a statement's span waits between cursor events


def _version() -> str:
    try:
        return metadata.version(SERVICE_NAME)
    except metadata.PackageNotFoundError:
        return "unknown"


def resource() -> Resource:
    return Resource.create({"service.name": SERVICE_NAME, "service.version": _version()})


class ServerSpan:
    """A call's span, current in its task until ``end``; its trace id is on the call's
    log lines meanwhile."""

    __slots__ = ("_span", "_token", "_trace_token")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._token = otel_context.attach(trace.set_span_in_context(span))
        context = span.get_span_context()
        self._trace_token = trace_id_var.set(trace.format_trace_id(context.trace_id)) if context.is_valid else None

    def set(self, key: str, value: str) -> None:
        self._span.set_attribute(key, value)

    def end(self, code: str) -> None:
        self._span.set_attribute("dvp.status_code", code)
        if code in SERVER_ERRORS:
            self._span.set_status(Status(StatusCode.ERROR, code))
        try:
            otel_context.detach(self._token)
            if self._trace_token is not None:
                # A call ended from another context must not fail for it (OTel's
                # detach tolerates that too); that context's value is its own.
                with contextlib.suppress(ValueError):
                    trace_id_var.reset(self._trace_token)
        finally:
            self._span.end()


class Tracing:
    def __init__(self, provider: TracerProvider, *, owned: bool = False) -> None:
        self.provider = provider
        self._owned = owned   # built here: shut down (exporting what is queued) on close
        self.tracer = provider.get_tracer("service.observability")
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def otlp(cls, endpoint: str) -> Tracing:
        """Spans batched and sent over OTLP/gRPC to ``endpoint`` (empty: the exporter's
        default, which honours the OTEL_EXPORTER_OTLP_* env vars)."""
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise StartupError(f"--tracing: the OTLP exporter is not installed: {OTLP_EXTRA}") from None
        provider = TracerProvider(resource=resource())
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint or None)))
        return cls(provider, owned=True)

    async def close(self) -> None:
        if self._owned:
            # Exports what is queued: blocking network I/O, so off the event loop (a
            # collector in this process would otherwise never get to answer).
            await asyncio.to_thread(self.provider.shutdown)

    # ------------------------------------------------------------ calls

    def server_span(self, name: str, carrier: Mapping[str, str], attributes: Mapping[str, str]) -> ServerSpan:
        parent = self._propagator.extract(carrier)
        return ServerSpan(self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER,
                                                 attributes=dict(attributes)))

    # ------------------------------------------------------------ cluster HTTP

    def client_trace_config(self, describe: Callable[[URL], tuple[str, dict[str, str]]] | None = None
                            ) -> aiohttp.TraceConfig:
        """Client spans for a session's requests, ``traceparent`` added to each."""
        describe = describe or kubernetes_path
        tracer, propagator = self.tracer, self._propagator
        config = aiohttp.TraceConfig()

        async def start(_: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
            ctx.span = None
            if not trace.get_current_span().get_span_context().is_valid:
                return
            template, extra = describe(params.url)
            attributes: dict[str, str | int] = {"http.request.method": params.method, "url.template": template,
                          "server.address": params.url.host or "", "server.port": params.url.port or 0, **extra}
            if rid := request_id_var.get():
                attributes["dvp.request_id"] = rid
            span = tracer.start_span(f"{params.method} {template}", kind=SpanKind.CLIENT, attributes=attributes)
            propagator.inject(params.headers, context=trace.set_span_in_context(span))
            ctx.span = span

        async def end(_: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
            span: Span | None = ctx.span
            if span is not None:
                status = params.response.status
                span.set_attribute("http.response.status_code", status)
                if status >= 400:
                    span.set_status(Status(StatusCode.ERROR, str(status)))
                span.end()

        async def failed(_: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestExceptionParams) -> None:
            span: Span | None = ctx.span
            if span is not None:
                span.set_attribute("error.type", type(params.exception).__name__)
                span.set_status(Status(StatusCode.ERROR, type(params.exception).__name__))
                span.end()

        config.on_request_start.append(start)
        config.on_request_end.append(end)
        config.on_request_exception.append(failed)
        config.freeze()
        return config

    # ------------------------------------------------------------ the database

    def current_span_context(self) -> SpanContext | None:
        span_context = trace.get_current_span().get_span_context()
        return span_context if span_context.is_valid else None

    @contextlib.contextmanager
    def batch_span(self, parents: Sequence[object | None]) -> Iterator[None]:
        served = [p for p in parents if isinstance(p, SpanContext)]
        if not served:
            # Only background writes: no trace, and none inherited from whoever started
            # the writer task.
            token = otel_context.attach(otel_context.Context())
            try:
                yield
            finally:
                otel_context.detach(token)
            return
        parent = trace.set_span_in_context(NonRecordingSpan(served[0]))
        span = self.tracer.start_span("db.group_commit", context=parent, kind=SpanKind.INTERNAL,
                                      links=[Link(p) for p in served[1:]],
                                      attributes={"db.batch.size": len(parents), "dvp.batch.traced_calls": len(served)})
        with trace.use_span(span, end_on_exit=True):
            yield

    def instrument_engine(self, engine: Any) -> None:
        """A client span per statement ``engine`` (a sync ``Engine``) runs under a span."""
        from sqlalchemy import event

        system = engine.dialect.name
        tracer = self.tracer

        def before(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
            if context is None or not trace.get_current_span().get_span_context().is_valid:
                return
            verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
            attributes = {"db.system.name": system, "db.operation.name": verb,
                          "db.query.text": statement[:MAX_STATEMENT]}
            if rid := request_id_var.get():
                attributes["dvp.request_id"] = rid
            setattr(context, _SPAN, tracer.start_span(f"{verb} {system}", kind=SpanKind.CLIENT,
                                                      attributes=attributes))

        def after(_conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool) -> None:
            span: Span | None = getattr(context, _SPAN, None)
            if span is not None:
                setattr(context, _SPAN, None)
                span.end()

        def failed(exception_context: Any) -> None:
            span: Span | None = getattr(exception_context.execution_context, _SPAN, None)
            if span is not None:
                setattr(exception_context.execution_context, _SPAN, None)
                error = exception_context.original_exception
                span.set_attribute("error.type", type(error).__name__)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                span.end()

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        event.listen(engine, "handle_error", failed)


def kubernetes_path(url: URL) -> tuple[str, dict[str, str]]:
    """``/apis/G/V/namespaces/{namespace}/PLURAL/{name}/SUB`` for a Kubernetes API path
    (names and namespaces out: a template, not one object), and the resource."""
    parts = url.path.strip("/").split("/")
    head = 2 if parts[:1] == ["api"] else 3 if parts[:1] == ["apis"] else 0
    if not head:
        return "/{path}", {}
    template, rest = parts[:head], parts[head:]
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        template += ["namespaces", "{namespace}"]
        rest = rest[2:]
    extra = {}
    if rest:
        template.append(rest[0])
        extra["k8s.resource"] = rest[0]
    if len(rest) > 1:
        template.append("{name}")
        template += rest[2:]
    if url.query.get("watch") in ("true", "1"):
        extra["k8s.watch"] = "true"
    return "/" + "/".join(template), extra
