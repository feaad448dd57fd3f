"""Audit event <-> ``audit_events`` row, and a draft's chained fields as they are stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.core.domain import AuditEvent, AuditEventDraft, AuditOutcome
from service.store.audit_chain import normalize_details
from service.store.text_safety import clean_json

# PostgreSQL refuses a btree entry above ~2.7 kB, so the indexed text columns are clipped
# (at 4 UTF-8 bytes a character, 512 stay under it): a refused request's namespace or name
# is audited as sent, however long, and the event must still be written (and listed).
MAX_INDEXED_CHARS = 512


def _clip(value: str) -> str:
    return value if len(value) <= MAX_INDEXED_CHARS else value[:MAX_INDEXED_CHARS - 1] + "\u2026"


def draft_fields(draft: AuditEventDraft) -> dict[str, Any]:
    """The chained columns of ``draft`` (everything but id, time and the hashes), storable."""
    fields: dict[str, Any] = clean_json({
        "actor": _clip(draft.actor), "action": _clip(draft.action), "outcome": AuditOutcome(draft.outcome).value,
        "namespace": _clip(draft.namespace), "resource": _clip(draft.resource), "protocol": draft.protocol,
        "request_id": draft.request_id, "operation_id": draft.operation_id, "code": draft.code,
        "reason": draft.reason, "details": normalize_details(draft.details),
    })
    return fields


def event_from_row(row: Mapping[Any, Any]) -> AuditEvent:
    return AuditEvent(
        id=row["id"], time=row["time"], actor=row["actor"], action=row["action"],
        outcome=AuditOutcome(row["outcome"]), namespace=row["namespace"], resource=row["resource"],
        protocol=row["protocol"], request_id=row["request_id"], operation_id=row["operation_id"],
        code=row["code"], reason=row["reason"], details=dict(row["details"]), prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
