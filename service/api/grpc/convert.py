"""Pure conversions between protobuf messages and core objects.

Outbound (domain -> proto) functions take what the core returns; inbound (proto ->
``service.core.requests``) functions only move fields across. The one rule checked
here is the wire's own: what no core type can carry (an enum number the contract does
not define, in any field of any request: ``reject_unknown_enums``; a timestamp outside
the calendar) is INVALID_ARGUMENT.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

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
    AuditVerificationProgress,
    Condition,
    DiskSnapshot,
    DiskSnapshotEvent,
    ExportData,
    ExportHole,
    ExportItem,
    ExportStart,
    ExportTransfer,
    KeepIpAddress,
    Operation,
    OperationError,
    OperationState,
    OperationTransition,
    OperationType,
    Page,
    ResourceRef,
    ResourceResult,
    TransferOutcome,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotEvent,
    VolumeMode,
    WatchEventType,
)
from service.core.errors import FieldViolation, invalid_argument
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

E = TypeVar("E", bound=StrEnum)
N = TypeVar("N", bound=int)  # a generated enum's ValueType

# ---------------------------------------------------------------- scalars


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return ts


def datetime_from(msg: Any, field: str) -> datetime | None:
    """The timestamp ``msg.<field>`` as an aware UTC datetime, None when unset; one
    outside years 1-9999 (or with nanos out of range) is INVALID_ARGUMENT."""
    if not msg.HasField(field):
        return None
    ts: Timestamp = getattr(msg, field)
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise invalid_argument(f"{field}: not a valid timestamp",
                               [FieldViolation(field, f"not a valid timestamp: {exc}")]) from None


def enum_from_proto(domain: type[E], name_of: Callable[[N], str], number: N, field: str) -> E | None:
    """A proto enum number as the domain member of the same name (``ApplyMode.DRY_RUN``
    for ``DRY_RUN``, whatever its value); 0 (UNSPECIFIED) is None, a number the contract
    does not define is INVALID_ARGUMENT."""
    if number == 0:
        return None
    try:
        return domain[name_of(number)]
    except (ValueError, KeyError):
        raise invalid_argument(f"{field}: unknown enum value {number}",
                               [FieldViolation(field, f"unknown enum value {number}")]) from None


# Enough to name the problem; the status trailer carries at most 20 violations anyway.
_MAX_ENUM_VIOLATIONS = 20


def reject_unknown_enums(msg: Message) -> None:
    """INVALID_ARGUMENT naming every enum field (however deep, repeated or a map value)
    holding a number its enum does not define: proto3 enums are open, so the parser
    keeps such numbers and only this check stands between them and the core."""
    violations: list[FieldViolation] = []
    for path, number in _unknown_enums(msg, ""):
        violations.append(FieldViolation(path, f"unknown enum value {number}"))
        if len(violations) >= _MAX_ENUM_VIOLATIONS:
            break
    if violations:
        raise invalid_argument("; ".join(f"{v.field}: {v.description}" for v in violations), violations)


def _unknown_enums(msg: Message, prefix: str) -> Iterator[tuple[str, int]]:
    # The stubs type it as either implementation's Descriptor; both have the same interface.
    if not _holds_enums(cast(Descriptor, msg.DESCRIPTOR)):
        return
    for field, value in msg.ListFields():
        if field.enum_type is None and (field.message_type is None or not _holds_enums(field.message_type)):
            continue  # nothing to check in it, however many elements it has
        path = prefix + field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key in value:
                yield from _unknown_in(value_field, value[key], f"{path}[{key}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from _unknown_in(field, item, f"{path}[{index}]")
        else:
            yield from _unknown_in(field, value, path)


def _unknown_in(field: FieldDescriptor, value: Any, path: str) -> Iterator[tuple[str, int]]:
    if field.enum_type is not None:
        if value not in field.enum_type.values_by_number:
            yield path, int(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        yield from _unknown_enums(value, path + ".")


_ENUM_HOLDERS: dict[str, bool] = {}


def _holds_enums(descriptor: Descriptor) -> bool:
    """Whether any message type reachable from ``descriptor`` has an enum field (cached
    per type), so a large repeated field of plain strings is never walked."""
    known = _ENUM_HOLDERS.get(descriptor.full_name)
    if known is not None:
        return known
    seen, pending, found = {descriptor.full_name}, [descriptor], False
    while pending and not found:
        for field in pending.pop().fields:
            if field.type == FieldDescriptor.TYPE_ENUM:
                found = True
            elif field.message_type is not None and field.message_type.full_name not in seen:
                seen.add(field.message_type.full_name)
                pending.append(field.message_type)
    _ENUM_HOLDERS[descriptor.full_name] = found
    return found


# ---------------------------------------------------------------- shared messages


def resource_ref(ref: ResourceRef) -> common_pb2.ResourceRef:
    return common_pb2.ResourceRef(api_version=ref.api_version, kind=ref.kind, name=ref.name,
                                  namespace=ref.namespace, uid=ref.uid)


def resource_ref_from_proto(msg: common_pb2.ResourceRef) -> ResourceRef:
    return ResourceRef(api_version=msg.api_version, kind=msg.kind, name=msg.name,
                       namespace=msg.namespace, uid=msg.uid)


def condition(cond: Condition) -> common_pb2.Condition:
    return common_pb2.Condition(type=cond.type, status=cond.status, reason=cond.reason, message=cond.message,
                                last_transition_time=timestamp(cond.last_transition_time))


def condition_from_proto(msg: common_pb2.Condition) -> Condition:
    return Condition(type=msg.type, status=msg.status, reason=msg.reason, message=msg.message,
                     last_transition_time=datetime_from(msg, "last_transition_time"))


# ---------------------------------------------------------------- operations


def operation_state(state: OperationState) -> operation_pb2.Operation.State.ValueType:
    return operation_pb2.Operation.State.Value(state.value)


def resource_result(result: ResourceResult) -> operation_pb2.ResourceResult:
    return operation_pb2.ResourceResult(api_version=result.api_version, kind=result.kind, name=result.name,
                                        status=result.status, message=result.message, reason=result.reason,
                                        source_name=result.source_name)


def resource_result_from_proto(msg: operation_pb2.ResourceResult) -> ResourceResult:
    return ResourceResult(api_version=msg.api_version, kind=msg.kind, name=msg.name, status=msg.status,
                          message=msg.message, reason=msg.reason, source_name=msg.source_name)


def operation(op: Operation) -> operation_pb2.Operation:
    msg = operation_pb2.Operation(
        id=op.id, type=operation_pb2.Operation.Type.Value(op.type.value), namespace=op.namespace,
        target=resource_ref(op.target), state=operation_state(op.state), done=op.done, phase=op.phase,
        conditions=[condition(c) for c in op.conditions],
        results=[resource_result(r) for r in op.results],
        warnings=op.warnings, actor=op.actor, request_id=op.request_id or "",
        create_time=timestamp(op.create_time), update_time=timestamp(op.update_time),
        end_time=timestamp(op.end_time), version=op.version,
    )
    if op.resource is not None:
        msg.resource.CopyFrom(resource_ref(op.resource))
    if op.error is not None:
        msg.error.CopyFrom(operation_pb2.OperationError(code=op.error.code, reason=op.error.reason,
                                                        message=op.error.message))
    if op.transfer is not None:
        msg.transfer.CopyFrom(export_transfer(op.transfer))
    return msg


def operation_from_proto(msg: operation_pb2.Operation) -> Operation:
    """The inverse of ``operation`` (clients and tests); ``request_hash`` is not on the wire."""
    created = datetime_from(msg, "create_time")
    updated = datetime_from(msg, "update_time")
    return Operation(
        id=msg.id, type=OperationType(operation_pb2.Operation.Type.Name(msg.type)), namespace=msg.namespace,
        target=resource_ref_from_proto(msg.target), actor=msg.actor, request_hash="",
        state=OperationState(operation_pb2.Operation.State.Name(msg.state)),
        resource=resource_ref_from_proto(msg.resource) if msg.HasField("resource") else None,
        phase=msg.phase, conditions=[condition_from_proto(c) for c in msg.conditions],
        results=[resource_result_from_proto(r) for r in msg.results],
        warnings=list(msg.warnings),
        error=OperationError(code=msg.error.code, reason=msg.error.reason, message=msg.error.message)
        if msg.HasField("error") else None,
        request_id=msg.request_id or None,
        create_time=created or datetime.fromtimestamp(0, UTC),
        update_time=updated or datetime.fromtimestamp(0, UTC),
        end_time=datetime_from(msg, "end_time"), version=msg.version,
        transfer=export_transfer_from_proto(msg.transfer) if msg.HasField("transfer") else None,
    )


def operation_transition(tr: OperationTransition) -> operation_service_pb2.OperationTransition:
    return operation_service_pb2.OperationTransition(
        operation_id=tr.operation_id, seq=tr.seq, state=operation_state(tr.state), phase=tr.phase,
        reason=tr.reason, message=tr.message, time=timestamp(tr.time))


def operation_timeline(transitions: list[OperationTransition]) -> operation_service_pb2.GetOperationTimelineResponse:
    return operation_service_pb2.GetOperationTimelineResponse(
        transitions=[operation_transition(t) for t in transitions])


def operations_page(page: Page[Operation]) -> operation_service_pb2.ListOperationsResponse:
    return operation_service_pb2.ListOperationsResponse(operations=[operation(op) for op in page.items],
                                                        next_page_token=page.next_page_token)


def list_operations_request(msg: operation_service_pb2.ListOperationsRequest) -> ListOperationsRequest:
    return ListOperationsRequest(
        namespace=msg.namespace,
        type=enum_from_proto(OperationType, operation_pb2.Operation.Type.Name, msg.type, "type"),
        state=enum_from_proto(OperationState, operation_pb2.Operation.State.Name, msg.state, "state"),
        actor=msg.actor, page_size=msg.page_size, page_token=msg.page_token)


def operation_key(
    msg: operation_service_pb2.GetOperationRequest | operation_service_pb2.GetOperationTimelineRequest,
) -> OperationKey:
    return OperationKey(operation_id=msg.operation_id)


def watch_operation_request(msg: operation_service_pb2.WatchOperationRequest) -> WatchOperationRequest:
    return WatchOperationRequest(operation_id=msg.operation_id, after_version=msg.after_version)


def cancel_operation_request(msg: operation_service_pb2.CancelOperationRequest) -> CancelOperationRequest:
    return CancelOperationRequest(operation_id=msg.operation_id, force=msg.force, request_id=msg.request_id)


# ---------------------------------------------------------------- snapshots, shared


def watch_event_type(event_type: WatchEventType) -> common_pb2.WatchEventType.ValueType:
    return common_pb2.WatchEventType.Value(event_type.value)


def object_key(
    msg: snapshot_service_pb2.GetDiskSnapshotRequest | snapshot_service_pb2.GetVirtualMachineSnapshotRequest,
) -> ObjectKey:
    return ObjectKey(namespace=msg.namespace, name=msg.name)


def watch_request(
    msg: snapshot_service_pb2.WatchDiskSnapshotsRequest | snapshot_service_pb2.WatchVirtualMachineSnapshotsRequest,
) -> WatchRequest:
    return WatchRequest(namespace=msg.namespace, name=msg.name)


def list_request(
    msg: snapshot_service_pb2.ListDiskSnapshotsRequest | snapshot_service_pb2.ListVirtualMachineSnapshotsRequest,
) -> ListRequest:
    return ListRequest(namespace=msg.namespace, page_size=msg.page_size, page_token=msg.page_token,
                       label_selector=msg.label_selector)


def _required_consistency(
    msg: snapshot_service_pb2.CreateDiskSnapshotRequest | snapshot_service_pb2.CreateVirtualMachineSnapshotRequest,
) -> bool:
    # proto3 `optional`: absent means the platform default (true), not false.
    return msg.required_consistency if msg.HasField("required_consistency") else True


# ---------------------------------------------------------------- disk snapshots


def disk_snapshot(snap: DiskSnapshot) -> snapshot_service_pb2.DiskSnapshot:
    msg = snapshot_service_pb2.DiskSnapshot(
        namespace=snap.namespace, name=snap.name, uid=snap.uid, virtual_disk_name=snap.virtual_disk_name,
        required_consistency=snap.required_consistency, phase=snap.phase,
        volume_snapshot_name=snap.volume_snapshot_name, conditions=[condition(c) for c in snap.conditions],
        labels=snap.labels, annotations=snap.annotations, operation_id=snap.operation_id,
        resource_version=snap.resource_version, create_time=timestamp(snap.create_time),
        deletion_time=timestamp(snap.deletion_time))
    if snap.consistent is not None:
        msg.consistent = snap.consistent
    return msg


def disk_snapshot_from_proto(msg: snapshot_service_pb2.DiskSnapshot) -> DiskSnapshot:
    return DiskSnapshot(
        namespace=msg.namespace, name=msg.name, virtual_disk_name=msg.virtual_disk_name,
        required_consistency=msg.required_consistency, uid=msg.uid, phase=msg.phase,
        consistent=msg.consistent if msg.HasField("consistent") else None,
        volume_snapshot_name=msg.volume_snapshot_name, conditions=[condition_from_proto(c) for c in msg.conditions],
        labels=dict(msg.labels), annotations=dict(msg.annotations), operation_id=msg.operation_id,
        resource_version=msg.resource_version, create_time=datetime_from(msg, "create_time"),
        deletion_time=datetime_from(msg, "deletion_time"))


def disk_snapshot_event(event: DiskSnapshotEvent) -> snapshot_service_pb2.DiskSnapshotEvent:
    return snapshot_service_pb2.DiskSnapshotEvent(type=watch_event_type(event.type),
                                                  snapshot=disk_snapshot(event.snapshot))


def disk_snapshots_page(page: Page[DiskSnapshot]) -> snapshot_service_pb2.ListDiskSnapshotsResponse:
    return snapshot_service_pb2.ListDiskSnapshotsResponse(disk_snapshots=[disk_snapshot(s) for s in page.items],
                                                          next_page_token=page.next_page_token)


def create_disk_snapshot_request(msg: snapshot_service_pb2.CreateDiskSnapshotRequest) -> CreateDiskSnapshotRequest:
    return CreateDiskSnapshotRequest(
        namespace=msg.namespace, virtual_disk_name=msg.virtual_disk_name, name=msg.name,
        generate_name=msg.generate_name, required_consistency=_required_consistency(msg),
        labels=dict(msg.labels), annotations=dict(msg.annotations), request_id=msg.request_id)


def delete_disk_snapshot_request(msg: snapshot_service_pb2.DeleteDiskSnapshotRequest) -> DeleteDiskSnapshotRequest:
    return DeleteDiskSnapshotRequest(namespace=msg.namespace, name=msg.name, request_id=msg.request_id)


# ---------------------------------------------------------------- VM snapshots

_KeepIpAddressPb = snapshot_service_pb2.VirtualMachineSnapshot.KeepIpAddress


def keep_ip_address(value: KeepIpAddress) -> snapshot_service_pb2.VirtualMachineSnapshot.KeepIpAddress.ValueType:
    return _KeepIpAddressPb.Value(value.name)


def keep_ip_address_from_proto(number: snapshot_service_pb2.VirtualMachineSnapshot.KeepIpAddress.ValueType,
                               field: str = "keep_ip_address") -> KeepIpAddress:
    """UNSPECIFIED is the platform's default, ALWAYS."""
    return enum_from_proto(KeepIpAddress, _KeepIpAddressPb.Name, number, field) or KeepIpAddress.ALWAYS


