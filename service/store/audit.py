"""``AuditRepository`` over SQL: an append-only, hash-chained event log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.domain import AuditEvent, AuditEventDraft, AuditFilter, AuditOutcome, AuditVerification, Page
from service.core.errors import FieldViolation, invalid_argument
from service.core.page_tokens import PageTokens, bad_token
from service.store import page_token as tokens
from service.store.audit_chain import GENESIS_HASH, compute_hash
from service.store.audit_rows import draft_fields
from service.store.failures import unavailable_when_down
from service.store.group_commit import AppendAudit, GroupCommit
from service.store.models import audit_chain_head, audit_events
from service.store.text_safety import storable

STREAM_BATCH = 500
MAX_EVENT_ID = 2**63  # the id column is a signed 64-bit integer
VERIFY_BATCH = 1000
_CHAINED_COLUMNS = ("actor", "action", "outcome", "namespace", "resource", "protocol", "request_id",
                    "operation_id", "code", "reason", "details")


def _filter_clauses(flt: AuditFilter) -> list[sa.ColumnElement[bool]]:
    for name, bound in (("since", flt.since), ("until", flt.until)):
        if bound is not None and bound.tzinfo is None:
            raise invalid_argument(f"invalid {name}", [FieldViolation(name, "must carry a UTC offset")])
    c = audit_events.c
    clauses: list[sa.ColumnElement[bool]] = []
    if flt.actor is not None:
        clauses.append(c.actor == flt.actor)
    if flt.namespace is not None:
        clauses.append(c.namespace == flt.namespace)
    if flt.resource is not None:
        clauses.append(c.resource.startswith(flt.resource, autoescape=True))
    if flt.action is not None:
        clauses.append(c.action == flt.action)
    if flt.outcome is not None:
        clauses.append(c.outcome == AuditOutcome(flt.outcome).value)
    if flt.since is not None:
        clauses.append(c.time >= flt.since)
    if flt.until is not None:
        clauses.append(c.time < flt.until)
    return clauses


def _filter_storable(flt: AuditFilter) -> bool:
    return storable(flt.actor, flt.namespace, flt.resource, flt.action)


def _event_from_row(row: Mapping[Any, Any]) -> AuditEvent:
    return AuditEvent(
        id=row["id"], time=row["time"], actor=row["actor"], action=row["action"],
        outcome=AuditOutcome(row["outcome"]), namespace=row["namespace"], resource=row["resource"],
        protocol=row["protocol"], request_id=row["request_id"], operation_id=row["operation_id"],
        code=row["code"], reason=row["reason"], details=dict(row["details"]), prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def _row_hash(row: RowMapping) -> str:
    # From the raw columns, not an AuditEvent: a tampered row may not even parse.
    fields = {name: row[name] for name in _CHAINED_COLUMNS}
    return compute_hash(row["id"], row["time"], fields, row["prev_hash"])


@unavailable_when_down
class SqlAuditRepository:
    def __init__(self, engine: AsyncEngine, page_tokens: PageTokens, writer: GroupCommit) -> None:
        self._engine = engine
        self._tokens = page_tokens
        self._writer = writer

    async def append(self, draft: AuditEventDraft) -> AuditEvent:
        # Through this database's one writer: appends made at the same moment share a commit.
        event: AuditEvent = await self._writer.submit(AppendAudit(draft_fields(draft)))
        return event

    async def _batch(self, clauses: list[sa.ColumnElement[bool]], after_id: int, limit: int) -> list[RowMapping]:
        query = (sa.select(audit_events).where(*clauses, audit_events.c.id > after_id)
                 .order_by(audit_events.c.id).limit(limit))
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).mappings().all())

    async def list_page(self, flt: AuditFilter, page_size: int, page_token: str) -> Page[AuditEvent]:
        limit = tokens.page_limit(page_size)
        query_fields = asdict(flt)
        after_id = 0
        if page_token:
            last_id = self._tokens.open(page_token, "audit", query_fields).get("i")
            if not isinstance(last_id, int) or isinstance(last_id, bool) or not 0 <= last_id < MAX_EVENT_ID:
                raise bad_token()
            after_id = last_id
        clauses = _filter_clauses(flt)
        if not _filter_storable(flt):
            return Page(items=[])  # nothing stored can match
        rows = await self._batch(clauses, after_id, limit + 1)
        items = [_event_from_row(r) for r in rows[:limit]]
        next_token = self._tokens.seal("audit", query_fields, {"i": items[-1].id}) if len(rows) > limit else ""
        return Page(items=items, next_page_token=next_token)

    async def stream(self, flt: AuditFilter) -> AsyncIterator[AuditEvent]:
        clauses = _filter_clauses(flt)
        if not _filter_storable(flt):
            return
        after_id = 0
        while True:
            # A fresh short read per batch: no connection is held while the consumer is slow.
            rows = await self._batch(clauses, after_id, STREAM_BATCH)
            for row in rows:
                yield _event_from_row(row)
            if len(rows) < STREAM_BATCH:
                return
            after_id = rows[-1]["id"]

    async def verify(self) -> AuditVerification:
        # One statement, so the head and the highest id come from the same snapshot.
        max_id = sa.select(sa.func.max(audit_events.c.id)).scalar_subquery()
        query = sa.select(audit_chain_head.c.last_id, audit_chain_head.c.last_hash, max_id.label("max_id")) \
            .where(audit_chain_head.c.id == 1)
        async with self._engine.connect() as conn:
            head = (await conn.execute(query)).mappings().first()
        if head is None:
            return AuditVerification(ok=False, checked=0, message="the chain head row is missing")
        # Only events up to the head read now; later appends are the next verification's job.
        last_id, last_hash = int(head["last_id"]), str(head["last_hash"])
        if head["max_id"] is not None and int(head["max_id"]) > last_id:
            return AuditVerification(ok=False, checked=0, first_bad_id=last_id + 1,
                                     message=f"events after {last_id} were inserted outside the chain")
        checked, prev_hash, expected_id = 0, GENESIS_HASH, 1
        while expected_id <= last_id:
            rows = await self._batch([audit_events.c.id <= last_id], expected_id - 1, VERIFY_BATCH)
            if not rows:
                break
            for row in rows:
                problem = self._check(row, expected_id, prev_hash)
                if problem:
                    return AuditVerification(ok=False, checked=checked, first_bad_id=row["id"], message=problem)
                checked += 1
                prev_hash, expected_id = row["hash"], row["id"] + 1
        if expected_id <= last_id:
            return AuditVerification(ok=False, checked=checked, first_bad_id=expected_id,
                                     message=f"events {expected_id}..{last_id} are missing from the end of the log")
        if prev_hash != last_hash:
            return AuditVerification(ok=False, checked=checked, first_bad_id=last_id or None,
                                     message="the last event does not match the recorded chain head")
        return AuditVerification(ok=True, checked=checked, message=f"{checked} events verified")

    @staticmethod
    def _check(row: RowMapping, expected_id: int, prev_hash: str) -> str:
        if row["id"] != expected_id:
            return f"event {expected_id} is missing (next present event is {row['id']})"
        if row["prev_hash"] != prev_hash:
            return f"event {row['id']} does not link to the event before it"
        if _row_hash(row) != row["hash"]:
            return f"event {row['id']} was modified after it was written"
        return ""
