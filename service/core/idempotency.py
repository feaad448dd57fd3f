"""Idempotency keys: a replayed request_id returns the first operation, a reused one conflicts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from service.core.audit import AuditedCall
from service.core.domain import Operation, OperationType
from service.core.errors import ApiError, Code, idempotency_conflict
from service.core.ports import OperationRepository


def request_document(req: Any) -> dict[str, Any]:
    """The request as a JSON-safe dict (what the operation stores for replay)."""
    doc: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(req), sort_keys=True, default=str))
    return doc


def request_hash(req: Any) -> str:
    """SHA-256 of the canonical JSON of the request without its request_id, so the same
    body under the same key is recognised as a replay."""
    doc = request_document(req)
    doc.pop("request_id", None)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def find_replay(operations: OperationRepository, actor: str, request_id: str, digest: str,
                      op_type: OperationType | None = None) -> Operation | None:
    """The stored operation for a replay, None for a fresh key; raises on a reused key
    (another body, or the same key on another method)."""
    if not request_id:
        return None
    existing = await operations.find_by_request_id(actor, request_id)
    if existing is None:
        return None
    if existing.request_hash != digest or (op_type is not None and existing.type is not op_type):
        raise idempotency_conflict(request_id)
    return existing


async def create_once(operations: OperationRepository, op: Operation,
                      audited: AuditedCall | None = None) -> tuple[Operation, bool]:
    """Insert ``op`` (with the call's audit event, in the same transaction); when a
    concurrent call won the race for the same key, return the winner's operation instead
    (or the conflict). The flag says whether ``op`` was stored."""
    try:
        stored = await operations.create(op, audit=audited.accepted(op) if audited is not None else None)
    except ApiError as exc:
        if audited is not None:
            audited.operation_id = ""  # ``op`` was not stored
        if exc.code != Code.ALREADY_EXISTS or not op.request_id:
            raise
        winner = await find_replay(operations, op.actor, op.request_id, op.request_hash, op.type)
        if winner is None:
            raise
        return winner, False
    if audited is not None:
        audited.written()
    return stored, True