def vm_snapshot(snap: VirtualMachineSnapshot) -> snapshot_service_pb2.VirtualMachineSnapshot:
    msg = snapshot_service_pb2.VirtualMachineSnapshot(
        namespace=snap.namespace, name=snap.name, uid=snap.uid, virtual_machine_name=snap.virtual_machine_name,
        required_consistency=snap.required_consistency, keep_ip_address=keep_ip_address(snap.keep_ip_address),
        phase=snap.phase, resources=[resource_ref(r) for r in snap.resources],
        virtual_disk_snapshot_names=snap.virtual_disk_snapshot_names,
        conditions=[condition(c) for c in snap.conditions], labels=snap.labels, annotations=snap.annotations,
        operation_id=snap.operation_id, resource_version=snap.resource_version,
        create_time=timestamp(snap.create_time), deletion_time=timestamp(snap.deletion_time))
    if snap.consistent is not None:
        msg.consistent = snap.consistent
    return msg


def vm_snapshot_from_proto(msg: snapshot_service_pb2.VirtualMachineSnapshot) -> VirtualMachineSnapshot:
    return VirtualMachineSnapshot(
        namespace=msg.namespace, name=msg.name, virtual_machine_name=msg.virtual_machine_name,
        required_consistency=msg.required_consistency, keep_ip_address=keep_ip_address_from_proto(msg.keep_ip_address),
        uid=msg.uid, phase=msg.phase, consistent=msg.consistent if msg.HasField("consistent") else None,
        resources=[resource_ref_from_proto(r) for r in msg.resources],
        virtual_disk_snapshot_names=list(msg.virtual_disk_snapshot_names),
        conditions=[condition_from_proto(c) for c in msg.conditions], labels=dict(msg.labels),
        annotations=dict(msg.annotations), operation_id=msg.operation_id, resource_version=msg.resource_version,
        create_time=datetime_from(msg, "create_time"), deletion_time=datetime_from(msg, "deletion_time"))


