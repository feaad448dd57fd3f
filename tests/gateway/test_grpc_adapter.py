"""The gRPC adapter over real channels, against a small hand-written facade.

Only the adapter is under test here (metadata, error mapping with google.rpc details,
conversion, streaming, health, reflection); the end-to-end behaviour of the real core
is in test_grpc_disk_snapshots.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import duration_pb2, message_factory
from google.protobuf.descriptor import MethodDescriptor
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
from service.core import contract, errors
from service.core.domain import (
    ApplyMode,
    AuditEvent,
    AuditOutcome,
    AuditVerification,
    Caller,
    DiskSnapshot,
    DiskSnapshotEvent,
    ExportData,
    ExportEnd,
    ExportHole,
    ExportItem,
    ExportStart,
    KeepIpAddress,
    Operation,
    OperationState,
    OperationTransition,
    OperationType,
    Page,
    RequestContext,
    ResourceRef,
    ResourceResult,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotEvent,
    WatchEventType,
)
from service.core.errors import ApiError, FieldViolation, PreconditionViolation
from service.core.requests import (
    CancelOperationRequest,
    CloneOptions,
    CloneVmRequest,
    CreateDiskSnapshotRequest,
    CreateVmFromSnapshotRequest,
    CreateVmSnapshotRequest,
    DeleteDiskSnapshotRequest,
    DeleteVmSnapshotRequest,
    ExportRequest,
    ListAuditEventsRequest,
    ListOperationsRequest,
    ListRequest,
    NameReplacement,
    ObjectKey,
    OperationKey,
    RestoreDiskRequest,
    RestoreVmRequest,
    VerifyAuditLogRequest,
    WatchOperationRequest,
    WatchRequest,
)

Req = TypeVar("Req")
Res = TypeVar("Res")

TOKEN = "s3cr3t-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _op(op_id: str = "op-1", state: OperationState = OperationState.PENDING, version: int = 1,
        op_type: OperationType = OperationType.CREATE_DISK_SNAPSHOT) -> Operation:
    return Operation(id=op_id, type=op_type, namespace="demo",
                     target=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", "d", "demo"),
                     actor="alice", request_hash="h", state=state, version=version, create_time=T0, update_time=T0)


def _snap(name: str, phase: str = "Ready") -> DiskSnapshot:
    return DiskSnapshot(namespace="demo", name=name, virtual_disk_name="d", required_consistency=True, phase=phase)


def _vm_snap(name: str, phase: str = "Ready") -> VirtualMachineSnapshot:
    return VirtualMachineSnapshot(namespace="demo", name=name, virtual_machine_name="vm", required_consistency=True,
                                  keep_ip_address=KeepIpAddress.NEVER, phase=phase,
                                  resources=[ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk",
                                                         "vm-root", "demo")],
                                  virtual_disk_snapshot_names=[f"{name}-root"])


def _raise_for(name: str, request_id: str = "") -> None:
    """The error a test provokes by naming the target after it."""
    match name:
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
            raise errors.idempotency_conflict(request_id)
        case "crash":
            raise RuntimeError("database password=hunter2 leaked in a traceback")


@dataclass
class FakeGateway:
    """The facade, dispatching on ``method.name``; answers by request content so each
    test can provoke one behaviour. ``calls`` records (method name, core request)."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    contexts: list[RequestContext] = field(default_factory=list)
    methods: list[contract.Method[Any, Any]] = field(default_factory=list)
    watch_closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def authenticate(self, authorization: str | None, *, action: str, protocol: str,
                           peer: str = "", request_id: str = "", namespace: str = "") -> Caller:
        self.calls.append(("authenticate", (action, protocol, peer, request_id)))
        if authorization != f"Bearer {TOKEN}":
            raise errors.unauthenticated()
        return Caller("alice", ("operators",))

    async def call(self, ctx: RequestContext, method: contract.Method[Req, Res], req: Req) -> Res:
        self.contexts.append(ctx)
        self.methods.append(method)
        self.calls.append((method.name, req))
        answer = getattr(self, f"_{method.name}", None)
        if answer is None or method.streaming:
            raise self._unimplemented(method)
        result: Res = await answer(req)
        return result

    async def stream(self, ctx: RequestContext, method: contract.Method[Req, Res], req: Req) -> AsyncIterator[Res]:
        self.contexts.append(ctx)
        self.methods.append(method)
        self.calls.append((method.name, req))
        answer = getattr(self, f"_{method.name}", None)
        if answer is None or not method.streaming:
            raise self._unimplemented(method)
        async for item in answer(req):
            yield item

    @staticmethod
    def _unimplemented(method: contract.Method[Any, Any]) -> ApiError:
        # What the core does for a method no capability registered: audited, UNIMPLEMENTED.
        error = errors.unimplemented(method.name)
        error.audited = True
        return error

    async def record_rejection(self, ctx: RequestContext, action: str, error: ApiError, *,
                               namespace: str = "") -> None:
        if not error.audited:
            self.calls.append(("rejected", f"{action}:{error.reason}"))

    async def check_ready(self) -> dict[str, bool]:
        return {"database": True, "cluster": True}

    # ------------------------------------------------------------ the methods, by name

    async def _CreateDiskSnapshot(self, req: CreateDiskSnapshotRequest) -> Operation:
        _raise_for(req.virtual_disk_name, req.request_id)
        return _op()

    async def _GetDiskSnapshot(self, req: ObjectKey) -> DiskSnapshot:
        return _snap(req.name)

    async def _ListDiskSnapshots(self, req: ListRequest) -> Page[DiskSnapshot]:
        return Page([_snap("a"), _snap("b")], next_page_token="next")

    async def _DeleteDiskSnapshot(self, req: DeleteDiskSnapshotRequest) -> Operation:
        return _op("op-del")

    async def _WatchDiskSnapshots(self, req: WatchRequest) -> AsyncIterator[DiskSnapshotEvent]:
        if req.namespace == "forbidden":
            raise errors.permission_denied("alice may not watch namespace 'forbidden'")
        try:
            yield DiskSnapshotEvent(WatchEventType.ADDED, _snap("a", "InProgress"))
            yield DiskSnapshotEvent(WatchEventType.MODIFIED, _snap("a"))
            await asyncio.Event().wait()  # a live watch: only the caller ends it
        finally:
            self.watch_closed.set()

    async def _ExportDisk(self, req: ExportRequest) -> AsyncIterator[ExportItem]:
        if req.name == "in-use":
            raise errors.failed_precondition("DISK_IN_USE", "the disk is in use by 'linux-vm'")
        yield ExportStart(operation_id="op-exp", size=3 << 20, offset=0, length=3 << 20, etag='"e"')
        yield ExportData(0, b"\x01" * 10)
        yield ExportHole(10, (3 << 20) - 10)
        yield ExportEnd(size=3 << 20, offset=0, length=3 << 20, sha256="ab" * 32, range_sha256="ab" * 32,
                        hole_bytes=(3 << 20) - 10)

    async def _CreateVirtualMachineSnapshot(self, req: CreateVmSnapshotRequest) -> Operation:
        _raise_for(req.virtual_machine_name, req.request_id)
        return _op("op-vms", op_type=OperationType.CREATE_VM_SNAPSHOT)

    async def _GetVirtualMachineSnapshot(self, req: ObjectKey) -> VirtualMachineSnapshot:
        if req.name == "missing":
            raise errors.not_found("VirtualMachineSnapshot", req.name, req.namespace)
        return _vm_snap(req.name)

    async def _ListVirtualMachineSnapshots(self, req: ListRequest) -> Page[VirtualMachineSnapshot]:
        return Page([_vm_snap("v1"), _vm_snap("v2")], next_page_token="vnext")

    async def _DeleteVirtualMachineSnapshot(self, req: DeleteVmSnapshotRequest) -> Operation:
        return _op("op-vms-del", op_type=OperationType.DELETE_VM_SNAPSHOT)

    async def _WatchVirtualMachineSnapshots(self, req: WatchRequest) -> AsyncIterator[VirtualMachineSnapshotEvent]:
        if req.namespace == "forbidden":
            raise errors.permission_denied("alice may not watch namespace 'forbidden'")
        yield VirtualMachineSnapshotEvent(WatchEventType.ADDED, _vm_snap("v1", "InProgress"))
        yield VirtualMachineSnapshotEvent(WatchEventType.MODIFIED, _vm_snap("v1"))
        yield VirtualMachineSnapshotEvent(WatchEventType.DELETED, _vm_snap("v1", "Terminating"))

    async def _RestoreDisk(self, req: RestoreDiskRequest) -> Operation:
        if req.size == "1Mi":
            raise errors.invalid_argument("size: smaller than the original disk", [
                FieldViolation("size", "must be at least 10Gi")])
        return _op("op-rd", op_type=OperationType.RESTORE_DISK)

    async def _RestoreVirtualMachine(self, req: RestoreVmRequest) -> Operation:
        _raise_for(req.virtual_machine_name, req.request_id)
        op = _op("op-rvm", op_type=OperationType.RESTORE_VM)
        op.results = [ResourceResult("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", "vm-root", "Conflict",
                                     "attached to vm-2", reason="AttachedToAnotherVM")]
        return op

    async def _CloneVirtualMachine(self, req: CloneVmRequest) -> Operation:
        _raise_for(req.virtual_machine_name, req.request_id)
        if req.virtual_machine_name == "badnames":
            raise errors.invalid_argument("invalid naming rules", [  # the core's field names
                FieldViolation("customization.name_prefix", "must be 1-59 characters"),
                FieldViolation("name_replacements[0].to", "must not be empty"),
                FieldViolation("mode", "is required")])
        return _clone_op("op-clone", OperationType.CLONE_VM)

    async def _CreateVirtualMachineFromSnapshot(self, req: CreateVmFromSnapshotRequest) -> Operation:
        _raise_for(req.virtual_machine_snapshot_name, req.request_id)
        return _clone_op("op-cvm", OperationType.CREATE_VM_FROM_SNAPSHOT)

    async def _GetOperation(self, req: OperationKey) -> Operation:
        if req.operation_id != "op-1":
            raise errors.not_found("Operation", req.operation_id)
        return _op()

    async def _ListOperations(self, req: ListOperationsRequest) -> Page[Operation]:
        return Page([_op("op-2"), _op("op-1")])

    async def _GetOperationTimeline(self, req: OperationKey) -> list[OperationTransition]:
        return [OperationTransition(req.operation_id, 1, OperationState.PENDING, "", "Created", "", T0),
                OperationTransition(req.operation_id, 2, OperationState.RUNNING, "InProgress", "Snapshotting", "",
                                    T0)]

    async def _WatchOperation(self, req: WatchOperationRequest) -> AsyncIterator[Operation]:
        states = [OperationState.PENDING, OperationState.RUNNING, OperationState.SUCCEEDED]
        for version, state in enumerate(states, start=1):
            if version > req.after_version:
                yield _op(req.operation_id, state, version)

    async def _CancelOperation(self, req: CancelOperationRequest) -> Operation:
        if not req.force:
            raise errors.failed_precondition("RESTORE_IN_PROGRESS", "cancelling a restore in progress is dangerous", [
                PreconditionViolation("RESTORE_IN_PROGRESS", f"operations/{req.operation_id}", "set force")])
        return _op(req.operation_id, OperationState.CANCELLED, 5)

    async def _ListAuditEvents(self, req: ListAuditEventsRequest) -> Page[AuditEvent]:
        return Page([_audit(1)], next_page_token="p2")

    async def _ExportAuditEvents(self, req: ListAuditEventsRequest) -> AsyncIterator[AuditEvent]:
        for event_id in range(1, 4):
            yield _audit(event_id)

    async def _VerifyAuditLog(self, req: VerifyAuditLogRequest) -> AuditVerification:
        return AuditVerification(ok=False, checked=10, first_bad_id=7, message="hash mismatch at 7")


