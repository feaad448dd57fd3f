"""The gRPC adapter over real channels, against a small hand-written facade.

Only the adapter is under test here (metadata, error mapping with google.rpc details,
conversion, streaming, health, reflection); the end-to-end behaviour of the real core
is in test_grpc_disk_snapshots.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from service.api.grpc import SERVICE_NAMES, start_grpc_server
from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    clone_service_pb2,
    clone_service_pb2_grpc,
    common_pb2,
    export_service_pb2,
    export_service_pb2_grpc,
    operation_pb2,
    operation_service_pb2,
    operation_service_pb2_grpc,
    restore_service_pb2,
    restore_service_pb2_grpc,
    snapshot_service_pb2,
    snapshot_service_pb2_grpc,
)
from service.core import errors
from service.core.domain import (
    AuditEvent,
    AuditOutcome,
    AuditVerification,
    Caller,
    DiskSnapshot,
    DiskSnapshotEvent,
    Operation,
    OperationState,
    OperationTransition,
    OperationType,
    Page,
    RequestContext,
    ResourceRef,
    WatchEventType,
)
from service.core.errors import ApiError, FieldViolation, PreconditionViolation
from service.core.requests import (
    CreateDiskSnapshotRequest,
    DeleteDiskSnapshotRequest,
    ListAuditEventsRequest,
    ListOperationsRequest,
    ListRequest,
)

TOKEN = "s3cr3t-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _op(op_id: str = "op-1", state: OperationState = OperationState.PENDING, version: int = 1) -> Operation:
    return Operation(id=op_id, type=OperationType.CREATE_DISK_SNAPSHOT, namespace="demo",
                     target=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", "d", "demo"),
                     actor="alice", request_hash="h", state=state, version=version, create_time=T0, update_time=T0)


def _snap(name: str, phase: str = "Ready") -> DiskSnapshot:
    return DiskSnapshot(namespace="demo", name=name, virtual_disk_name="d", required_consistency=True, phase=phase)


@dataclass
class FakeGateway:
    """Answers by request content so each test can provoke one behaviour."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    contexts: list[RequestContext] = field(default_factory=list)
    watch_closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def authenticate(self, authorization: str | None, *, action: str, protocol: str,
                           peer: str = "", request_id: str = "") -> Caller:
        self.calls.append(("authenticate", (action, protocol, peer, request_id)))
        if authorization != f"Bearer {TOKEN}":
            raise errors.unauthenticated()
        return Caller("alice", ("operators",))

    async def create_disk_snapshot(self, ctx: RequestContext, req: CreateDiskSnapshotRequest) -> Operation:
        self.contexts.append(ctx)
        self.calls.append(("create_disk_snapshot", req))
        match req.virtual_disk_name:
            case "bad":
                raise errors.invalid_argument("invalid request", [
                    FieldViolation("name", "must be a DNS-1123 subdomain"),
                    FieldViolation("virtual_disk_name", "must not be empty")])
            case "missing":
                raise errors.not_found("VirtualDisk", "missing", "demo")
            case "running":
                raise errors.failed_precondition("VM_RUNNING", "the VM is running", [
                    PreconditionViolation("VM_RUNNING", "virtualmachines/linux-vm", "stop the VM first")])
            case "busy":
                raise errors.unavailable("cluster unreachable", retry_after_seconds=3)
            case "reused":
                raise errors.idempotency_conflict(req.request_id)
            case "crash":
                raise RuntimeError("database password=hunter2 leaked in a traceback")
        return _op()

    async def get_disk_snapshot(self, ctx: RequestContext, namespace: str, name: str) -> DiskSnapshot:
        return _snap(name)

    async def list_disk_snapshots(self, ctx: RequestContext, req: ListRequest) -> Page[DiskSnapshot]:
        self.calls.append(("list_disk_snapshots", req))
        return Page([_snap("a"), _snap("b")], next_page_token="next")

    async def delete_disk_snapshot(self, ctx: RequestContext, req: DeleteDiskSnapshotRequest) -> Operation:
        self.calls.append(("delete_disk_snapshot", req))
        return _op("op-del")

    async def watch_disk_snapshots(self, ctx: RequestContext, namespace: str,
                                   name: str = "") -> AsyncIterator[DiskSnapshotEvent]:
        if namespace == "forbidden":
            raise errors.permission_denied("alice may not watch namespace 'forbidden'")
        try:
            yield DiskSnapshotEvent(WatchEventType.ADDED, _snap("a", "InProgress"))
            yield DiskSnapshotEvent(WatchEventType.MODIFIED, _snap("a"))
            await asyncio.Event().wait()  # a live watch: only the caller ends it
        finally:
            self.watch_closed.set()

    async def get_operation(self, ctx: RequestContext, operation_id: str) -> Operation:
        if operation_id != "op-1":
            raise errors.not_found("Operation", operation_id)
        return _op()

    async def list_operations(self, ctx: RequestContext, req: ListOperationsRequest) -> Page[Operation]:
        self.calls.append(("list_operations", req))
        return Page([_op("op-2"), _op("op-1")])

    async def get_operation_timeline(self, ctx: RequestContext, operation_id: str) -> list[OperationTransition]:
        return [OperationTransition(operation_id, 1, OperationState.PENDING, "", "Created", "", T0),
                OperationTransition(operation_id, 2, OperationState.RUNNING, "InProgress", "Snapshotting", "", T0)]

    async def watch_operation(self, ctx: RequestContext, operation_id: str,
                              after_version: int = 0) -> AsyncIterator[Operation]:
        states = [OperationState.PENDING, OperationState.RUNNING, OperationState.SUCCEEDED]
        for version, state in enumerate(states, start=1):
            if version > after_version:
                yield _op(operation_id, state, version)

    async def list_audit_events(self, ctx: RequestContext, req: ListAuditEventsRequest) -> Page[AuditEvent]:
        self.calls.append(("list_audit_events", req))
        return Page([_audit(1)], next_page_token="p2")

    async def export_audit_events(self, ctx: RequestContext, req: ListAuditEventsRequest) -> AsyncIterator[AuditEvent]:
        for event_id in range(1, 4):
            yield _audit(event_id)

    async def verify_audit_log(self, ctx: RequestContext) -> AuditVerification:
        return AuditVerification(ok=False, checked=10, first_bad_id=7, message="hash mismatch at 7")

    async def unimplemented(self, ctx: RequestContext, method: str) -> ApiError:
        self.calls.append(("unimplemented", method))
        error = errors.unimplemented(method)
        error.audited = True
        return error

    async def record_rejection(self, ctx: RequestContext, action: str, error: ApiError) -> None:
        if not error.audited:
            self.calls.append(("rejected", f"{action}:{error.reason}"))