def vm_snapshot_event(event: VirtualMachineSnapshotEvent) -> snapshot_service_pb2.VirtualMachineSnapshotEvent:
    return snapshot_service_pb2.VirtualMachineSnapshotEvent(type=watch_event_type(event.type),
                                                            snapshot=vm_snapshot(event.snapshot))


def vm_snapshots_page(page: Page[VirtualMachineSnapshot]) -> snapshot_service_pb2.ListVirtualMachineSnapshotsResponse:
    return snapshot_service_pb2.ListVirtualMachineSnapshotsResponse(
        virtual_machine_snapshots=[vm_snapshot(s) for s in page.items], next_page_token=page.next_page_token)


def create_vm_snapshot_request(
    msg: snapshot_service_pb2.CreateVirtualMachineSnapshotRequest,
) -> CreateVmSnapshotRequest:
    return CreateVmSnapshotRequest(
        namespace=msg.namespace, virtual_machine_name=msg.virtual_machine_name, name=msg.name,
        generate_name=msg.generate_name, required_consistency=_required_consistency(msg),
        keep_ip_address=keep_ip_address_from_proto(msg.keep_ip_address),
        labels=dict(msg.labels), annotations=dict(msg.annotations), request_id=msg.request_id)


def delete_vm_snapshot_request(
    msg: snapshot_service_pb2.DeleteVirtualMachineSnapshotRequest,
) -> DeleteVmSnapshotRequest:
    return DeleteVmSnapshotRequest(namespace=msg.namespace, name=msg.name, request_id=msg.request_id)


