"""The audit log's read side, made cheap per row: pages, export batches and verification.

Rows are read as plain tuples in table order (which is ``AuditEvent``'s field order) and
turned into events positionally: no mapping lookups, no per-row enum construction. The
hash check keeps ``audit_chain.compute_hash``'s exact bytes (same encoder options, same
time text) but builds each row's hashed document once and reuses one JSON encoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.core.domain import AuditEvent, AuditFilter, AuditOutcome, AuditVerification
from service.store.audit_chain import GENESIS_HASH
from service.store.audit_query import TimeOrder, prefix_clause
from service.store.models import audit_chain_head, audit_events

# Table order: id, time, actor, action, outcome, namespace, resource, protocol, request_id,
# operation_id, code, reason, details, prev_hash, hash (AuditEvent declares the same order).
COLUMNS = tuple(audit_events.c)
# Plain str: SQLAlchemy's names are a str subclass, which orjson refuses as a key.
_NAMES = tuple(c.name.encode().decode() for c in COLUMNS)
_CHAINED = _NAMES[2:13]
_OUTCOMES = {o.value: o for o in AuditOutcome}
# json.dumps with these options builds this very encoder on every call; one instance
# gives the same bytes (canonical_json's) without the per-call construction.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

Progress = Callable[[int, int], Awaitable[None]]  # (checked, total)
Decoded = list[Any]  # a row in table order, time an aware UTC datetime, details a dict


@functools.cache
def _select_columns(dialect: str) -> tuple[sa.ColumnElement[Any], ...]:
    """The table's columns, time and details as the driver's raw values: the type
    processors (a regex per SQLite time, json.loads per details) cost more than the query."""
    c = audit_events.c
    raw_time = sa.type_coerce(c.time, sa.String() if dialect == "sqlite" else sa.DateTime(timezone=True))
    return (c.id, raw_time.label("time"), *COLUMNS[2:12], sa.cast(c.details, sa.Text()).label("details"),
            c.prev_hash, c.hash)


# orjson reads an integer beyond 64 bits as a float (json.loads: an int), so any run of
# 19 digits (a 64-bit integer has at most 20) goes to json.loads.
_LONG_NUMBER = re.compile(r"\d{19}")


def load_json(text: str) -> Any:
    """json.loads's value, by orjson when that is the same value: orjson refuses NaN and
    lone surrogate escapes (json.loads accepts them) and rounds huge integers."""
    if _LONG_NUMBER.search(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _decode(dialect: str) -> Callable[[Sequence[Any]], Decoded]:
    if dialect == "sqlite":
        def decode(r: Sequence[Any]) -> Decoded:
            row = list(r)
            # models.UtcDateTime stores naive UTC text ("2026-11-30 01:02:03.456789").
            row[1] = datetime.fromisoformat(row[1]).replace(tzinfo=UTC)
            row[12] = load_json(row[12])
            return row
    else:
        def decode(r: Sequence[Any]) -> Decoded:
            row = list(r)
            row[1] = row[1].astimezone(UTC)
            row[12] = load_json(row[12])
            return row
    return decode


def event_from_row(r: Decoded) -> AuditEvent:
    outcome = _OUTCOMES.get(r[4]) or AuditOutcome(r[4])
    return AuditEvent(r[0], r[1], r[2], r[3], outcome, r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
                      r[13], r[14])


@contextlib.asynccontextmanager
async def read_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for one read statement. On PostgreSQL in autocommit: a statement is its
    own snapshot, and the BEGIN and ROLLBACK round trips around it would cost as much as a
    page's query."""
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


async def fetch(engine: AsyncEngine, time_order: TimeOrder, flt: AuditFilter | None,
                clauses: Sequence[sa.ColumnElement[bool]], after_id: int, limit: int) -> list[Decoded]:
    """One batch in id order after ``after_id``, on a short-lived connection."""
    dialect = engine.dialect.name
    async with read_connection(engine) as conn:
        where = list(clauses)
        values: dict[str, Any] = {}
        order: sa.ColumnElement[Any] = audit_events.c.id
        if flt is not None and (flt.since is not None or flt.until is not None):
            time_order.refresh_soon()
            bounds, values = time_order.clauses(flt.since, flt.until, after_id, dialect)
            where += bounds
        elif dialect == "sqlite" and flt is not None and await _narrow_prefix_only(conn, flt, clauses):
            # "id + 0" is SQLite's way to keep a column's index out of the plan: the id
            # order is then a sort of the few rows the resource index range yields.
            order = audit_events.c.id + 0
            where.append(order > after_id)
        elif dialect == "postgresql" and flt is not None and flt.resource and len(clauses) == 1:
            # A prefix matching thousands of rows: pick the page's ids from the (resource, id)
            # index alone (an index-only scan and a top-N sort), then read just those rows,
            # instead of every matching row's heap tuple before the sort.
            by_resource = audit_events.alias("by_resource")
            ids = (sa.select(by_resource.c.id)
                   .where(prefix_clause(by_resource.c.resource, flt.resource, dialect), by_resource.c.id > after_id)
                   .order_by(by_resource.c.id).limit(limit))
            where = [audit_events.c.id.in_(ids)]
        else:
            where.append(audit_events.c.id > after_id)
        query = sa.select(*_select_columns(dialect)).where(*where).order_by(order).limit(limit)
        rows = (await conn.execute(query, values)).all() if values else (await conn.execute(query)).all()
    decode = _decode(dialect)
    return [decode(r) for r in rows]