def _clone_op(op_id: str, op_type: OperationType) -> Operation:
    """A dry run's answer: the name map, old name -> new name."""
    op = _op(op_id, op_type=op_type)
    op.results = [
        ResourceResult("virtualization.deckhouse.io/v1alpha2", "VirtualMachine", "copy-vm", "InProgress",
                       source_name="vm"),
        ResourceResult("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", "copy-vm-root", "Conflict",
                       "the name is taken", "NameInUse", source_name="vm-root")]
    return op


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
    first, second = [c[1] for c in server.gateway.calls if c[0] == "CreateDiskSnapshot"]
    assert first == CreateDiskSnapshotRequest(namespace="demo", virtual_disk_name="d", generate_name="g-",
                                              required_consistency=True, labels={"a": "1"}, annotations={"b": "2"},
                                              request_id="k")
    assert second.required_consistency is False and second.name == "n"


async def test_list_get_delete(server: Server) -> None:
    page = await server.snapshots.ListDiskSnapshots(snapshot_service_pb2.ListDiskSnapshotsRequest(
        namespace="demo", page_size=2, page_token="t", label_selector="app=db"), metadata=AUTH)
    assert [s.name for s in page.disk_snapshots] == ["a", "b"] and page.next_page_token == "next"
    assert ("ListDiskSnapshots", ListRequest("demo", 2, "t", "app=db")) in server.gateway.calls
    snap = await server.snapshots.GetDiskSnapshot(
        snapshot_service_pb2.GetDiskSnapshotRequest(namespace="demo", name="x"), metadata=AUTH)
    assert snap.name == "x" and snap.phase == "Ready"
    op = await server.snapshots.DeleteDiskSnapshot(
        snapshot_service_pb2.DeleteDiskSnapshotRequest(namespace="demo", name="x", request_id="k"), metadata=AUTH)
    assert op.id == "op-del"
    assert ("GetDiskSnapshot", ObjectKey("demo", "x")) in server.gateway.calls
    assert ("DeleteDiskSnapshot", DeleteDiskSnapshotRequest("demo", "x", "k")) in server.gateway.calls