# ---------------------------------------------------------------- restores


def apply_mode(mode: ApplyMode) -> common_pb2.ApplyMode.ValueType:
    return common_pb2.ApplyMode.Value(mode.name)


def apply_mode_from_proto(number: common_pb2.ApplyMode.ValueType, field: str = "mode") -> ApplyMode:
    """UNSPECIFIED is STRICT: nothing is changed past a conflict."""
    return enum_from_proto(ApplyMode, common_pb2.ApplyMode.Name, number, field) or ApplyMode.STRICT


def restore_disk_request(msg: restore_service_pb2.RestoreDiskRequest) -> RestoreDiskRequest:
    return RestoreDiskRequest(
        namespace=msg.namespace, name=msg.name, disk_snapshot_name=msg.disk_snapshot_name, size=msg.size,
        storage_class_name=msg.storage_class_name, labels=dict(msg.labels), request_id=msg.request_id)


def restore_vm_request(msg: restore_service_pb2.RestoreVirtualMachineRequest) -> RestoreVmRequest:
    return RestoreVmRequest(
        namespace=msg.namespace, virtual_machine_name=msg.virtual_machine_name,
        virtual_machine_snapshot_name=msg.virtual_machine_snapshot_name, mode=apply_mode_from_proto(msg.mode),
        request_id=msg.request_id)