# SQLite has no statistics for a text range (PostgreSQL does): without them it walks the
# ids past every non-matching row for a narrow prefix, the right plan only for a broad one.
# A bounded count through the resource index tells them apart.
NARROW_PREFIX_ROWS = 5_000


async def _narrow_prefix_only(conn: AsyncConnection, flt: AuditFilter,
                              clauses: Sequence[sa.ColumnElement[bool]]) -> bool:
    if not flt.resource or len(clauses) != 1:  # another filter: its own index decides
        return False
    matching = sa.select(sa.literal(1)).where(*clauses).limit(NARROW_PREFIX_ROWS).subquery()
    count = (await conn.execute(sa.select(sa.func.count()).select_from(matching))).scalar_one()
    return int(count) < NARROW_PREFIX_ROWS


def _time_text(value: datetime) -> str:
    # audit_chain._time_text's bytes; isoformat is ~3x faster than strftime and equal for
    # 4-digit years (strftime does not zero-pad years below 1000 on glibc).
    utc = value.astimezone(UTC)
    if utc.year >= 1000:
        return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _orjson_exact(value: Any) -> bool:
    """orjson writes ``value`` with canonical_json's very bytes: no floats (orjson formats
    them differently: 1e16, not 1e+16), integers within 64 bits. Keys sort alike (code
    point order), strings escape alike (checked by tests against compute_hash)."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, dict):
        return all(isinstance(k, str) and _orjson_exact(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_orjson_exact(v) for v in value)
    return False


def _canonical_bytes(doc: dict[str, Any]) -> bytes:
    if _orjson_exact(doc["details"]):
        try:
            return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # a lone surrogate: json's own rules apply
            pass
    return _CANONICAL.encode(doc).encode("utf-8")


def row_hash(r: Decoded) -> str:
    """``compute_hash`` of a stored row, from the raw columns (a tampered row may not parse)."""
    doc = dict(zip(_CHAINED, r[2:13], strict=True))
    doc["id"], doc["time"] = r[0], _time_text(r[1])
    return hashlib.sha256(_canonical_bytes(doc) + r[13].encode("utf-8")).hexdigest()


def _problem(r: Decoded, expected_id: int, prev_hash: str) -> str:
    if r[0] != expected_id:
        return f"event {expected_id} is missing (next present event is {r[0]})"
    if r[13] != prev_hash:
        return f"event {r[0]} does not link to the event before it"
    if row_hash(r) != r[14]:
        return f"event {r[0]} was modified after it was written"
    return ""


async def verify(engine: AsyncEngine, batch: int, progress: Progress | None = None) -> AuditVerification:
    # One statement, so the head and the highest id come from the same snapshot.
    max_id = sa.select(sa.func.max(audit_events.c.id)).scalar_subquery()
    query = sa.select(audit_chain_head.c.last_id, audit_chain_head.c.last_hash, max_id.label("max_id")) \
        .where(audit_chain_head.c.id == 1)
    async with engine.connect() as conn:
        head = (await conn.execute(query)).mappings().first()
    if head is None:
        return AuditVerification(ok=False, checked=0, message="the chain head row is missing")
    # Only events up to the head read now; later appends are the next verification's job.
    last_id, last_hash = int(head["last_id"]), str(head["last_hash"])
    if head["max_id"] is not None and int(head["max_id"]) > last_id:
        return AuditVerification(ok=False, checked=0, first_bad_id=last_id + 1,
                                 message=f"events after {last_id} were inserted outside the chain")
    upto = [audit_events.c.id <= last_id]
    no_filter = TimeOrder(engine)  # unused: verify has no time filter
    checked, prev_hash, expected_id = 0, GENESIS_HASH, 1

    def read(after: int) -> asyncio.Task[list[Decoded]]:
        return asyncio.ensure_future(fetch(engine, no_filter, None, upto, after, batch))

    # The next batch is read while this one is hashed (the database works meanwhile).
    pending = read(0) if last_id > 0 else None
    try:
        while pending is not None:
            rows = await pending
            pending = read(rows[-1][0]) if len(rows) == batch else None
            for r in rows:
                problem = _problem(r, expected_id, prev_hash)
                if problem:
                    return AuditVerification(ok=False, checked=checked, first_bad_id=r[0], message=problem)
                checked += 1
                prev_hash, expected_id = r[14], r[0] + 1
            if progress is not None:
                await progress(checked, last_id)
    finally:
        if pending is not None:
            pending.cancel()
    if expected_id <= last_id:
        return AuditVerification(ok=False, checked=checked, first_bad_id=expected_id,
                                 message=f"events {expected_id}..{last_id} are missing from the end of the log")
    if prev_hash != last_hash:
        return AuditVerification(ok=False, checked=checked, first_bad_id=last_id or None,
                                 message="the last event does not match the recorded chain head")
    return AuditVerification(ok=True, checked=checked, message=f"{checked} events verified")
