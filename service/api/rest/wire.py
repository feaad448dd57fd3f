"""Domain objects to the canonical REST JSON shapes (lowerCamelCase, RFC 3339 UTC with ``Z``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from service.core.domain import (
    AuditEvent,
    AuditVerification,
    AuditVerificationProgress,
    Condition,
    DiskSnapshot,
    DiskSnapshotEvent,
    ExportTransfer,
    Operation,
    OperationError,
    OperationTransition,
    ResourceRef,
    ResourceResult,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotEvent,
)

JsonObject = dict[str, Any]


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # the store hands back naive UTC on some backends
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def resource_ref(ref: ResourceRef) -> JsonObject:
    return {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name,
            "namespace": ref.namespace, "uid": ref.uid}


def condition(c: Condition) -> JsonObject:
    return {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message,
            "lastTransitionTime": timestamp(c.last_transition_time)}


def resource_result(r: ResourceResult) -> JsonObject:
    return {"apiVersion": r.api_version, "kind": r.kind, "name": r.name, "status": r.status, "message": r.message,
            "reason": r.reason, "sourceName": r.source_name}


def operation_error(e: OperationError) -> JsonObject:
    return {"code": e.code, "reason": e.reason, "message": e.message}


def export_transfer(t: ExportTransfer) -> JsonObject:
    return {"size": t.size, "offset": t.offset, "length": t.length, "bytesSent": t.bytes_sent,
            "holeBytes": t.hole_bytes, "sha256": t.sha256, "rangeSha256": t.range_sha256, "etag": t.etag,
            "durationSeconds": round(t.duration_seconds, 6), "outcome": t.outcome.value if t.outcome else None}


def operation(op: Operation) -> JsonObject:
    # request_hash and the stored request are internal to the idempotency check.
    return {
        "id": op.id,
        "type": op.type.value,
        "namespace": op.namespace,
        "target": resource_ref(op.target),
        "resource": resource_ref(op.resource) if op.resource else None,
        "state": op.state.value,
        "done": op.done,
        "phase": op.phase,
        "conditions": [condition(c) for c in op.conditions],
        "results": [resource_result(r) for r in op.results],
        "warnings": list(op.warnings),
        "error": operation_error(op.error) if op.error else None,
        "actor": op.actor,
        "requestId": op.request_id,
        "createTime": timestamp(op.create_time),
        "updateTime": timestamp(op.update_time),
        "endTime": timestamp(op.end_time),
        "version": op.version,
        "transfer": export_transfer(op.transfer) if op.transfer else None,
    }


def transition(t: OperationTransition) -> JsonObject:
    return {"operationId": t.operation_id, "seq": t.seq, "state": t.state.value, "phase": t.phase,
            "reason": t.reason, "message": t.message, "time": timestamp(t.time)}


def disk_snapshot(s: DiskSnapshot) -> JsonObject:
    return {
        "namespace": s.namespace,
        "name": s.name,
        "uid": s.uid,
        "virtualDiskName": s.virtual_disk_name,
        "requiredConsistency": s.required_consistency,
        "phase": s.phase,
        "consistent": s.consistent,
        "volumeSnapshotName": s.volume_snapshot_name,
        "conditions": [condition(c) for c in s.conditions],
        "labels": dict(s.labels),
        "annotations": dict(s.annotations),
        "operationId": s.operation_id,
        "resourceVersion": s.resource_version,
        "createTime": timestamp(s.create_time),
        "deletionTime": timestamp(s.deletion_time),
    }


def disk_snapshot_event(e: DiskSnapshotEvent) -> JsonObject:
    return {"type": e.type.value, "snapshot": disk_snapshot(e.snapshot)}


def vm_snapshot(s: VirtualMachineSnapshot) -> JsonObject:
    return {
        "namespace": s.namespace,
        "name": s.name,
        "uid": s.uid,
        "virtualMachineName": s.virtual_machine_name,
        "requiredConsistency": s.required_consistency,
        "keepIPAddress": s.keep_ip_address.value,
        "phase": s.phase,
        "consistent": s.consistent,
        "resources": [resource_ref(r) for r in s.resources],
        "virtualDiskSnapshotNames": list(s.virtual_disk_snapshot_names),
        "conditions": [condition(c) for c in s.conditions],
        "labels": dict(s.labels),
        "annotations": dict(s.annotations),
        "operationId": s.operation_id,
        "resourceVersion": s.resource_version,
        "createTime": timestamp(s.create_time),
        "deletionTime": timestamp(s.deletion_time),
    }


def vm_snapshot_event(e: VirtualMachineSnapshotEvent) -> JsonObject:
    return {"type": e.type.value, "snapshot": vm_snapshot(e.snapshot)}


def audit_event(e: AuditEvent) -> JsonObject:
    return {
        "id": e.id,
        "time": timestamp(e.time),
        "actor": e.actor,
        "action": e.action,
        "outcome": e.outcome.value,
        "namespace": e.namespace,
        "resource": e.resource,
        "protocol": e.protocol,
        "requestId": e.request_id,
        "operationId": e.operation_id,
        "code": e.code,
        "reason": e.reason,
        "details": dict(e.details),
        "prevHash": e.prev_hash,
        "hash": e.hash,
    }


AUDIT_CSV_COLUMNS = ("id", "time", "actor", "action", "outcome", "namespace", "resource", "protocol", "requestId",
                     "operationId", "code", "reason", "details", "prevHash", "hash")


def audit_verification(v: AuditVerification) -> JsonObject:
    return {"ok": v.ok, "checked": v.checked, "firstBadId": v.first_bad_id, "message": v.message}


def audit_verification_progress(step: AuditVerificationProgress) -> JsonObject:
    doc: JsonObject = {"checked": step.checked, "total": step.total}
    if step.result is not None:
        doc["result"] = audit_verification(step.result)
    return doc
