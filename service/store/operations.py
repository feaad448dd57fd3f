"""``OperationRepository`` over SQL: operations plus their transition timeline."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.domain import (
    AuditEventDraft,
    Operation,
    OperationFilter,
    OperationState,
    OperationTransition,
    Page,
    utcnow,
)
from service.core.errors import ApiError, Code, not_found
from service.core.page_tokens import PageTokens, bad_token
from service.store import operation_read
from service.store import page_token as tokens
from service.store.audit_read import read_connection
from service.store.audit_rows import draft_fields
from service.store.failures import unavailable_when_down
from service.store.group_commit import GroupCommit, InsertOperation, SaveOperation
from service.store.models import UNFINISHED_PREDICATE, UtcDateTime, operation_transitions, operations
from service.store.operation_rows import from_row, to_row, transition_from_row
from service.store.text_safety import clean_text, storable

_TERMINAL = [s.value for s in OperationState if s.terminal]


def _filter_clauses(flt: OperationFilter) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    if flt.namespace is not None:
        clauses.append(operations.c.namespace == flt.namespace)
    if flt.type is not None:
        clauses.append(operations.c.type == flt.type.value)
    if flt.state is not None:
        clauses.append(operations.c.state == flt.state.value)
    if flt.actor is not None:
        clauses.append(operations.c.actor == flt.actor)
    if flt.target_name is not None:
        clauses.append(operations.c.target_name == flt.target_name)
    return clauses


def _position_clause(position: dict[str, Any]) -> sa.ColumnElement[bool]:
    raw_time, last_id = position.get("t"), position.get("i")
    if not isinstance(raw_time, str) or not isinstance(last_id, str) or not 0 < len(last_id) <= 64:
        raise bad_token()
    try:
        parsed = datetime.fromisoformat(raw_time)
        if parsed.tzinfo is None:
            raise bad_token()
        last_time = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise bad_token() from None
    # A row value comparison, not (t < x OR (t = x AND id < y)): both backends turn it into
    # one index range start, the OR form scans from the newest row on PostgreSQL.
    return sa.tuple_(operations.c.create_time, operations.c.id) < sa.tuple_(
        sa.literal(last_time, UtcDateTime()), sa.literal(last_id, operations.c.id.type))


def _as_utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


@unavailable_when_down
class SqlOperationRepository:
    def __init__(self, engine: AsyncEngine, page_tokens: PageTokens, writer: GroupCommit) -> None:
        self._engine = engine
        self._tokens = page_tokens
        self._writer = writer

    async def create(self, op: Operation, *, reason: str = "Created", message: str = "",
                     audit: AuditEventDraft | None = None) -> Operation:
        row = to_row(replace(op, create_time=_as_utc(op.create_time) or utcnow(),
                             update_time=_as_utc(op.update_time) or utcnow(), end_time=_as_utc(op.end_time)))
        stored = from_row(row)
        transition = {"operation_id": stored.id, "seq": 1, "state": stored.state.value, "phase": stored.phase,
                      "reason": clean_text(reason), "message": clean_text(message), "time": stored.create_time}
        job = InsertOperation(row, transition, draft_fields(audit) if audit is not None else None, stored)
        try:
            # The row and the call's audit event commit together (one batch is one transaction).
            await self._writer.submit(job)
        except IntegrityError:
            raise await self._explain_conflict(stored) from None
        return stored

    async def _explain_conflict(self, op: Operation) -> ApiError:
        if op.request_id is not None and await self.find_by_request_id(op.actor, op.request_id) is not None:
            return ApiError(Code.ALREADY_EXISTS, "IDEMPOTENCY_RACE",
                            f"another operation with request_id {op.request_id!r} was created concurrently",
                            metadata={"request_id": op.request_id})
        return ApiError(Code.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS", f"operation {op.id!r} already exists",
                        metadata={"kind": "Operation", "name": op.id})

    async def get(self, operation_id: str) -> Operation | None:
        if not storable(operation_id):
            return None
        return await self._one(operations.c.id == operation_id)

    async def find_by_request_id(self, actor: str, request_id: str) -> Operation | None:
        if not storable(actor, request_id):
            return None
        return await self._one(sa.and_(operations.c.actor == actor, operations.c.request_id == request_id))

    async def _one(self, where: sa.ColumnElement[bool]) -> Operation | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(operations).where(where))).mappings().first()
        return from_row(row) if row is not None else None

    async def save(self, op: Operation, *, reason: str = "", message: str = "") -> Operation:
        if not storable(op.id):
            raise not_found("Operation", op.id)
        stored: Operation = await self._writer.submit(SaveOperation(op, reason, message))
        return stored

    async def list_page(self, flt: OperationFilter, page_size: int, page_token: str) -> Page[Operation]:
        limit = tokens.page_limit(page_size)
        query_fields = asdict(flt)
        clauses = _filter_clauses(flt)
        if page_token:
            clauses.append(_position_clause(self._tokens.open(page_token, "operations", query_fields)))
        if not storable(flt.namespace, flt.actor, flt.target_name):
            return Page(items=[])  # nothing stored can match
        query = (sa.select(*operation_read.columns(self._engine.dialect.name)).where(*clauses)
                 .order_by(operations.c.create_time.desc(), operations.c.id.desc()).limit(limit + 1))
        async with read_connection(self._engine) as conn:
            rows = (await conn.execute(query)).all()
        items = [from_row(r) for r in operation_read.decode_all(rows[:limit])]
        next_token = ""
        if len(rows) > limit:
            last = items[-1]
            next_token = self._tokens.seal("operations", query_fields,
                                           {"t": last.create_time.isoformat(), "i": last.id})
        return Page(items=items, next_page_token=next_token)

    async def transitions(self, operation_id: str) -> list[OperationTransition]:
        if not storable(operation_id):
            return []
        query = (sa.select(operation_transitions).where(operation_transitions.c.operation_id == operation_id)
                 .order_by(operation_transitions.c.seq))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [transition_from_row(r) for r in rows]

    async def export_digest(self, etag: str) -> str:
        query = (sa.select(operations.c.transfer).where(operations.c.export_etag == etag)
                 .order_by(operations.c.update_time.desc()).limit(1))
        async with self._engine.connect() as conn:
            transfer = (await conn.execute(query)).scalar_one_or_none()
        digest = transfer.get("sha256") if isinstance(transfer, dict) else None
        return digest if isinstance(digest, str) else ""

    async def unfinished(self) -> list[Operation]:
        # The partial index's own predicate, as literal SQL (a bound parameter would hide
        # from the planner that the index covers the query): an index read of the
        # unfinished rows only, instead of a scan of every finished one (NOT IN).
        query = (sa.select(operations).where(sa.text(UNFINISHED_PREDICATE))
                 .order_by(operations.c.create_time, operations.c.id))
        async with read_connection(self._engine) as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [from_row(r) for r in rows]
