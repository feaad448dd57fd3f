"""Pure conversions between core objects and protobuf messages (service.api.grpc.convert)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from service.api.grpc import convert
from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    clone_service_pb2,
    common_pb2,
    export_service_pb2,
    operation_pb2,
    operation_service_pb2,
    restore_service_pb2,
    snapshot_service_pb2,
)
from service.core.domain import (
    ApplyMode,
    AuditEvent,
    AuditOutcome,
    AuditVerification,
    Condition,
    DiskSnapshot,
    DiskSnapshotEvent,
    ExportData,
    ExportEnd,
    ExportHole,
    ExportStart,
    KeepIpAddress,
    Operation,
    OperationError,
    OperationState,
    OperationTransition,
    OperationType,
    Page,
    ResourceRef,
    ResourceResult,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotEvent,
    WatchEventType,
)
from service.core.errors import ApiError, Code
from service.core.requests import (
    CancelOperationRequest,
    CloneOptions,
    CloneVmRequest,
    CreateVmFromSnapshotRequest,
    CreateVmSnapshotRequest,
    DeleteVmSnapshotRequest,
    ExportRequest,
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

T0 = datetime(2026, 11, 25, 17, 0, 0, 123456, tzinfo=UTC)


def _operation(**changes: object) -> Operation:
    op = Operation(
        id="0b8f8a52-2d1b-4d39-8a1e-6a1c1f6f2f10", type=OperationType.CREATE_DISK_SNAPSHOT, namespace="demo",
        target=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", "linux-vm-root", "demo"),
        actor="alice", request_hash="", state=OperationState.FAILED,
        resource=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDiskSnapshot", "snap", "demo", "u-1"),
        phase="Failed",
        conditions=[Condition("VirtualDiskSnapshotReady", "False", "VirtualDiskSnapshotFailed", "boom", T0)],
        results=[ResourceResult("v1", "VirtualDisk", "d1", "Failed", "in use", reason="AttachedToAnotherVM"),
                 ResourceResult("v1", "VirtualMachineIPAddress", "ip", "Completed")],
        warnings=["images are not saved"],
        error=OperationError("FAILED_PRECONDITION", "VirtualDiskSnapshotFailed", "boom"),
        request_id="req-1", create_time=T0, update_time=T0 + timedelta(seconds=2),
        end_time=T0 + timedelta(seconds=3), version=4,
    )
    return replace(op, **changes)  # type: ignore[arg-type]


def _wire(msg: operation_pb2.Operation) -> operation_pb2.Operation:
    return operation_pb2.Operation.FromString(msg.SerializeToString())


def test_operation_round_trips_through_the_wire() -> None:
    op = _operation()
    msg = convert.operation(op)
    assert msg.state == operation_pb2.Operation.FAILED and msg.done
    assert msg.type == operation_pb2.Operation.CREATE_DISK_SNAPSHOT
    assert msg.create_time.ToDatetime(tzinfo=UTC) == T0
    assert [r.reason for r in msg.results] == ["AttachedToAnotherVM", ""]
    assert convert.operation_from_proto(_wire(msg)) == op


def test_running_operation_leaves_optional_parts_unset() -> None:
    op = _operation(state=OperationState.PENDING, resource=None, error=None, end_time=None, request_id=None,
                    conditions=[Condition("Ready", "Unknown")])
    msg = _wire(convert.operation(op))
    assert not msg.done
    assert not msg.HasField("resource") and not msg.HasField("error") and not msg.HasField("end_time")
    assert not msg.conditions[0].HasField("last_transition_time")
    assert convert.operation_from_proto(msg) == op


@pytest.mark.parametrize("state", list(OperationState))
def test_every_operation_state_and_type_has_a_wire_value(state: OperationState) -> None:
    for op_type in OperationType:
        msg = convert.operation(_operation(state=state, type=op_type))
        assert operation_pb2.Operation.State.Name(msg.state) == state.value
        assert operation_pb2.Operation.Type.Name(msg.type) == op_type.value


@pytest.mark.parametrize("consistent", [None, False, True])
def test_disk_snapshot_round_trips_and_keeps_consistent_presence(consistent: bool | None) -> None:
    snap = DiskSnapshot(namespace="demo", name="s1", virtual_disk_name="linux-vm-root", required_consistency=False,
                        uid="u", phase="Ready", consistent=consistent, volume_snapshot_name="vs",
                        conditions=[Condition("VirtualDiskReady", "True", "", "", T0)],
                        labels={"a": "b"}, annotations={"x": "y"}, operation_id="op", resource_version="7",
                        create_time=T0, deletion_time=None)
    msg = snapshot_service_pb2.DiskSnapshot.FromString(convert.disk_snapshot(snap).SerializeToString())
    assert msg.HasField("consistent") is (consistent is not None)
    assert convert.disk_snapshot_from_proto(msg) == snap


def test_disk_snapshot_event_carries_type() -> None:
    snap = DiskSnapshot(namespace="demo", name="s1", virtual_disk_name="d", required_consistency=True)
    msg = convert.disk_snapshot_event(DiskSnapshotEvent(WatchEventType.DELETED, snap))
    assert msg.type == common_pb2.DELETED and msg.snapshot.name == "s1"


def test_create_request_defaults_required_consistency_to_true_when_absent() -> None:
    absent = convert.create_disk_snapshot_request(snapshot_service_pb2.CreateDiskSnapshotRequest(
        namespace="demo", virtual_disk_name="d", labels={"k": "v"}, request_id="r"))
    assert absent.required_consistency is True and absent.labels == {"k": "v"} and absent.request_id == "r"
    explicit = convert.create_disk_snapshot_request(snapshot_service_pb2.CreateDiskSnapshotRequest(
        namespace="demo", virtual_disk_name="d", required_consistency=False))
    assert explicit.required_consistency is False


def test_list_operations_request_maps_enums_and_unspecified_to_none() -> None:
    req = convert.list_operations_request(operation_service_pb2.ListOperationsRequest(
        namespace="demo", state=operation_pb2.Operation.RUNNING, page_size=3, page_token="t"))
    assert req.state is OperationState.RUNNING and req.type is None
    assert (req.namespace, req.page_size, req.page_token) == ("demo", 3, "t")


def test_unknown_enum_number_is_invalid_argument_naming_the_field() -> None:
    msg = operation_service_pb2.ListOperationsRequest()
    msg.type = 99  # type: ignore[assignment]  # what an out-of-date or hostile client can send
    with pytest.raises(ApiError) as caught:
        convert.list_operations_request(msg)
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert [v.field for v in caught.value.field_violations] == ["type"]


def test_audit_request_and_event_conversion() -> None:
    since = convert.timestamp(T0)
    req = convert.list_audit_events_request(audit_service_pb2.ListAuditEventsRequest(
        actor="alice", outcome=audit_service_pb2.AuditEvent.DENIED, since=since, page_size=2))
    assert req.outcome is AuditOutcome.DENIED and req.until == "" and req.page_size == 2
    assert datetime.fromisoformat(req.since) == T0
    export = convert.list_audit_events_request(audit_service_pb2.ExportAuditEventsRequest(namespace="demo"))
    assert export.namespace == "demo" and export.page_size == 0

    event = AuditEvent(id=5, time=T0, actor="alice", action="CreateDiskSnapshot", outcome=AuditOutcome.ERROR,
                       namespace="demo", resource="disk-snapshots/s1", protocol="grpc", request_id="r",
                       operation_id="", code="NOT_FOUND", reason="RESOURCE_NOT_FOUND",
                       details={"count": 2, "when": T0, "nested": {"ok": True}}, prev_hash="aa", hash="bb")
    msg = convert.audit_event(event)
    assert msg.outcome == audit_service_pb2.AuditEvent.ERROR
    assert msg.details["count"] == 2 and msg.details["nested"]["ok"] is True
    assert msg.details["when"] == str(T0)  # non-JSON values travel as their string form


def test_audit_verification_sets_first_bad_id_only_when_known() -> None:
    assert not convert.audit_verification(AuditVerification(ok=True, checked=3)).HasField("first_bad_id")
    broken = convert.audit_verification(AuditVerification(ok=False, checked=3, first_bad_id=2, message="bad"))
    assert broken.first_bad_id == 2 and not broken.ok


def test_operation_transition() -> None:
    msg = convert.operation_transition(OperationTransition("op", 2, OperationState.RUNNING, "InProgress",
                                                           "Snapshotting", "", T0))
    assert msg.state == operation_pb2.Operation.RUNNING and msg.seq == 2 and msg.time.ToDatetime(tzinfo=UTC) == T0


def _error(call: object) -> ApiError:
    assert callable(call)
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.code is Code.INVALID_ARGUMENT
    return caught.value


def test_resource_result_round_trips_with_its_reason() -> None:
    result = ResourceResult("virtualization.deckhouse.io/v1alpha2", "VirtualMachineIPAddress", "ip-1", "Conflict",
                            "in use by vm-2", reason="IPAddressInUse")
    wire = operation_pb2.ResourceResult.FromString(convert.resource_result(result).SerializeToString())
    assert wire.reason == "IPAddressInUse"
    assert convert.resource_result_from_proto(wire) == result


def test_resource_result_round_trips_with_its_source_name() -> None:
    result = ResourceResult("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", "copy-root", "InProgress",
                            source_name="vm-root")
    wire = operation_pb2.ResourceResult.FromString(convert.resource_result(result).SerializeToString())
    assert (wire.name, wire.source_name) == ("copy-root", "vm-root")
    assert convert.resource_result_from_proto(wire) == result
    assert convert.resource_result_from_proto(operation_pb2.ResourceResult(name="x")).source_name == ""
    op = _operation(type=OperationType.CLONE_VM, results=[result])
    assert convert.operation_from_proto(_wire(convert.operation(op))).results == [result]


# ---------------------------------------------------------------- VM snapshots


@pytest.mark.parametrize("consistent", [None, False, True])
@pytest.mark.parametrize("keep", list(KeepIpAddress))
def test_vm_snapshot_round_trips(consistent: bool | None, keep: KeepIpAddress) -> None:
    snap = VirtualMachineSnapshot(
        namespace="demo", name="vs1", virtual_machine_name="linux-vm", required_consistency=False,
        keep_ip_address=keep, uid="u", phase="Ready", consistent=consistent,
        resources=[ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", "linux-vm-root", "demo", "u2")],
        virtual_disk_snapshot_names=["vdsnapshot-1"],
        conditions=[Condition("VirtualMachineSnapshotReady", "True", "VirtualMachineSnapshotReady", "", T0)],
        labels={"a": "b"}, annotations={"x": "y"}, operation_id="op", resource_version="7", create_time=T0,
        deletion_time=T0 + timedelta(seconds=1))
    msg = snapshot_service_pb2.VirtualMachineSnapshot.FromString(convert.vm_snapshot(snap).SerializeToString())
    assert msg.HasField("consistent") is (consistent is not None)
    assert snapshot_service_pb2.VirtualMachineSnapshot.KeepIpAddress.Name(msg.keep_ip_address) == keep.name
    assert convert.vm_snapshot_from_proto(msg) == snap


def test_vm_snapshot_event_and_page() -> None:
    snap = VirtualMachineSnapshot(namespace="demo", name="vs1", virtual_machine_name="vm", required_consistency=True)
    msg = convert.vm_snapshot_event(VirtualMachineSnapshotEvent(WatchEventType.MODIFIED, snap))
    assert msg.type == common_pb2.MODIFIED and msg.snapshot.name == "vs1"
    assert msg.snapshot.keep_ip_address == snapshot_service_pb2.VirtualMachineSnapshot.ALWAYS
    page = convert.vm_snapshots_page(Page([snap], next_page_token="n"))
    assert [s.name for s in page.virtual_machine_snapshots] == ["vs1"] and page.next_page_token == "n"


def test_create_vm_snapshot_request_defaults() -> None:
    absent = convert.create_vm_snapshot_request(snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(
        namespace="demo", virtual_machine_name="vm"))
    assert absent == CreateVmSnapshotRequest(namespace="demo", virtual_machine_name="vm",
                                             required_consistency=True, keep_ip_address=KeepIpAddress.ALWAYS)
    explicit = convert.create_vm_snapshot_request(snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(
        namespace="demo", virtual_machine_name="vm", name="n", generate_name="g-", required_consistency=False,
        keep_ip_address=snapshot_service_pb2.VirtualMachineSnapshot.NEVER, labels={"a": "1"},
        annotations={"b": "2"}, request_id="r"))
    assert explicit == CreateVmSnapshotRequest(
        namespace="demo", virtual_machine_name="vm", name="n", generate_name="g-", required_consistency=False,
        keep_ip_address=KeepIpAddress.NEVER, labels={"a": "1"}, annotations={"b": "2"}, request_id="r")
    assert convert.create_vm_snapshot_request(snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(
        keep_ip_address=snapshot_service_pb2.VirtualMachineSnapshot.ALWAYS)).keep_ip_address is KeepIpAddress.ALWAYS


def test_create_vm_snapshot_request_unknown_keep_ip_address() -> None:
    msg = snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(namespace="demo", virtual_machine_name="vm")
    msg.keep_ip_address = 3  # type: ignore[assignment]
    err = _error(lambda: convert.create_vm_snapshot_request(msg))
    assert [v.field for v in err.field_violations] == ["keep_ip_address"]


def test_vm_snapshot_key_list_watch_delete_requests() -> None:
    assert convert.object_key(snapshot_service_pb2.GetVirtualMachineSnapshotRequest(namespace="demo", name="s")) \
        == ObjectKey("demo", "s")
    assert convert.list_request(snapshot_service_pb2.ListVirtualMachineSnapshotsRequest(
        namespace="demo", page_size=3, page_token="t", label_selector="a=b")) == ListRequest("demo", 3, "t", "a=b")
    assert convert.watch_request(snapshot_service_pb2.WatchVirtualMachineSnapshotsRequest(namespace="demo")) \
        == WatchRequest("demo", "")
    assert convert.delete_vm_snapshot_request(snapshot_service_pb2.DeleteVirtualMachineSnapshotRequest(
        namespace="demo", name="s", request_id="k")) == DeleteVmSnapshotRequest("demo", "s", "k")


# ---------------------------------------------------------------- restores


def test_restore_disk_request() -> None:
    req = convert.restore_disk_request(restore_service_pb2.RestoreDiskRequest(
        namespace="demo", name="d2", disk_snapshot_name="s", size="20Gi", storage_class_name="fast",
        labels={"a": "1"}, request_id="k"))
    assert req == RestoreDiskRequest(namespace="demo", name="d2", disk_snapshot_name="s", size="20Gi",
                                     storage_class_name="fast", labels={"a": "1"}, request_id="k")
    assert convert.restore_disk_request(restore_service_pb2.RestoreDiskRequest(namespace="demo")) \
        == RestoreDiskRequest(namespace="demo", name="", disk_snapshot_name="")


@pytest.mark.parametrize(("sent", "expected"), [
    (common_pb2.APPLY_MODE_UNSPECIFIED, ApplyMode.STRICT), (common_pb2.DRY_RUN, ApplyMode.DRY_RUN),
    (common_pb2.STRICT, ApplyMode.STRICT), (common_pb2.BEST_EFFORT, ApplyMode.BEST_EFFORT)])
def test_restore_vm_request_mode(sent: common_pb2.ApplyMode.ValueType, expected: ApplyMode) -> None:
    req = convert.restore_vm_request(restore_service_pb2.RestoreVirtualMachineRequest(
        namespace="demo", virtual_machine_name="vm", virtual_machine_snapshot_name="vs", mode=sent, request_id="k"))
    assert req == RestoreVmRequest(namespace="demo", virtual_machine_name="vm", virtual_machine_snapshot_name="vs",
                                   mode=expected, request_id="k")


def test_apply_mode_round_trips_by_name() -> None:
    for mode in ApplyMode:
        assert convert.apply_mode_from_proto(convert.apply_mode(mode)) is mode
    for keep in KeepIpAddress:
        assert convert.keep_ip_address_from_proto(convert.keep_ip_address(keep)) is keep


def test_restore_vm_request_unknown_mode() -> None:
    msg = restore_service_pb2.RestoreVirtualMachineRequest(namespace="demo", virtual_machine_name="vm")
    msg.mode = 12  # type: ignore[assignment]
    err = _error(lambda: convert.restore_vm_request(msg))
    assert [v.field for v in err.field_violations] == ["mode"]


# ---------------------------------------------------------------- clones


def _replacement(from_name: str, to: str, kind: str = "") -> common_pb2.NameReplacement:
    return common_pb2.NameReplacement(to=to, **{"from": common_pb2.NameReplacement.Source(kind=kind, name=from_name)})


def test_clone_vm_request_moves_every_field() -> None:
    msg = clone_service_pb2.CloneVirtualMachineRequest(
        namespace="demo", virtual_machine_name="vm", mode=common_pb2.DRY_RUN,
        name_replacements=[_replacement("vm", "copy", "VirtualMachine"), _replacement("vm-root", "root")],
        customization=common_pb2.Customization(name_prefix="p-", name_suffix="-s"), request_id="k")
    assert convert.clone_vm_request(msg) == CloneVmRequest(
        namespace="demo", virtual_machine_name="vm", request_id="k", options=CloneOptions(
            mode=ApplyMode.DRY_RUN,
            name_replacements=(NameReplacement(from_name="vm", to="copy", from_kind="VirtualMachine"),
                               NameReplacement(from_name="vm-root", to="root", from_kind="")),
            name_prefix="p-", name_suffix="-s"))


def test_create_vm_from_snapshot_request_defaults() -> None:
    msg = clone_service_pb2.CreateVirtualMachineFromSnapshotRequest(namespace="demo",
                                                                    virtual_machine_snapshot_name="vms")
    # UNSPECIFIED mode is None (the core requires one), unset prefix/suffix are None.
    assert convert.create_vm_from_snapshot_request(msg) == CreateVmFromSnapshotRequest(
        namespace="demo", virtual_machine_snapshot_name="vms",
        options=CloneOptions(mode=None, name_replacements=(), name_prefix=None, name_suffix=None))


def test_clone_options_keep_the_presence_of_an_empty_prefix_or_suffix() -> None:
    msg = clone_service_pb2.CloneVirtualMachineRequest(customization=common_pb2.Customization(name_prefix=""))
    options = convert.clone_vm_request(msg).options
    assert (options.name_prefix, options.name_suffix) == ("", None)
    msg = clone_service_pb2.CloneVirtualMachineRequest(customization=common_pb2.Customization(name_suffix=""))
    options = convert.clone_vm_request(msg).options
    assert (options.name_prefix, options.name_suffix) == (None, "")


@pytest.mark.parametrize("options", [
    CloneOptions(ApplyMode.STRICT),
    CloneOptions(ApplyMode.STRICT, name_prefix="", name_suffix=""),
    CloneOptions(ApplyMode.BEST_EFFORT, (NameReplacement("a", "b"), NameReplacement("c", "d", "VirtualDisk")),
                 name_prefix="p-", name_suffix=None),
])
def test_clone_options_round_trip_through_the_wire(options: CloneOptions) -> None:
    assert options.mode is not None
    msg = clone_service_pb2.CloneVirtualMachineRequest(
        mode=convert.apply_mode(options.mode), customization=convert.customization(options),
        name_replacements=[convert.name_replacement(r) for r in options.name_replacements])
    wire = clone_service_pb2.CloneVirtualMachineRequest.FromString(msg.SerializeToString())
    assert convert.clone_vm_request(wire).options == options


@pytest.mark.parametrize("build", [convert.clone_vm_request, convert.create_vm_from_snapshot_request])
def test_clone_requests_unknown_mode(build: Callable[[object], object]) -> None:
    msg: object = (clone_service_pb2.CloneVirtualMachineRequest() if build is convert.clone_vm_request
                   else clone_service_pb2.CreateVirtualMachineFromSnapshotRequest())
    msg.mode = 7  # type: ignore[attr-defined]
    err = _error(lambda: build(msg))
    assert [v.field for v in err.field_violations] == ["mode"]


# ---------------------------------------------------------------- operations, audit, exports


def test_operation_requests() -> None:
    assert convert.operation_key(operation_service_pb2.GetOperationRequest(operation_id="op")) == OperationKey("op")
    assert convert.operation_key(operation_service_pb2.GetOperationTimelineRequest(operation_id="op")) \
        == OperationKey("op")
    assert convert.watch_operation_request(operation_service_pb2.WatchOperationRequest(
        operation_id="op", after_version=4)) == WatchOperationRequest("op", 4)
    assert convert.cancel_operation_request(operation_service_pb2.CancelOperationRequest(operation_id="op")) \
        == CancelOperationRequest("op", force=False, request_id="")
    assert convert.cancel_operation_request(operation_service_pb2.CancelOperationRequest(
        operation_id="op", force=True, request_id="k")) == CancelOperationRequest("op", force=True, request_id="k")
    assert convert.verify_audit_log_request(audit_service_pb2.VerifyAuditLogRequest()) == VerifyAuditLogRequest()


def test_pages_and_timeline() -> None:
    ops = convert.operations_page(Page([_operation()], next_page_token="n"))
    assert [o.id for o in ops.operations] == [_operation().id] and ops.next_page_token == "n"
    timeline = convert.operation_timeline([OperationTransition("op", 1, OperationState.PENDING, "", "Created", "",
                                                               T0)])
    assert [t.seq for t in timeline.transitions] == [1]
    snap = DiskSnapshot(namespace="demo", name="s1", virtual_disk_name="d", required_consistency=True)
    disks = convert.disk_snapshots_page(Page([snap]))
    assert [s.name for s in disks.disk_snapshots] == ["s1"] and disks.next_page_token == ""


def test_export_items_become_chunks_and_messages_become_requests() -> None:
    data = convert.export_chunk(ExportData(5, b"\x00\x01"))
    assert data.WhichOneof("chunk") == "data" and (data.data.offset, data.data.data) == (5, b"\x00\x01")
    hole = convert.export_chunk(ExportHole(7, 9))
    assert (hole.hole.offset, hole.hole.length) == (7, 9)
    start = convert.export_chunk(ExportStart(operation_id="op", size=16, offset=0, length=16, etag='"e"'))
    assert start.metadata.volume_mode == export_service_pb2.ExportMetadata.BLOCK and start.metadata.size == 16
    end = convert.export_chunk(ExportEnd(size=16, offset=0, length=16, sha256="s", range_sha256="r", hole_bytes=9))
    assert (end.summary.sha256, end.summary.range_sha256, end.summary.hole_bytes) == ("s", "r", 9)
    whole = convert.export_request(export_service_pb2.ExportDiskSnapshotRequest(namespace="demo", name="s"))
    assert whole == ExportRequest(namespace="demo", name="s") and not whole.ranged
    ranged = export_service_pb2.ExportDiskRequest(namespace="demo", name="d")
    ranged.range.offset = 3   # length unset: to the end
    assert convert.export_request(ranged) == ExportRequest(namespace="demo", name="d", offset=3, length=None)
