"""OpenTelemetry traces and the request id (docs/observability.md): a create is one trace
from the door through the database to the cluster; the request id a caller chose is in
the span, its children, a log line and the audit event; spans reach a real OTLP receiver."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service.api.grpc_gen.dvp.snapshots.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc
from service.embedded_cluster.server import EmbeddedCluster
from service.log import _JsonFormatter
from service.observability.telemetry import Telemetry
from service.observability.tracing import kubernetes_path
from service.settings import StartupError, UsageError, from_env
from tests.support.gateway import GatewayServer, start_gateway
from tests.support.waiting import wait_for

sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DISK = "linux-vm-root"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(embedded_cluster: EmbeddedCluster, database_url: str, tmp_path: Path,
                 spans: InMemorySpanExporter) -> AsyncIterator[GatewayServer]:
    """A gateway tracing into ``spans`` (through its composition: no global provider)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app, tokens, kubeconfig = await start_gateway(embedded_cluster, database_url, tmp_path,
                                                  tracer_provider=provider)
    try:
        yield GatewayServer(app=app, cluster=embedded_cluster, tokens=tokens, kubeconfig=kubeconfig)
    finally:
        await app.stop()
        provider.shutdown()


@pytest.fixture
def call_log() -> Iterator[io.StringIO]:
    """The gateway's per-call log lines, formatted as ``dvp-gateway serve`` writes them."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(_JsonFormatter())
    logger = logging.getLogger("dvp.calls")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def create(server: GatewayServer, door: str, name: str, request_id: str) -> str:
    """CreateDiskSnapshot through ``door`` with a ``traceparent`` and the request id; the
    operation id."""
    if door == "grpc":
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            op = await snapshot_service_pb2_grpc.SnapshotServiceStub(channel).CreateDiskSnapshot(
                snapshot_service_pb2.CreateDiskSnapshotRequest(namespace="demo", name=name, virtual_disk_name=DISK),
                metadata=(("authorization", f"Bearer {server.token}"), ("x-request-id", request_id),
                          ("traceparent", TRACEPARENT)), timeout=10)
            return str(op.id)
    async with aiohttp.ClientSession() as session, session.post(
            f"{server.rest_url}/v1/namespaces/demo/disk-snapshots", json={"name": name, "virtualDiskName": DISK},
            headers={**server.auth(), "X-Request-Id": request_id, "traceparent": TRACEPARENT}) as response:
        assert response.status == 202, await response.text()
        assert response.headers["X-Request-Id"] == request_id
        return str((await response.json())["id"])


def server_span(spans: InMemorySpanExporter, method: str, request_id: str) -> ReadableSpan:
    found = [s for s in spans.get_finished_spans()
             if s.kind is SpanKind.SERVER and s.attributes is not None
             and s.attributes.get("dvp.method") == method and s.attributes.get("dvp.request_id") == request_id]
    assert len(found) == 1, [s.name for s in spans.get_finished_spans()]
    return found[0]


def descendants(spans: InMemorySpanExporter, root: ReadableSpan) -> list[ReadableSpan]:
    """Every finished span under ``root`` (parent by parent)."""
    assert root.context is not None
    by_parent: dict[int, list[ReadableSpan]] = {}
    for span in spans.get_finished_spans():
        if span.parent is not None:
            by_parent.setdefault(span.parent.span_id, []).append(span)
    found, todo = [], [root.context.span_id]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            assert child.context is not None
            found.append(child)
            todo.append(child.context.span_id)
    return found


@pytest.mark.parametrize("door", ["grpc", "rest"])
@sqlite
async def test_a_create_is_one_trace_from_the_door_through_the_database_to_the_cluster(
        door: str, traced: GatewayServer, spans: InMemorySpanExporter) -> None:
    request_id = f"trace-{door}-{uuid.uuid4().hex[:8]}"
    operation_id = await create(traced, door, f"traced-{door}", request_id)

    root = server_span(spans, "CreateDiskSnapshot", request_id)
    assert root.context is not None and root.parent is not None
    # The caller's trace continues: same trace id, the caller's span as the parent.
    assert f"{root.context.trace_id:032x}" == TRACE_ID and f"{root.parent.span_id:016x}" == CALLER_SPAN
    assert root.attributes is not None
    assert {k: root.attributes.get(k) for k in ("dvp.protocol", "dvp.operation_id", "dvp.status_code",
                                                 "enduser.id")} == {
        "dvp.protocol": door, "dvp.operation_id": operation_id, "dvp.status_code": "OK", "enduser.id": "dev"}
    expected_name = ("dvp.snapshots.v1.SnapshotService/CreateDiskSnapshot" if door == "grpc"
                     else "POST /v1/namespaces/{namespace}/disk-snapshots")
    assert root.name == expected_name

    children = descendants(spans, root)
    assert {f"{s.context.trace_id:032x}" for s in children if s.context is not None} == {TRACE_ID}
    # The write-ahead row and its audit event: one group-commit transaction, its statements inside.
    batches = [s for s in children if s.name == "db.group_commit"]
    assert batches, [s.name for s in children]
    inserts = [s for s in descendants(spans, batches[0]) if s.name.startswith("INSERT")]
    assert inserts and all(s.kind is SpanKind.CLIENT for s in inserts)
    assert {s.attributes.get("db.system.name") for s in inserts if s.attributes is not None} == {"sqlite"}
    # The resource written to the cluster: a client span with the path template, no names.
    cluster = [s for s in children if s.kind is SpanKind.CLIENT and s.name.startswith("POST /apis/")]
    assert [s.name for s in cluster] == [
        "POST /apis/virtualization.deckhouse.io/v1alpha2/namespaces/{namespace}/virtualdisksnapshots"]
    assert cluster[0].attributes is not None
    assert cluster[0].attributes.get("http.response.status_code") == 201
    assert cluster[0].attributes.get("dvp.request_id") == request_id
    assert cluster[0].parent is not None and root.context.span_id in {
        s.context.span_id for s in [root, *children] if s.context is not None}
    # No token, and no object names, in any attribute of the trace.
    for span in [root, *children]:
        for value in (span.attributes or {}).values():
            assert traced.token not in str(value)
            assert f"traced-{door}" not in str(value)


@pytest.mark.parametrize("door", ["grpc", "rest"])
@sqlite
async def test_the_request_id_is_in_the_span_a_log_line_and_the_audit_event(
        door: str, traced: GatewayServer, spans: InMemorySpanExporter, call_log: io.StringIO) -> None:
    request_id = f"rid-{door}-{uuid.uuid4().hex}"
    operation_id = await create(traced, door, f"rid-{door}", request_id)

    # The span, and its children through the context (not a shared group-commit
    # transaction's: it serves other calls too, and links them instead).
    root = server_span(spans, "CreateDiskSnapshot", request_id)
    children = descendants(spans, root)
    shared = {id(s) for b in children if b.name == "db.group_commit" for s in [b, *descendants(spans, b)]}
    own = [s for s in children if id(s) not in shared]
    assert own and all(s.attributes is not None and s.attributes.get("dvp.request_id") == request_id for s in own)
    # A log line of the call.
    lines = [json.loads(line) for line in call_log.getvalue().splitlines()]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert len(mine) == 1, lines
    assert mine[0]["logger"] == "dvp.calls" and f"{door} CreateDiskSnapshot answered OK" in mine[0]["msg"]
    assert root.context is not None and mine[0]["trace_id"] == f"{root.context.trace_id:032x}"
    # The audit event, through the audit API.
    async with aiohttp.ClientSession() as session, session.get(
            f"{traced.rest_url}/v1/audit/events", params={"action": "CreateDiskSnapshot", "pageSize": "100"},
            headers=traced.auth()) as response:
        assert response.status == 200
        events = [e for e in (await response.json())["items"] if e["requestId"] == request_id]
    assert len(events) == 1
    assert events[0]["operationId"] == operation_id and events[0]["protocol"] == door


@sqlite
async def test_spans_reach_a_real_otlp_receiver(embedded_cluster: EmbeddedCluster, database_url: str,
                                                tmp_path: Path) -> None:
    received: list[trace_service_pb2.ExportTraceServiceRequest] = []

    class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
        async def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,  # type: ignore[override]
                         context: Any) -> trace_service_pb2.ExportTraceServiceResponse:
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    collector = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), collector)
    port = collector.add_insecure_port("127.0.0.1:0")
    await collector.start()
    try:
        app, tokens, _ = await start_gateway(embedded_cluster, database_url, tmp_path, tracing=True,
                                             otlp_endpoint=f"http://127.0.0.1:{port}")
        request_id = f"otlp-{uuid.uuid4().hex}"
        try:
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{app.rest_port}/v1/namespaces/demo/disk-snapshots",
                    headers={"Authorization": f"Bearer {tokens['dev']}", "X-Request-Id": request_id}) as response:
                assert response.status == 200
        finally:
            await app.stop()   # sends what is batched (off the event loop, so this receiver answers)
    finally:
        await collector.stop(None)

    resources = [r for request in received for r in request.resource_spans]
    assert resources, "no spans arrived"
    names = {a.value.string_value for r in resources for a in r.resource.attributes if a.key == "service.name"}
    assert names == {"dvp-snapshot-gateway"}
    spans = [s for r in resources for scope in r.scope_spans for s in scope.spans]
    attributes = [{a.key: a.value.string_value for a in s.attributes} for s in spans]
    mine = [a for a in attributes if a.get("dvp.request_id") == request_id and a.get("dvp.method")]
    assert mine == [{**mine[0], "dvp.method": "ListDiskSnapshots", "dvp.protocol": "rest",
                     "dvp.status_code": "OK", "enduser.id": "dev"}]


async def test_cluster_requests_carry_the_traceparent_of_their_span(spans: InMemorySpanExporter) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("traceparent", ""))
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/apis/g.io/v1/namespaces/ns/things/one", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    telemetry = Telemetry.with_tracing(None, provider=provider)
    try:
        async with aiohttp.ClientSession(trace_configs=telemetry.cluster_trace_configs()) as session:
            url = f"http://127.0.0.1:{port}/apis/g.io/v1/namespaces/ns/things/one"
            async with session.get(url) as response:   # no call in progress: no span, no header
                assert response.status == 200
            scope = telemetry.call("GetThing", "rest", "rid-1")
            async with session.get(url) as response:
                assert response.status == 200
            scope.end("OK")
    finally:
        await runner.cleanup()
    assert seen[0] == ""
    client = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT)
    assert client.context is not None
    assert seen[1].startswith(f"00-{client.context.trace_id:032x}-{client.context.span_id:016x}-")
    assert client.name == "GET /apis/g.io/v1/namespaces/{namespace}/things/{name}"
    assert client.attributes is not None and client.attributes.get("dvp.request_id") is None


def test_kubernetes_paths_become_templates() -> None:
    from yarl import URL

    assert kubernetes_path(URL("https://h/apis/g.io/v1/namespaces/ns/things/a/status")) == (
        "/apis/g.io/v1/namespaces/{namespace}/things/{name}/status", {"k8s.resource": "things"})
    assert kubernetes_path(URL("https://h/api/v1/namespaces/ns/secrets/s")) == (
        "/api/v1/namespaces/{namespace}/secrets/{name}", {"k8s.resource": "secrets"})
    assert kubernetes_path(URL("https://h/apis/g.io/v1/things?watch=true")) == (
        "/apis/g.io/v1/things", {"k8s.resource": "things", "k8s.watch": "true"})
    assert kubernetes_path(URL("https://h/apis/g.io/v1")) == ("/apis/g.io/v1", {})
    assert kubernetes_path(URL("https://h/version")) == ("/{path}", {})


def test_tracing_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert from_env({}).tracing is False
    assert from_env({"DVP_GATEWAY_TRACING": "on", "DVP_GATEWAY_OTLP_ENDPOINT": "http://collector:4317"}
                    ).otlp_endpoint == "http://collector:4317"
    with pytest.raises(UsageError, match="--otlp-endpoint needs --tracing"):
        from_env({"DVP_GATEWAY_OTLP_ENDPOINT": "http://collector:4317"})
    with pytest.raises(UsageError, match="DVP_GATEWAY_OTLP_ENDPOINT"):
        from_env({"DVP_GATEWAY_TRACING": "on", "DVP_GATEWAY_OTLP_ENDPOINT": "collector"})
    # Without the exporter package: one line naming what to install.
    monkeypatch.setitem(__import__("sys").modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    with pytest.raises(StartupError) as missing:
        Telemetry.with_tracing(None, endpoint="http://collector:4317")
    assert str(missing.value) == ("--tracing: the OTLP exporter is not installed: "
                                  "pip install 'dvp-snapshot-gateway[otlp]'")


@sqlite
async def test_background_work_starts_no_trace(traced: GatewayServer, spans: InMemorySpanExporter) -> None:
    await create(traced, "rest", "background", f"bg-{uuid.uuid4().hex}")
    spans.clear()
    # The reconciler follows the snapshot to its end (saves through the group commit),
    # resyncs every 0.2 s, and the hub watches: none of it is a call, so none is a trace.
    await asyncio.sleep(1.0)
    assert [s.name for s in spans.get_finished_spans()] == []


@pytest.mark.parametrize("door", ["grpc", "rest"])
@sqlite
async def test_a_traced_watch_is_one_span_ended_when_the_caller_hangs_up(
        door: str, traced: GatewayServer, spans: InMemorySpanExporter, call_log: io.StringIO) -> None:
    await create(traced, door, f"watched-{door}", f"setup-{uuid.uuid4().hex}")
    request_id = f"watch-{door}-{uuid.uuid4().hex}"
    if door == "grpc":
        async with grpc.aio.insecure_channel(traced.grpc_target) as channel:
            call = snapshot_service_pb2_grpc.SnapshotServiceStub(channel).WatchDiskSnapshots(
                snapshot_service_pb2.WatchDiskSnapshotsRequest(namespace="demo"),
                metadata=(("authorization", f"Bearer {traced.token}"), ("x-request-id", request_id)))
            async with asyncio.timeout(10):
                assert (await call.read()).snapshot.name == f"watched-{door}"
            call.cancel()
    else:
        async with aiohttp.ClientSession() as session, session.get(
                f"{traced.rest_url}/v1/namespaces/demo/disk-snapshots:watch",
                headers={**traced.auth(), "X-Request-Id": request_id}) as response:
            async with asyncio.timeout(10):
                while not (line := await response.content.readline()).startswith(b"data:"):
                    pass
            assert f"watched-{door}".encode() in line
    # The next event's write finds a hung-up SSE client out (gRPC knows at once); the
    # gateway serves on.
    await create(traced, door, f"after-{door}", f"after-{uuid.uuid4().hex}")
    await wait_for(lambda: any(s.attributes is not None and s.attributes.get("dvp.request_id") == request_id
                               and s.kind is SpanKind.SERVER for s in spans.get_finished_spans()),
                   "the watch's span did not end", limit=10)
    root = server_span(spans, "WatchDiskSnapshots", request_id)
    assert root.attributes is not None and root.attributes.get("dvp.status_code") == "CANCELLED"
    # The call's own log line carries the watch's trace id.
    lines = [json.loads(line) for line in call_log.getvalue().splitlines()]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert root.context is not None and [line.get("trace_id") for line in mine] == [f"{root.context.trace_id:032x}"]