async def test_operations_get_list_timeline(server: Server) -> None:
    stub = operation_service_pb2_grpc.OperationServiceStub(server.channel)
    assert (await stub.GetOperation(operation_service_pb2.GetOperationRequest(operation_id="op-1"),
                                    metadata=AUTH)).id == "op-1"
    page = await stub.ListOperations(operation_service_pb2.ListOperationsRequest(
        namespace="demo", type=operation_pb2.Operation.CREATE_DISK_SNAPSHOT), metadata=AUTH)
    assert [o.id for o in page.operations] == ["op-2", "op-1"]
    assert ("ListOperations", ListOperationsRequest(namespace="demo", type=OperationType.CREATE_DISK_SNAPSHOT)) \
        in server.gateway.calls
    timeline = await stub.GetOperationTimeline(
        operation_service_pb2.GetOperationTimelineRequest(operation_id="op-1"), metadata=AUTH)
    assert [t.state for t in timeline.transitions] == [operation_pb2.Operation.PENDING, operation_pb2.Operation.RUNNING]
    assert ("GetOperationTimeline", OperationKey("op-1")) in server.gateway.calls
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
    assert ("ListAuditEvents", ListAuditEventsRequest(actor="alice", outcome=AuditOutcome.SUCCESS)) \
        in server.gateway.calls
    exported = [e.hash async for e in stub.ExportAuditEvents(audit_service_pb2.ExportAuditEventsRequest(),
                                                              metadata=AUTH)]
    assert exported == ["h1", "h2", "h3"]
    verdict = await stub.VerifyAuditLog(audit_service_pb2.VerifyAuditLogRequest(), metadata=AUTH)
    assert (verdict.ok, verdict.checked, verdict.first_bad_id) == (False, 10, 7)
    assert ("VerifyAuditLog", VerifyAuditLogRequest()) in server.gateway.calls


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
    assert ("WatchOperation", WatchOperationRequest("op-9", 1)) in server.gateway.calls