# ---------------------------------------------------------------- clones


def name_replacement_from_proto(msg: common_pb2.NameReplacement) -> NameReplacement:
    source = getattr(msg, "from")  # `from` is a Python keyword
    return NameReplacement(from_name=source.name, to=msg.to, from_kind=source.kind)


def name_replacement(replacement: NameReplacement) -> common_pb2.NameReplacement:
    return common_pb2.NameReplacement(
        to=replacement.to,
        **{"from": common_pb2.NameReplacement.Source(kind=replacement.from_kind, name=replacement.from_name)})


def clone_options_from_proto(
    msg: clone_service_pb2.CloneVirtualMachineRequest | clone_service_pb2.CreateVirtualMachineFromSnapshotRequest,
) -> CloneOptions:
    """UNSPECIFIED mode is None (the core requires one); an unset prefix or suffix
    (proto3 ``optional``) is None, a set one is kept even when empty."""
    custom = msg.customization
    return CloneOptions(
        mode=enum_from_proto(ApplyMode, common_pb2.ApplyMode.Name, msg.mode, "mode"),
        name_replacements=tuple(name_replacement_from_proto(r) for r in msg.name_replacements),
        name_prefix=custom.name_prefix if custom.HasField("name_prefix") else None,
        name_suffix=custom.name_suffix if custom.HasField("name_suffix") else None)


