"""``AuditRepository`` over SQL: an append-only, hash-chained event log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.domain import AuditEvent, AuditEventDraft, AuditFilter, AuditOutcome, AuditVerification, Page
from service.core.errors import FieldViolation, invalid_argument
from service.core.page_tokens import PageTokens, bad_token
from service.store import audit_read
from service.store import page_token as tokens
from service.store.audit_query import TimeOrder, prefix_clause
from service.store.audit_rows import draft_fields
from service.store.failures import unavailable_when_down
from service.store.group_commit import AppendAudit, GroupCommit
from service.store.models import audit_events
from service.store.text_safety import storable

STREAM_BATCH = 5000  # rows per short read (bounded memory: two batches at most)
MAX_EVENT_ID = 2**63  # the id column is a signed 64-bit integer
VERIFY_BATCH = 10000


def _filter_clauses(flt: AuditFilter, dialect: str) -> list[sa.ColumnElement[bool]]:
    """The filter as index-friendly clauses (the time range's id bounds come from
    ``TimeOrder.clauses``, which needs the repository's knowledge of the log)."""
    for name, bound in (("since", flt.since), ("until", flt.until)):
        if bound is not None and bound.tzinfo is None:
            raise invalid_argument(f"invalid {name}", [FieldViolation(name, "must carry a UTC offset")])
    c = audit_events.c
    clauses: list[sa.ColumnElement[bool]] = []
    if flt.actor is not None:
        clauses.append(c.actor == flt.actor)
    if flt.namespace is not None:
        clauses.append(c.namespace == flt.namespace)
    if flt.resource:
        clauses.append(prefix_clause(c.resource, flt.resource, dialect))
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


@unavailable_when_down
class SqlAuditRepository:
    def __init__(self, engine: AsyncEngine, page_tokens: PageTokens, writer: GroupCommit) -> None:
        self._engine = engine
        self._writer = writer
        self._tokens = page_tokens
        self._time_order = TimeOrder(engine)  # where time steps back along the ids (time-range bounds)

    async def append(self, draft: AuditEventDraft) -> AuditEvent:
        # Through this database's one writer: appends made at the same moment share a commit.
        event: AuditEvent = await self._writer.submit(AppendAudit(draft_fields(draft)))
        return event

    async def list_page(self, flt: AuditFilter, page_size: int, page_token: str) -> Page[AuditEvent]:
        limit = tokens.page_limit(page_size)
        query_fields = asdict(flt)
        after_id = 0
        if page_token:
            last_id = self._tokens.open(page_token, "audit", query_fields).get("i")
            if not isinstance(last_id, int) or isinstance(last_id, bool) or not 0 <= last_id < MAX_EVENT_ID:
                raise bad_token()
            after_id = last_id
        clauses = _filter_clauses(flt, self._engine.dialect.name)
        if not _filter_storable(flt):
            return Page(items=[])  # nothing stored can match
        rows = await audit_read.fetch(self._engine, self._time_order, flt, clauses, after_id, limit + 1)
        items = [audit_read.event_from_row(r) for r in rows[:limit]]
        next_token = self._tokens.seal("audit", query_fields, {"i": items[-1].id}) if len(rows) > limit else ""
        return Page(items=items, next_page_token=next_token)

    async def stream(self, flt: AuditFilter) -> AsyncIterator[AuditEvent]:
        clauses = _filter_clauses(flt, self._engine.dialect.name)
        if not _filter_storable(flt):
            return
        batch = STREAM_BATCH

        def read(after: int) -> asyncio.Task[list[audit_read.Decoded]]:
            return asyncio.ensure_future(audit_read.fetch(self._engine, self._time_order, flt, clauses, after, batch))

        # A fresh short read per batch: no connection (and no transaction) is held while
        # the consumer is slow. The next batch is read while this one is consumed, so at
        # most two batches are in memory.
        pending: asyncio.Task[list[audit_read.Decoded]] | None = read(0)
        try:
            while pending is not None:
                rows = await pending
                pending = read(rows[-1][0]) if len(rows) == batch else None
                for row in rows:
                    yield audit_read.event_from_row(row)
        finally:
            if pending is not None:
                pending.cancel()

    async def verify(self, progress: audit_read.Progress | None = None) -> AuditVerification:
        """``progress(checked, total)`` after each batch (``total``: the head's id)."""
        return await audit_read.verify(self._engine, VERIFY_BATCH, progress)
