"""Pure conversions between core objects and protobuf messages (service.api.grpc.convert)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from service.api.grpc import convert
from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    common_pb2,
    operation_pb2,
    operation_service_pb2,
    snapshot_service_pb2,
)
from service.core.domain import (
    AuditEvent,
    AuditOutcome,
    AuditVerification,
    Condition,
    DiskSnapshot,
    DiskSnapshotEvent,
    Operation,
    OperationError,
    OperationState,
    OperationTransition,
    OperationType,
    ResourceRef,
    ResourceResult,
    WatchEventType,
)
from service.core.errors import ApiError, Code

T0 = datetime(2026, 11, 25, 17, 0, 0, 123456, tzinfo=UTC)


def _operation(**changes: object) -> Operation:
    op = Operation(
        id="0b8f8a52-2d1b-4d39-8a1e-6a1c1f6f2f10", type=OperationType.CREATE_DISK_SNAPSHOT, namespace="demo",
        target=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", "linux-vm-root", "demo"),
        actor="alice", request_hash="", state=OperationState.FAILED,
        resource=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDiskSnapshot", "snap", "demo", "u-1"),
        phase="Failed",
        conditions=[Condition("VirtualDiskSnapshotReady", "False", "VirtualDiskSnapshotFailed", "boom", T0)],
        results=[ResourceResult("v1", "VirtualDisk", "d1", "Failed", "in use")],
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