def customization(options: CloneOptions) -> common_pb2.Customization:
    custom = common_pb2.Customization()
    if options.name_prefix is not None:
        custom.name_prefix = options.name_prefix
    if options.name_suffix is not None:
        custom.name_suffix = options.name_suffix
    return custom


def clone_vm_request(msg: clone_service_pb2.CloneVirtualMachineRequest) -> CloneVmRequest:
    return CloneVmRequest(namespace=msg.namespace, virtual_machine_name=msg.virtual_machine_name,
                          options=clone_options_from_proto(msg), request_id=msg.request_id)


def create_vm_from_snapshot_request(
    msg: clone_service_pb2.CreateVirtualMachineFromSnapshotRequest,
) -> CreateVmFromSnapshotRequest:
    return CreateVmFromSnapshotRequest(
        namespace=msg.namespace, virtual_machine_snapshot_name=msg.virtual_machine_snapshot_name,
        options=clone_options_from_proto(msg), request_id=msg.request_id)


# ---------------------------------------------------------------- exports


_MAX_TTL_SECONDS = 1e9   # beyond any sane ttl; the core names the real range


def export_request(
    msg: export_service_pb2.ExportDiskRequest | export_service_pb2.ExportDiskSnapshotRequest,
) -> ExportRequest:
    ttl = None
    if msg.HasField("ttl"):
        seconds = msg.ttl.seconds + msg.ttl.nanos / 1e9
        # Clamped (sign kept) so an absurd value reaches the core's range check as a number.
        ttl = max(-_MAX_TTL_SECONDS, min(_MAX_TTL_SECONDS, seconds))
    offset, length = 0, None
    if msg.HasField("range"):
        offset = msg.range.offset
        length = msg.range.length if msg.range.HasField("length") else None
    return ExportRequest(namespace=msg.namespace, name=msg.name, ttl_seconds=ttl, offset=offset, length=length,
                         expand_holes=msg.expand_holes, whole_image_sha256=msg.whole_image_sha256,
                         if_etag=msg.if_etag)


_VOLUME_MODES = {VolumeMode.BLOCK: export_service_pb2.ExportMetadata.BLOCK,
                 VolumeMode.FILESYSTEM: export_service_pb2.ExportMetadata.FILESYSTEM}


def export_chunk(item: ExportItem) -> export_service_pb2.ExportChunk:
    pb = export_service_pb2
    if isinstance(item, ExportData):
        return pb.ExportChunk(data=pb.ExportData(offset=item.offset, data=bytes(item.data)))
    if isinstance(item, ExportHole):
        return pb.ExportChunk(hole=pb.ExportHole(offset=item.offset, length=item.length))
    if isinstance(item, ExportStart):
        return pb.ExportChunk(metadata=pb.ExportMetadata(
            size=item.size, volume_mode=_VOLUME_MODES[item.volume_mode], operation_id=item.operation_id,
            sha256=item.sha256, offset=item.offset, length=item.length, etag=item.etag))
    return pb.ExportChunk(summary=pb.ExportSummary(
        size=item.size, offset=item.offset, length=item.length, sha256=item.sha256,
        range_sha256=item.range_sha256, hole_bytes=item.hole_bytes))