def _audit(event_id: int) -> AuditEvent:
    return AuditEvent(id=event_id, time=T0, actor="alice", action="GetDiskSnapshot", outcome=AuditOutcome.SUCCESS,
                      namespace="demo", resource="disk-snapshots/a", protocol="grpc", request_id="r",
                      operation_id="", code="", reason="", details={}, prev_hash="0", hash=f"h{event_id}")


@dataclass
class Server:
    gateway: FakeGateway
    channel: grpc.aio.Channel
    port: int

    @property
    def snapshots(self) -> snapshot_service_pb2_grpc.SnapshotServiceStub:
        return snapshot_service_pb2_grpc.SnapshotServiceStub(self.channel)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    gateway = FakeGateway()
    grpc_server, port = await start_grpc_server(gateway, host="127.0.0.1", port=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Server(gateway, channel, port)
    finally:
        await channel.close()
        await grpc_server.stop(None)


def _details(err: grpc.aio.AioRpcError) -> dict[str, Message]:
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    assert status.code == err.code().value[0] and status.message == err.details()
    found: dict[str, Message] = {}
    for packed in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.PreconditionFailure,
                     error_details_pb2.RetryInfo, error_details_pb2.RequestInfo):
            if packed.Is(kind.DESCRIPTOR):
                detail = kind()
                packed.Unpack(detail)
                found[kind.DESCRIPTOR.name] = detail
    return found