# ---------------------------------------------------------------- VM snapshots


async def test_create_vm_snapshot_passes_every_field_with_defaults(server: Server) -> None:
    op = await server.snapshots.CreateVirtualMachineSnapshot(snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(
        namespace="demo", virtual_machine_name="vm", generate_name="g-", labels={"a": "1"}, annotations={"b": "2"},
        request_id="k"), metadata=AUTH)
    assert op.id == "op-vms" and op.type == operation_pb2.Operation.CREATE_VM_SNAPSHOT
    await server.snapshots.CreateVirtualMachineSnapshot(snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(
        namespace="demo", virtual_machine_name="vm", name="n", required_consistency=False,
        keep_ip_address=snapshot_service_pb2.VirtualMachineSnapshot.NEVER), metadata=AUTH)
    first, second = [c[1] for c in server.gateway.calls if c[0] == "CreateVirtualMachineSnapshot"]
    # Absent required_consistency is the platform default (true); KEEP_IP_ADDRESS_UNSPECIFIED is ALWAYS.
    assert first == CreateVmSnapshotRequest(namespace="demo", virtual_machine_name="vm", generate_name="g-",
                                            required_consistency=True, keep_ip_address=KeepIpAddress.ALWAYS,
                                            labels={"a": "1"}, annotations={"b": "2"}, request_id="k")
    assert second == CreateVmSnapshotRequest(namespace="demo", virtual_machine_name="vm", name="n",
                                             required_consistency=False, keep_ip_address=KeepIpAddress.NEVER)


async def test_create_vm_snapshot_unknown_keep_ip_address_is_invalid_argument(server: Server) -> None:
    request = snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(namespace="demo", virtual_machine_name="vm")
    request.keep_ip_address = 7  # type: ignore[assignment]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.snapshots.CreateVirtualMachineSnapshot(request, metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = _details(caught.value)["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["keep_ip_address"]
    assert [c for c in server.gateway.calls if c[0] == "CreateVirtualMachineSnapshot"] == []
    assert ("rejected", "CreateVirtualMachineSnapshot:INVALID_ARGUMENT") in server.gateway.calls