def export_transfer(t: ExportTransfer) -> operation_pb2.ExportTransfer:
    return operation_pb2.ExportTransfer(
        size=t.size, offset=t.offset, length=t.length, bytes_sent=t.bytes_sent, hole_bytes=t.hole_bytes,
        sha256=t.sha256, range_sha256=t.range_sha256, etag=t.etag, duration_seconds=t.duration_seconds,
        outcome=operation_pb2.ExportTransfer.Outcome.Value(t.outcome.value) if t.outcome
        else operation_pb2.ExportTransfer.OUTCOME_UNSPECIFIED)


def export_transfer_from_proto(msg: operation_pb2.ExportTransfer) -> ExportTransfer:
    outcome = operation_pb2.ExportTransfer.Outcome.Name(msg.outcome) if msg.outcome else None
    return ExportTransfer(
        size=msg.size, offset=msg.offset, length=msg.length, bytes_sent=msg.bytes_sent, hole_bytes=msg.hole_bytes,
        sha256=msg.sha256, range_sha256=msg.range_sha256, etag=msg.etag, duration_seconds=msg.duration_seconds,
        outcome=TransferOutcome(outcome) if outcome else None)


# ---------------------------------------------------------------- audit


def _json_safe(details: dict[str, Any]) -> dict[str, Any]:
    # Struct holds JSON values only; anything else (datetimes...) becomes its string form.
    safe: dict[str, Any] = json.loads(json.dumps(details, default=str))
    return safe


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _event_time(value: datetime) -> Timestamp:
    # Timestamp.FromDatetime's value without its Python-level calendar work (pages and
    # exports convert one per event).
    delta = (value if value.tzinfo else value.replace(tzinfo=UTC)) - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def audit_event(event: AuditEvent) -> audit_service_pb2.AuditEvent:
    details = Struct()
    try:
        # Stored details are parsed JSON already; the round trip only matters otherwise.
        details.update(event.details)
    except (TypeError, ValueError, AttributeError):
        details = Struct()
        details.update(_json_safe(event.details))
    return audit_service_pb2.AuditEvent(
        id=event.id, time=_event_time(event.time), actor=event.actor, action=event.action,
        outcome=audit_service_pb2.AuditEvent.Outcome.Value(event.outcome.value), namespace=event.namespace,
        resource=event.resource, protocol=event.protocol, request_id=event.request_id,
        operation_id=event.operation_id, code=event.code, reason=event.reason, details=details,
        prev_hash=event.prev_hash, hash=event.hash)


def audit_events_page(page: Page[AuditEvent]) -> audit_service_pb2.ListAuditEventsResponse:
    return audit_service_pb2.ListAuditEventsResponse(audit_events=[audit_event(e) for e in page.items],
                                                     next_page_token=page.next_page_token)


def _rfc3339(msg: Any, field: str) -> str:
    value = datetime_from(msg, field)
    return value.isoformat() if value else ""


def list_audit_events_request(
    msg: audit_service_pb2.ListAuditEventsRequest | audit_service_pb2.ExportAuditEventsRequest,
) -> ListAuditEventsRequest:
    page_size, page_token = (msg.page_size, msg.page_token) \
        if isinstance(msg, audit_service_pb2.ListAuditEventsRequest) else (0, "")
    return ListAuditEventsRequest(
        actor=msg.actor, namespace=msg.namespace, resource=msg.resource, action=msg.action,
        outcome=enum_from_proto(AuditOutcome, audit_service_pb2.AuditEvent.Outcome.Name, msg.outcome, "outcome"),
        since=_rfc3339(msg, "since"), until=_rfc3339(msg, "until"), page_size=page_size, page_token=page_token)


def verify_audit_log_request(msg: audit_service_pb2.VerifyAuditLogRequest) -> VerifyAuditLogRequest:
    return VerifyAuditLogRequest()


def audit_verification(result: AuditVerification) -> audit_service_pb2.VerifyAuditLogResponse:
    msg = audit_service_pb2.VerifyAuditLogResponse(ok=result.ok, checked=result.checked, message=result.message)
    if result.first_bad_id is not None:
        msg.first_bad_id = result.first_bad_id
    return msg


def audit_verification_progress(step: AuditVerificationProgress) -> audit_service_pb2.VerifyAuditLogProgress:
    msg = audit_service_pb2.VerifyAuditLogProgress(checked=step.checked, total=step.total)
    if step.result is not None:
        msg.result.CopyFrom(audit_verification(step.result))
    return msg