async def _create_error(server: Server, disk: str, **request: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.snapshots.CreateDiskSnapshot(snapshot_service_pb2.CreateDiskSnapshotRequest(
            namespace="demo", virtual_disk_name=disk, **request), metadata=AUTH)
    return caught.value


# ---------------------------------------------------------------- metadata and auth


async def test_request_id_is_echoed_and_reaches_the_core(server: Server) -> None:
    call = server.snapshots.CreateDiskSnapshot(
        snapshot_service_pb2.CreateDiskSnapshotRequest(namespace="demo", virtual_disk_name="d"),
        metadata=(*AUTH, ("x-request-id", "trace-42")))
    op = await call
    assert op.id == "op-1" and op.state == operation_pb2.Operation.PENDING
    assert dict(await call.initial_metadata())["x-request-id"] == "trace-42"
    ctx = server.gateway.contexts[-1]
    assert (ctx.request_id, ctx.protocol, ctx.caller.subject) == ("trace-42", "grpc", "alice")
    assert ctx.peer.startswith("ipv4:127.0.0.1:")
    assert server.gateway.calls[0] == ("authenticate", ("CreateDiskSnapshot", "grpc", ctx.peer, "trace-42"))


@pytest.mark.parametrize("sent", [None, "", "has spaces", "x" * 200, "a/b", "-dash"])
async def test_missing_or_unsafe_request_id_is_replaced(server: Server, sent: str | None) -> None:
    metadata = AUTH if sent is None else (*AUTH, ("x-request-id", sent))
    call = server.snapshots.GetDiskSnapshot(snapshot_service_pb2.GetDiskSnapshotRequest(namespace="demo", name="a"),
                                            metadata=metadata)
    await call
    echoed = dict(await call.initial_metadata())["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", echoed)


async def test_missing_token_is_unauthenticated_with_error_info_and_request_id(server: Server) -> None:
    call = server.snapshots.GetDiskSnapshot(snapshot_service_pb2.GetDiskSnapshotRequest(namespace="demo", name="a"),
                                            metadata=(("x-request-id", "r-unauth"),))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    details = _details(caught.value)
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("UNAUTHENTICATED", errors.ERROR_DOMAIN)
    request_info = details["RequestInfo"]
    assert isinstance(request_info, error_details_pb2.RequestInfo) and request_info.request_id == "r-unauth"
    assert dict(await call.initial_metadata())["x-request-id"] == "r-unauth"
    assert [c for c in server.gateway.calls if c[0] != "authenticate"] == []


async def test_wrong_token_is_unauthenticated(server: Server) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.snapshots.GetDiskSnapshot(snapshot_service_pb2.GetDiskSnapshotRequest(namespace="demo", name="a"),
                                               metadata=(("authorization", "Bearer nope"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


# ---------------------------------------------------------------- error mapping


async def test_invalid_argument_carries_bad_request_violations(server: Server) -> None:
    err = await _create_error(server, "bad")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details() == "invalid request"
    details = _details(err)
    bad = details["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("name", "must be a DNS-1123 subdomain"), ("virtual_disk_name", "must not be empty")]
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == "INVALID_ARGUMENT"


async def test_not_found_carries_error_info_metadata(server: Server) -> None:
    err = await _create_error(server, "missing")
    assert err.code() == grpc.StatusCode.NOT_FOUND
    info = _details(err)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "RESOURCE_NOT_FOUND"
    assert dict(info.metadata) == {"kind": "VirtualDisk", "name": "missing", "namespace": "demo"}


async def test_failed_precondition_carries_precondition_failure(server: Server) -> None:
    err = await _create_error(server, "running")
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    failure = _details(err)["PreconditionFailure"]
    assert isinstance(failure, error_details_pb2.PreconditionFailure)
    assert [(v.type, v.subject, v.description) for v in failure.violations] == [
        ("VM_RUNNING", "virtualmachines/linux-vm", "stop the VM first")]


async def test_unavailable_carries_retry_info(server: Server) -> None:
    err = await _create_error(server, "busy")
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    retry = _details(err)["RetryInfo"]
    assert isinstance(retry, error_details_pb2.RetryInfo) and retry.retry_delay.seconds == 3


async def test_idempotency_conflict_is_aborted(server: Server) -> None:
    err = await _create_error(server, "reused", request_id="k-1")
    assert err.code() == grpc.StatusCode.ABORTED
    info = _details(err)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "IDEMPOTENCY_KEY_REUSED" and info.metadata["request_id"] == "k-1"


async def test_unexpected_exception_is_internal_without_leaking(server: Server,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    err = await _create_error(server, "crash")
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in err.details() and "RuntimeError" not in err.details()
    assert "request id" in err.details()
    assert any(r.exc_info for r in caplog.records if r.name == "service.api.grpc.calls")


@pytest.mark.parametrize("code", list(errors.Code))
def test_every_core_code_maps_to_the_grpc_status_code_of_the_same_name(code: errors.Code) -> None:
    from service.api.grpc.status import to_rpc_status

    status = to_rpc_status(ApiError(code, "R", "m"))
    assert status.code == grpc.StatusCode[code.value].value[0]


def test_long_violation_lists_are_bounded() -> None:
    from service.api.grpc.status import MAX_TEXT, MAX_VIOLATIONS, to_rpc_status

    err = errors.invalid_argument("x" * 5000, [FieldViolation(f"f{i}", "d" * 5000) for i in range(500)])
    status = to_rpc_status(err)
    assert len(status.SerializeToString()) < 8 * 1024 * 2
    assert len(status.message) == MAX_TEXT
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad) and len(bad.field_violations) == MAX_VIOLATIONS


# ---------------------------------------------------------------- unary conversions


async def test_create_passes_every_field_and_optional_presence(server: Server) -> None:
    await server.snapshots.CreateDiskSnapshot(snapshot_service_pb2.CreateDiskSnapshotRequest(
        namespace="demo", virtual_disk_name="d", generate_name="g-", labels={"a": "1"}, annotations={"b": "2"},
        request_id="k"), metadata=AUTH)
    await server.snapshots.CreateDiskSnapshot(snapshot_service_pb2.CreateDiskSnapshotRequest(
        namespace="demo", virtual_disk_name="d", name="n", required_consistency=False), metadata=AUTH)
    first, second = [c[1] for c in server.gateway.calls if c[0] == "create_disk_snapshot"]
    assert first == CreateDiskSnapshotRequest(namespace="demo", virtual_disk_name="d", generate_name="g-",
                                              required_consistency=True, labels={"a": "1"}, annotations={"b": "2"},
                                              request_id="k")
    assert second.required_consistency is False and second.name == "n"


async def test_list_get_delete(server: Server) -> None:
    page = await server.snapshots.ListDiskSnapshots(snapshot_service_pb2.ListDiskSnapshotsRequest(
        namespace="demo", page_size=2, page_token="t", label_selector="app=db"), metadata=AUTH)
    assert [s.name for s in page.disk_snapshots] == ["a", "b"] and page.next_page_token == "next"
    assert ("list_disk_snapshots", ListRequest("demo", 2, "t", "app=db")) in server.gateway.calls
    snap = await server.snapshots.GetDiskSnapshot(
        snapshot_service_pb2.GetDiskSnapshotRequest(namespace="demo", name="x"), metadata=AUTH)
    assert snap.name == "x" and snap.phase == "Ready"
    op = await server.snapshots.DeleteDiskSnapshot(
        snapshot_service_pb2.DeleteDiskSnapshotRequest(namespace="demo", name="x", request_id="k"), metadata=AUTH)
    assert op.id == "op-del"
    assert ("delete_disk_snapshot", DeleteDiskSnapshotRequest("demo", "x", "k")) in server.gateway.calls


async def test_operations_get_list_timeline(server: Server) -> None:
    stub = operation_service_pb2_grpc.OperationServiceStub(server.channel)
    assert (await stub.GetOperation(operation_service_pb2.GetOperationRequest(operation_id="op-1"),
                                    metadata=AUTH)).id == "op-1"
    page = await stub.ListOperations(operation_service_pb2.ListOperationsRequest(
        namespace="demo", type=operation_pb2.Operation.CREATE_DISK_SNAPSHOT), metadata=AUTH)
    assert [o.id for o in page.operations] == ["op-2", "op-1"]
    assert ("list_operations", ListOperationsRequest(namespace="demo", type=OperationType.CREATE_DISK_SNAPSHOT)) \
        in server.gateway.calls
    timeline = await stub.GetOperationTimeline(
        operation_service_pb2.GetOperationTimelineRequest(operation_id="op-1"), metadata=AUTH)
    assert [t.state for t in timeline.transitions] == [operation_pb2.Operation.PENDING, operation_pb2.Operation.RUNNING]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetOperation(operation_service_pb2.GetOperationRequest(operation_id="nope"), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unknown_enum_value_is_invalid_argument(server: Server) -> None:
    stub = operation_service_pb2_grpc.OperationServiceStub(server.channel)
    request = operation_service_pb2.ListOperationsRequest()
    request.state = 42  # type: ignore[assignment]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListOperations(request, metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = _details(caught.value)["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest) and bad.field_violations[0].field == "state"
    # Refused by the adapter before any use case ran, and still an audit event.
    assert [c for c in server.gateway.calls if c[0] == "rejected"] == [("rejected", "ListOperations:INVALID_ARGUMENT")]


async def test_audit_list_export_verify(server: Server) -> None:
    stub = audit_service_pb2_grpc.AuditServiceStub(server.channel)
    page = await stub.ListAuditEvents(audit_service_pb2.ListAuditEventsRequest(
        actor="alice", outcome=audit_service_pb2.AuditEvent.SUCCESS), metadata=AUTH)
    assert [e.id for e in page.audit_events] == [1] and page.next_page_token == "p2"
    assert ("list_audit_events", ListAuditEventsRequest(actor="alice", outcome=AuditOutcome.SUCCESS)) \
        in server.gateway.calls
    exported = [e.hash async for e in stub.ExportAuditEvents(audit_service_pb2.ExportAuditEventsRequest(),
                                                              metadata=AUTH)]
    assert exported == ["h1", "h2", "h3"]
    verdict = await stub.VerifyAuditLog(audit_service_pb2.VerifyAuditLogRequest(), metadata=AUTH)
    assert (verdict.ok, verdict.checked, verdict.first_bad_id) == (False, 10, 7)


# ---------------------------------------------------------------- streams


async def test_watch_relays_events_and_closes_the_core_stream_on_cancel(server: Server) -> None:
    call = server.snapshots.WatchDiskSnapshots(snapshot_service_pb2.WatchDiskSnapshotsRequest(namespace="demo"),
                                               metadata=AUTH)
    first = await call.read()
    second = await call.read()
    assert [(e.type, e.snapshot.phase) for e in (first, second)] == [
        (common_pb2.ADDED, "InProgress"), (common_pb2.MODIFIED, "Ready")]
    call.cancel()
    await asyncio.wait_for(server.gateway.watch_closed.wait(), timeout=5)


async def test_watch_denied_before_the_first_event(server: Server) -> None:
    call = server.snapshots.WatchDiskSnapshots(snapshot_service_pb2.WatchDiskSnapshotsRequest(namespace="forbidden"),
                                               metadata=AUTH)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_watch_operation_streams_versions_until_done(server: Server) -> None:
    stub = operation_service_pb2_grpc.OperationServiceStub(server.channel)
    versions = [(o.version, o.done) async for o in stub.WatchOperation(
        operation_service_pb2.WatchOperationRequest(operation_id="op-9", after_version=1), metadata=AUTH)]
    assert versions == [(2, False), (3, True)]


# ---------------------------------------------------------------- later capabilities


def _unimplemented_calls(channel: grpc.aio.Channel) -> list[tuple[str, Any]]:
    snap = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
    restore = restore_service_pb2_grpc.RestoreServiceStub(channel)
    clone = clone_service_pb2_grpc.CloneServiceStub(channel)
    export = export_service_pb2_grpc.ExportServiceStub(channel)
    ops = operation_service_pb2_grpc.OperationServiceStub(channel)
    return [
        ("SnapshotService/CreateVirtualMachineSnapshot", lambda md: snap.CreateVirtualMachineSnapshot(
            snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(namespace="demo", virtual_machine_name="vm"),
            metadata=md)),
        ("SnapshotService/GetVirtualMachineSnapshot", lambda md: snap.GetVirtualMachineSnapshot(
            snapshot_service_pb2.GetVirtualMachineSnapshotRequest(namespace="demo", name="s"), metadata=md)),
        ("SnapshotService/ListVirtualMachineSnapshots", lambda md: snap.ListVirtualMachineSnapshots(
            snapshot_service_pb2.ListVirtualMachineSnapshotsRequest(namespace="demo"), metadata=md)),
        ("SnapshotService/DeleteVirtualMachineSnapshot", lambda md: snap.DeleteVirtualMachineSnapshot(
            snapshot_service_pb2.DeleteVirtualMachineSnapshotRequest(namespace="demo", name="s"), metadata=md)),
        ("SnapshotService/WatchVirtualMachineSnapshots", lambda md: snap.WatchVirtualMachineSnapshots(
            snapshot_service_pb2.WatchVirtualMachineSnapshotsRequest(namespace="demo"), metadata=md).read()),
        ("RestoreService/RestoreDisk", lambda md: restore.RestoreDisk(
            restore_service_pb2.RestoreDiskRequest(namespace="demo", name="d2", disk_snapshot_name="s"),
            metadata=md)),
        ("RestoreService/RestoreVirtualMachine", lambda md: restore.RestoreVirtualMachine(
            restore_service_pb2.RestoreVirtualMachineRequest(namespace="demo", virtual_machine_name="vm"),
            metadata=md)),
        ("CloneService/CloneVirtualMachine", lambda md: clone.CloneVirtualMachine(
            clone_service_pb2.CloneVirtualMachineRequest(namespace="demo", virtual_machine_name="vm"), metadata=md)),
        ("CloneService/CreateVirtualMachineFromSnapshot", lambda md: clone.CreateVirtualMachineFromSnapshot(
            clone_service_pb2.CreateVirtualMachineFromSnapshotRequest(namespace="demo"), metadata=md)),
        ("ExportService/ExportDisk", lambda md: export.ExportDisk(
            export_service_pb2.ExportDiskRequest(namespace="demo", name="d"), metadata=md).read()),
        ("ExportService/ExportDiskSnapshot", lambda md: export.ExportDiskSnapshot(
            export_service_pb2.ExportDiskSnapshotRequest(namespace="demo", name="s"), metadata=md).read()),
        ("OperationService/CancelOperation", lambda md: ops.CancelOperation(
            operation_service_pb2.CancelOperationRequest(operation_id="op-1", force=True), metadata=md)),
    ]


async def test_later_capabilities_answer_unimplemented_after_authentication(server: Server) -> None:
    for method, invoke in _unimplemented_calls(server.channel):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await invoke(())
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED, method

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await invoke(AUTH)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
        assert method in caught.value.details() and "not implemented in this release" in caught.value.details()
        info = _details(caught.value)["ErrorInfo"]
        assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == "NOT_IMPLEMENTED_YET"
    audited = [c[1] for c in server.gateway.calls if c[0] == "unimplemented"]
    assert audited == [m for m, _ in _unimplemented_calls(server.channel)]


# ---------------------------------------------------------------- health, reflection


async def test_health_reports_serving_for_the_server_and_every_service(server: Server) -> None:
    stub = health_pb2_grpc.HealthStub(server.channel)
    for name in ("", *SERVICE_NAMES):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


async def test_caller_owned_health_servicer_controls_status() -> None:
    from grpc_health.v1 import health

    servicer = health.aio.HealthServicer()
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    grpc_server, port = await start_grpc_server(FakeGateway(), host="127.0.0.1", port=0, health_servicer=servicer)
    assert grpc_server.health_servicer is servicer
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert (await stub.Check(health_pb2.HealthCheckRequest())).status \
                == health_pb2.HealthCheckResponse.NOT_SERVING
            await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
            assert (await stub.Check(health_pb2.HealthCheckRequest())).status \
                == health_pb2.HealthCheckResponse.SERVING
    finally:
        await grpc_server.stop(None)


async def test_reflection_lists_every_service_and_resolves_their_files(server: Server) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="dvp.snapshots.v1.SnapshotService")]
    replies = [r async for r in stub.ServerReflectionInfo(iter(requests))]
    listed = {s.name for s in replies[0].list_services_response.service}
    assert set(SERVICE_NAMES) | {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= listed
    assert replies[1].file_descriptor_response.file_descriptor_proto


async def test_second_server_on_a_taken_port_fails_to_bind(server: Server) -> None:
    with pytest.raises(OSError, match="could not bind"):
        await start_grpc_server(FakeGateway(), host="127.0.0.1", port=server.port)