async def test_create_vm_snapshot_errors_carry_google_rpc_details(server: Server) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.snapshots.CreateVirtualMachineSnapshot(snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(
            namespace="demo", virtual_machine_name="running"), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    failure = _details(caught.value)["PreconditionFailure"]
    assert isinstance(failure, error_details_pb2.PreconditionFailure)
    assert [v.type for v in failure.violations] == ["VM_RUNNING"]


async def test_get_list_delete_vm_snapshots(server: Server) -> None:
    snap = await server.snapshots.GetVirtualMachineSnapshot(
        snapshot_service_pb2.GetVirtualMachineSnapshotRequest(namespace="demo", name="v9"), metadata=AUTH)
    assert (snap.name, snap.virtual_machine_name, snap.phase) == ("v9", "vm", "Ready")
    assert snap.keep_ip_address == snapshot_service_pb2.VirtualMachineSnapshot.NEVER
    assert [r.name for r in snap.resources] == ["vm-root"] and list(snap.virtual_disk_snapshot_names) == ["v9-root"]
    assert ("GetVirtualMachineSnapshot", ObjectKey("demo", "v9")) in server.gateway.calls

    page = await server.snapshots.ListVirtualMachineSnapshots(snapshot_service_pb2.ListVirtualMachineSnapshotsRequest(
        namespace="demo", page_size=2, page_token="t", label_selector="app=db"), metadata=AUTH)
    assert [s.name for s in page.virtual_machine_snapshots] == ["v1", "v2"] and page.next_page_token == "vnext"
    assert ("ListVirtualMachineSnapshots", ListRequest("demo", 2, "t", "app=db")) in server.gateway.calls

    op = await server.snapshots.DeleteVirtualMachineSnapshot(snapshot_service_pb2.DeleteVirtualMachineSnapshotRequest(
        namespace="demo", name="v1", request_id="k"), metadata=AUTH)
    assert op.id == "op-vms-del" and op.type == operation_pb2.Operation.DELETE_VM_SNAPSHOT
    assert ("DeleteVirtualMachineSnapshot", DeleteVmSnapshotRequest("demo", "v1", "k")) in server.gateway.calls

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.snapshots.GetVirtualMachineSnapshot(
            snapshot_service_pb2.GetVirtualMachineSnapshotRequest(namespace="demo", name="missing"), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info = _details(caught.value)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.metadata["kind"] == "VirtualMachineSnapshot"


async def test_watch_vm_snapshots_streams_events(server: Server) -> None:
    events = [(e.type, e.snapshot.name, e.snapshot.phase) async for e in server.snapshots.WatchVirtualMachineSnapshots(
        snapshot_service_pb2.WatchVirtualMachineSnapshotsRequest(namespace="demo", name="v1"), metadata=AUTH)]
    assert events == [(common_pb2.ADDED, "v1", "InProgress"), (common_pb2.MODIFIED, "v1", "Ready"),
                      (common_pb2.DELETED, "v1", "Terminating")]
    assert ("WatchVirtualMachineSnapshots", WatchRequest("demo", "v1")) in server.gateway.calls


async def test_watch_vm_snapshots_denied_before_the_first_event(server: Server) -> None:
    call = server.snapshots.WatchVirtualMachineSnapshots(
        snapshot_service_pb2.WatchVirtualMachineSnapshotsRequest(namespace="forbidden"), metadata=AUTH)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = _details(caught.value)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == "PERMISSION_DENIED"


# ---------------------------------------------------------------- restores


async def test_restore_disk_passes_every_field(server: Server) -> None:
    stub = restore_service_pb2_grpc.RestoreServiceStub(server.channel)
    op = await stub.RestoreDisk(restore_service_pb2.RestoreDiskRequest(
        namespace="demo", name="d2", disk_snapshot_name="s", size="20Gi", storage_class_name="fast",
        labels={"a": "1"}, request_id="k"), metadata=AUTH)
    assert op.id == "op-rd" and op.type == operation_pb2.Operation.RESTORE_DISK
    await stub.RestoreDisk(restore_service_pb2.RestoreDiskRequest(namespace="demo", name="d3", disk_snapshot_name="s"),
                           metadata=AUTH)
    first, second = [c[1] for c in server.gateway.calls if c[0] == "RestoreDisk"]
    assert first == RestoreDiskRequest(namespace="demo", name="d2", disk_snapshot_name="s", size="20Gi",
                                       storage_class_name="fast", labels={"a": "1"}, request_id="k")
    assert second == RestoreDiskRequest(namespace="demo", name="d3", disk_snapshot_name="s")


async def test_restore_disk_error_carries_field_violations(server: Server) -> None:
    stub = restore_service_pb2_grpc.RestoreServiceStub(server.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RestoreDisk(restore_service_pb2.RestoreDiskRequest(
            namespace="demo", name="d2", disk_snapshot_name="s", size="1Mi"), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = _details(caught.value)["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest) and [v.field for v in bad.field_violations] == ["size"]


@pytest.mark.parametrize(("sent", "expected"), [
    (common_pb2.APPLY_MODE_UNSPECIFIED, ApplyMode.STRICT), (common_pb2.DRY_RUN, ApplyMode.DRY_RUN),
    (common_pb2.STRICT, ApplyMode.STRICT), (common_pb2.BEST_EFFORT, ApplyMode.BEST_EFFORT)])
async def test_restore_vm_maps_the_mode(server: Server, sent: common_pb2.ApplyMode.ValueType,
                                        expected: ApplyMode) -> None:
    stub = restore_service_pb2_grpc.RestoreServiceStub(server.channel)
    op = await stub.RestoreVirtualMachine(restore_service_pb2.RestoreVirtualMachineRequest(
        namespace="demo", virtual_machine_name="vm", virtual_machine_snapshot_name="vs", mode=sent, request_id="k"),
        metadata=AUTH)
    assert op.type == operation_pb2.Operation.RESTORE_VM
    assert [(r.kind, r.name, r.status, r.reason) for r in op.results] == [
        ("VirtualDisk", "vm-root", "Conflict", "AttachedToAnotherVM")]
    assert [c[1] for c in server.gateway.calls if c[0] == "RestoreVirtualMachine"] == [
        RestoreVmRequest(namespace="demo", virtual_machine_name="vm", virtual_machine_snapshot_name="vs",
                         mode=expected, request_id="k")]


async def test_restore_vm_unknown_mode_is_invalid_argument_and_recorded(server: Server) -> None:
    stub = restore_service_pb2_grpc.RestoreServiceStub(server.channel)
    request = restore_service_pb2.RestoreVirtualMachineRequest(namespace="demo", virtual_machine_name="vm",
                                                               virtual_machine_snapshot_name="vs")
    request.mode = 9  # type: ignore[assignment]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RestoreVirtualMachine(request, metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = _details(caught.value)["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest) and [v.field for v in bad.field_violations] == ["mode"]
    assert [c for c in server.gateway.calls if c[0] == "RestoreVirtualMachine"] == []
    assert ("rejected", "RestoreVirtualMachine:INVALID_ARGUMENT") in server.gateway.calls


async def test_restore_vm_idempotency_conflict_is_aborted(server: Server) -> None:
    stub = restore_service_pb2_grpc.RestoreServiceStub(server.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RestoreVirtualMachine(restore_service_pb2.RestoreVirtualMachineRequest(
            namespace="demo", virtual_machine_name="reused", virtual_machine_snapshot_name="vs", request_id="k-2"),
            metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    info = _details(caught.value)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.metadata["request_id"] == "k-2"


# ---------------------------------------------------------------- clones


def _replacement(from_name: str, to: str, kind: str = "") -> common_pb2.NameReplacement:
    return common_pb2.NameReplacement(to=to, **{"from": common_pb2.NameReplacement.Source(kind=kind, name=from_name)})


async def test_clone_vm_passes_every_field(server: Server) -> None:
    stub = clone_service_pb2_grpc.CloneServiceStub(server.channel)
    op = await stub.CloneVirtualMachine(clone_service_pb2.CloneVirtualMachineRequest(
        namespace="demo", virtual_machine_name="vm", mode=common_pb2.DRY_RUN,
        name_replacements=[_replacement("vm", "copy-vm", "VirtualMachine"), _replacement("vm-root", "root")],
        customization=common_pb2.Customization(name_prefix="copy-", name_suffix="-2"), request_id="k"),
        metadata=AUTH)
    assert (op.id, op.type) == ("op-clone", operation_pb2.Operation.CLONE_VM)
    assert [(r.kind, r.name, r.status, r.reason, r.source_name) for r in op.results] == [
        ("VirtualMachine", "copy-vm", "InProgress", "", "vm"),
        ("VirtualDisk", "copy-vm-root", "Conflict", "NameInUse", "vm-root")]
    assert [c[1] for c in server.gateway.calls if c[0] == "CloneVirtualMachine"] == [CloneVmRequest(
        namespace="demo", virtual_machine_name="vm", request_id="k", options=CloneOptions(
            mode=ApplyMode.DRY_RUN,
            name_replacements=(NameReplacement("vm", "copy-vm", "VirtualMachine"), NameReplacement("vm-root", "root")),
            name_prefix="copy-", name_suffix="-2"))]


async def test_create_vm_from_snapshot_passes_every_field(server: Server) -> None:
    stub = clone_service_pb2_grpc.CloneServiceStub(server.channel)
    op = await stub.CreateVirtualMachineFromSnapshot(clone_service_pb2.CreateVirtualMachineFromSnapshotRequest(
        namespace="demo", virtual_machine_snapshot_name="vms", mode=common_pb2.BEST_EFFORT,
        name_replacements=[_replacement("vm", "new-vm")], customization=common_pb2.Customization(name_suffix="-b"),
        request_id="k"), metadata=AUTH)
    assert (op.id, op.type) == ("op-cvm", operation_pb2.Operation.CREATE_VM_FROM_SNAPSHOT)
    assert [r.source_name for r in op.results] == ["vm", "vm-root"]
    assert [c[1] for c in server.gateway.calls if c[0] == "CreateVirtualMachineFromSnapshot"] == [
        CreateVmFromSnapshotRequest(namespace="demo", virtual_machine_snapshot_name="vms", request_id="k",
                                    options=CloneOptions(mode=ApplyMode.BEST_EFFORT,
                                                         name_replacements=(NameReplacement("vm", "new-vm"),),
                                                         name_suffix="-b"))]


@pytest.mark.parametrize(("customization", "prefix", "suffix"), [
    (None, None, None),                                            # no customization at all
    (common_pb2.Customization(), None, None),                      # present, both fields unset
    (common_pb2.Customization(name_prefix=""), "", None),          # set, even empty (the core refuses it)
    (common_pb2.Customization(name_prefix="", name_suffix=""), "", ""),
    (common_pb2.Customization(name_suffix="-x"), None, "-x"),
])
async def test_clone_prefix_and_suffix_keep_their_presence(server: Server, customization: Any,
                                                           prefix: str | None, suffix: str | None) -> None:
    stub = clone_service_pb2_grpc.CloneServiceStub(server.channel)
    request = clone_service_pb2.CloneVirtualMachineRequest(namespace="demo", virtual_machine_name="vm",
                                                           mode=common_pb2.STRICT)
    if customization is not None:
        request.customization.CopyFrom(customization)
    await stub.CloneVirtualMachine(request, metadata=AUTH)
    (sent,) = [c[1] for c in server.gateway.calls if c[0] == "CloneVirtualMachine"]
    assert (sent.options.name_prefix, sent.options.name_suffix) == (prefix, suffix)
    assert sent.options.mode is ApplyMode.STRICT and sent.options.name_replacements == ()


@pytest.mark.parametrize(("sent", "expected"), [
    (common_pb2.APPLY_MODE_UNSPECIFIED, None),  # the core requires a mode (no STRICT default here)
    (common_pb2.DRY_RUN, ApplyMode.DRY_RUN), (common_pb2.STRICT, ApplyMode.STRICT),
    (common_pb2.BEST_EFFORT, ApplyMode.BEST_EFFORT)])
async def test_clone_calls_map_the_mode(server: Server, sent: common_pb2.ApplyMode.ValueType,
                                        expected: ApplyMode | None) -> None:
    stub = clone_service_pb2_grpc.CloneServiceStub(server.channel)
    await stub.CloneVirtualMachine(clone_service_pb2.CloneVirtualMachineRequest(
        namespace="demo", virtual_machine_name="vm", mode=sent), metadata=AUTH)
    await stub.CreateVirtualMachineFromSnapshot(clone_service_pb2.CreateVirtualMachineFromSnapshotRequest(
        namespace="demo", virtual_machine_snapshot_name="vms", mode=sent), metadata=AUTH)
    sent_requests = [c[1] for c in server.gateway.calls
                     if c[0] in ("CloneVirtualMachine", "CreateVirtualMachineFromSnapshot")]
    assert [r.options.mode for r in sent_requests] == [expected, expected]


@pytest.mark.parametrize("rpc", ["CloneVirtualMachine", "CreateVirtualMachineFromSnapshot"])
async def test_clone_unknown_mode_is_invalid_argument_and_recorded(server: Server, rpc: str) -> None:
    stub = clone_service_pb2_grpc.CloneServiceStub(server.channel)
    request: Any = (clone_service_pb2.CloneVirtualMachineRequest(namespace="demo", virtual_machine_name="vm")
                    if rpc == "CloneVirtualMachine" else
                    clone_service_pb2.CreateVirtualMachineFromSnapshotRequest(namespace="demo",
                                                                              virtual_machine_snapshot_name="vms"))
    request.mode = 9
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, rpc)(request, metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = _details(caught.value)["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest) and [v.field for v in bad.field_violations] == ["mode"]
    assert [c for c in server.gateway.calls if c[0] == rpc] == []
    assert ("rejected", f"{rpc}:INVALID_ARGUMENT") in server.gateway.calls


async def test_clone_field_violations_keep_the_proto_field_names(server: Server) -> None:
    stub = clone_service_pb2_grpc.CloneServiceStub(server.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CloneVirtualMachine(clone_service_pb2.CloneVirtualMachineRequest(
            namespace="demo", virtual_machine_name="badnames"), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = _details(caught.value)["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["customization.name_prefix", "name_replacements[0].to", "mode"]


async def test_clone_of_a_running_vm_carries_precondition_failure(server: Server) -> None:
    stub = clone_service_pb2_grpc.CloneServiceStub(server.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CloneVirtualMachine(clone_service_pb2.CloneVirtualMachineRequest(
            namespace="demo", virtual_machine_name="running", mode=common_pb2.STRICT), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    failure = _details(caught.value)["PreconditionFailure"]
    assert isinstance(failure, error_details_pb2.PreconditionFailure)
    assert [v.type for v in failure.violations] == ["VM_RUNNING"]


# ---------------------------------------------------------------- cancel


async def test_cancel_operation_passes_force_and_request_id(server: Server) -> None:
    stub = operation_service_pb2_grpc.OperationServiceStub(server.channel)
    op = await stub.CancelOperation(operation_service_pb2.CancelOperationRequest(
        operation_id="op-7", force=True, request_id="k"), metadata=AUTH)
    assert (op.id, op.state, op.done) == ("op-7", operation_pb2.Operation.CANCELLED, True)
    assert ("CancelOperation", CancelOperationRequest("op-7", True, "k")) in server.gateway.calls


async def test_cancel_without_force_is_refused_with_precondition_failure(server: Server) -> None:
    stub = operation_service_pb2_grpc.OperationServiceStub(server.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CancelOperation(operation_service_pb2.CancelOperationRequest(operation_id="op-7"), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    failure = _details(caught.value)["PreconditionFailure"]
    assert isinstance(failure, error_details_pb2.PreconditionFailure)
    assert [(v.type, v.subject) for v in failure.violations] == [("RESTORE_IN_PROGRESS", "operations/op-7")]
    assert ("CancelOperation", CancelOperationRequest("op-7", False, "")) in server.gateway.calls


# ---------------------------------------------------------------- exports


async def test_export_requests_and_chunks_cross_the_door_field_for_field(server: Server) -> None:
    export = export_service_pb2_grpc.ExportServiceStub(server.channel)
    request = export_service_pb2.ExportDiskRequest(
        namespace="demo", name="d", ttl=duration_pb2.Duration(seconds=90, nanos=500_000_000),
        range=export_service_pb2.ByteRange(offset=5, length=7), expand_holes=True, whole_image_sha256=True,
        if_etag='"e"')
    chunks = [c async for c in export.ExportDisk(request, metadata=AUTH)]
    assert [c.WhichOneof("chunk") for c in chunks] == ["metadata", "data", "hole", "summary"]
    assert chunks[0].metadata.operation_id == "op-exp" and chunks[0].metadata.etag == '"e"'
    assert chunks[0].metadata.volume_mode == export_service_pb2.ExportMetadata.BLOCK
    assert (chunks[1].data.offset, chunks[1].data.data) == (0, b"\x01" * 10)
    assert (chunks[2].hole.offset, chunks[2].hole.length) == (10, (3 << 20) - 10)
    assert chunks[3].summary.sha256 == "ab" * 32 and chunks[3].summary.hole_bytes == (3 << 20) - 10
    assert ("ExportDisk", ExportRequest(namespace="demo", name="d", ttl_seconds=90.5, offset=5, length=7,
                                        expand_holes=True, whole_image_sha256=True, if_etag='"e"')) \
        in server.gateway.calls

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await export.ExportDisk(export_service_pb2.ExportDiskRequest(namespace="demo", name="in-use"),
                                metadata=AUTH).read()
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
        await export.ExportDisk(export_service_pb2.ExportDiskRequest(namespace="demo", name="d")).read()
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED


# ---------------------------------------------------------------- the contract table


def _rpcs() -> list[MethodDescriptor]:
    modules = (snapshot_service_pb2, restore_service_pb2, clone_service_pb2, export_service_pb2,
               operation_service_pb2, audit_service_pb2)
    return [method for module in modules for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods]


def test_every_rpc_is_exactly_one_contract_method_of_the_same_name_and_service() -> None:
    rpcs = _rpcs()
    assert {rpc.containing_service.full_name for rpc in rpcs} == set(SERVICE_NAMES)
    for rpc in rpcs:
        matches = [m for m in contract.METHODS if m.name == rpc.name]
        assert len(matches) == 1, rpc.full_name
        method = matches[0]
        assert method.service == rpc.containing_service.name, rpc.full_name
        assert method.streaming is rpc.server_streaming, rpc.full_name
        assert contract.BY_NAME[rpc.name] is method
    assert sorted(m.name for m in contract.METHODS) == sorted(rpc.name for rpc in rpcs)


async def test_every_servicer_calls_the_facade_with_its_contract_method(server: Server) -> None:
    """Each RPC, invoked with an empty request, reaches ``call`` (unary) or ``stream``
    (server streaming) with the very ``Method`` object of its name, once."""
    for rpc in _rpcs():
        request_class = message_factory.GetMessageClass(rpc.input_type)
        response_class = message_factory.GetMessageClass(rpc.output_type)
        path = f"/{rpc.containing_service.full_name}/{rpc.name}"
        before = len(server.gateway.methods)
        if rpc.server_streaming:
            stream = server.channel.unary_stream(path, request_serializer=request_class.SerializeToString,
                                                 response_deserializer=response_class.FromString)
            call = stream(request_class(), metadata=AUTH)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call.read()
            call.cancel()
        else:
            unary = server.channel.unary_unary(path, request_serializer=request_class.SerializeToString,
                                               response_deserializer=response_class.FromString)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await unary(request_class(), metadata=AUTH)
        assert server.gateway.methods[before:] == [contract.BY_NAME[rpc.name]], rpc.full_name
        assert server.gateway.methods[-1] is contract.BY_NAME[rpc.name]
        method = contract.BY_NAME[rpc.name]
        (sent,) = [req for name, req in server.gateway.calls if name == rpc.name]
        if method.request is not object:  # implemented: the core request has the table's type
            assert isinstance(sent, method.request), rpc.full_name
        else:
            assert sent is None, rpc.full_name


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
