"""The audit hash chain: ``hash = sha256(canonical_json(fields) + prev_hash)``.

The fields include the event's id and time, so moving, renumbering or editing any row
breaks its own hash, and deleting one breaks the next row's ``prev_hash``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from service.core.domain import AuditEvent

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def normalize_details(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` as it will read back from a JSON column (what the hash must cover)."""
    # default=str: a stray non-JSON value is stored (and hashed) as its text rather than
    # failing the call being audited.
    text = json.dumps(details, separators=(",", ":"), ensure_ascii=False, default=str)
    normalized: dict[str, Any] = json.loads(text)
    return normalized


def _time_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hashed_fields(event_id: int, time: datetime, fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "id": event_id, "time": _time_text(time)}


def compute_hash(event_id: int, time: datetime, fields: dict[str, Any], prev_hash: str) -> str:
    payload = canonical_json(hashed_fields(event_id, time, fields)) + prev_hash
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def event_fields(event: AuditEvent) -> dict[str, Any]:
    """The chained fields of a stored event (everything but id, time and the hashes)."""
    return {
        "actor": event.actor, "action": event.action, "outcome": event.outcome.value, "namespace": event.namespace,
        "resource": event.resource, "protocol": event.protocol, "request_id": event.request_id,
        "operation_id": event.operation_id, "code": event.code, "reason": event.reason, "details": event.details,
    }


def recompute(event: AuditEvent) -> str:
    return compute_hash(event.id, event.time, event_fields(event), event.prev_hash)
