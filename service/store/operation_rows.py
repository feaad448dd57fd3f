"""Operation <-> ``operations`` row conversion (JSON columns hold plain dicts)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from service.core.domain import (
    Condition,
    ExportTransfer,
    Operation,
    OperationError,
    OperationState,
    OperationTransition,
    OperationType,
    ResourceRef,
    ResourceResult,
    TransferOutcome,
)
from service.store.text_safety import clean_json


def _time_to_json(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time_from_json(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _condition_to_json(c: Condition) -> dict[str, Any]:
    return {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message,
            "last_transition_time": _time_to_json(c.last_transition_time)}


def _condition_from_json(d: dict[str, Any]) -> Condition:
    return Condition(type=d["type"], status=d["status"], reason=d.get("reason", ""), message=d.get("message", ""),
                     last_transition_time=_time_from_json(d.get("last_transition_time")))


def _result_to_json(r: ResourceResult) -> dict[str, Any]:
    return {"api_version": r.api_version, "kind": r.kind, "name": r.name, "status": r.status, "message": r.message,
            "reason": r.reason, "source_name": r.source_name}


def _result_from_json(d: dict[str, Any]) -> ResourceResult:
    return ResourceResult(api_version=d["api_version"], kind=d["kind"], name=d["name"], status=d["status"],
                          message=d.get("message", ""), reason=d.get("reason", ""),
                          source_name=d.get("source_name", ""))


def _error_to_json(e: OperationError | None) -> dict[str, Any] | None:
    return None if e is None else {"code": e.code, "reason": e.reason, "message": e.message}


def _error_from_json(d: dict[str, Any] | None) -> OperationError | None:
    return None if d is None else OperationError(code=d["code"], reason=d["reason"], message=d["message"])


def _transfer_to_json(t: ExportTransfer | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"size": t.size, "offset": t.offset, "length": t.length, "bytes_sent": t.bytes_sent,
            "hole_bytes": t.hole_bytes, "sha256": t.sha256, "range_sha256": t.range_sha256, "etag": t.etag,
            "duration_seconds": t.duration_seconds, "outcome": t.outcome.value if t.outcome else None}


def _transfer_from_json(d: dict[str, Any] | None) -> ExportTransfer | None:
    if d is None:
        return None
    return ExportTransfer(size=int(d.get("size", 0)), offset=int(d.get("offset", 0)), length=int(d.get("length", 0)),
                          bytes_sent=int(d.get("bytes_sent", 0)), hole_bytes=int(d.get("hole_bytes", 0)),
                          sha256=str(d.get("sha256", "")), range_sha256=str(d.get("range_sha256", "")),
                          etag=str(d.get("etag", "")), duration_seconds=float(d.get("duration_seconds", 0.0)),
                          outcome=TransferOutcome(d["outcome"]) if d.get("outcome") else None)


def to_row(op: Operation) -> dict[str, Any]:
    """Every column of ``op``'s row, text made storable."""
    res = op.resource
    row: dict[str, Any] = {
        "id": op.id,
        "type": op.type.value,
        "namespace": op.namespace,
        "target_api_version": op.target.api_version,
        "target_kind": op.target.kind,
        "target_name": op.target.name,
        "target_namespace": op.target.namespace,
        "target_uid": op.target.uid,
        "resource_api_version": res.api_version if res else None,
        "resource_kind": res.kind if res else None,
        "resource_name": res.name if res else None,
        "resource_namespace": res.namespace if res else None,
        "resource_uid": res.uid if res else None,
        "state": op.state.value,
        "phase": op.phase,
        "conditions": [_condition_to_json(c) for c in op.conditions],
        "results": [_result_to_json(r) for r in op.results],
        "warnings": list(op.warnings),
        "error": _error_to_json(op.error),
        "actor": op.actor,
        "request_id": op.request_id,
        "request_hash": op.request_hash,
        "request": op.request,
        "create_time": op.create_time,
        "update_time": op.update_time,
        "end_time": op.end_time,
        "version": op.version,
        "transfer": _transfer_to_json(op.transfer),
        "export_etag": op.transfer.etag if op.transfer is not None and op.transfer.sha256 else None,
        "observed_resource_version": op.observed_resource_version or None,
    }
    cleaned: dict[str, Any] = clean_json(row)
    return cleaned


def from_row(row: Mapping[Any, Any]) -> Operation:
    resource = None
    if row["resource_kind"] is not None:
        resource = ResourceRef(api_version=row["resource_api_version"] or "", kind=row["resource_kind"],
                               name=row["resource_name"] or "", namespace=row["resource_namespace"] or "",
                               uid=row["resource_uid"] or "")
    return Operation(
        id=row["id"],
        type=OperationType(row["type"]),
        namespace=row["namespace"],
        target=ResourceRef(api_version=row["target_api_version"], kind=row["target_kind"], name=row["target_name"],
                           namespace=row["target_namespace"], uid=row["target_uid"]),
        actor=row["actor"],
        request_hash=row["request_hash"],
        state=OperationState(row["state"]),
        resource=resource,
        phase=row["phase"],
        conditions=[_condition_from_json(c) for c in row["conditions"]],
        results=[_result_from_json(r) for r in row["results"]],
        warnings=[str(w) for w in row["warnings"]],
        error=_error_from_json(row["error"]),
        request_id=row["request_id"],
        request=dict(row["request"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
        end_time=row["end_time"],
        version=row["version"],
        transfer=_transfer_from_json(row["transfer"]),
        observed_resource_version=row["observed_resource_version"] or "",
    )


def transition_from_row(row: Mapping[Any, Any]) -> OperationTransition:
    return OperationTransition(operation_id=row["operation_id"], seq=row["seq"], state=OperationState(row["state"]),
                               phase=row["phase"], reason=row["reason"], message=row["message"], time=row["time"])
