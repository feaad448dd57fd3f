#!/usr/bin/env python3
"""Seed a migrated gateway database with a large, valid audit chain and operation history.

PostgreSQL: COPY (asyncpg ``copy_records_to_table``) with the secondary indexes dropped
and rebuilt afterwards, then ANALYZE and VACUUM (visibility map: index-only scans).
SQLite: ``executemany`` in large transactions, indexes rebuilt afterwards, then ANALYZE.

The audit rows form a valid hash chain (``audit_chain.compute_hash``, so ``verify`` runs
over them) and include one clock step back (event ``STEP_BACK_ID`` is 5 minutes older
than its predecessor), so the time-range bounds run their exact-even-then path. Times
are spread evenly over ``--days`` days ending now. Values are skewed like a real log:
a few busy actors and namespaces, rare ones ("auditor", "ns-rare", DENIED outcomes).
Reuse: an already seeded database (same row counts) is left as it is.

    .venv/bin/python bench/seed_history.py --database-url URL [--events 1000000] [--operations 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.core.domain import (
    Operation,
    OperationState,
    OperationType,
    ResourceRef,
)
from service.store.audit_chain import GENESIS_HASH, compute_hash
from service.store.db import migrate
from service.store.engine import create_engine
from service.store.models import audit_events, operations
from service.store.operation_rows import to_row

CHUNK = 100_000
STEP_BACK_ID = 1000
ACTIONS = ("CreateDiskSnapshot", "DeleteDiskSnapshot", "GetOperation", "ListOperations", "CreateVmSnapshot",
           "RestoreDisk", "WatchOperation", "ListAuditEvents", "ExportDisk", "CloneVm")
KINDS = ("disk-snapshots", "vm-snapshots", "operations", "virtual-disks")
UNFINISHED_OPERATIONS = 10


def actor_of(i: int) -> str:
    return "auditor" if i % 10_007 == 0 else f"user-{(i * 7919) % 40}"


def namespace_of(i: int) -> str:
    return "ns-rare" if i % 9_973 == 0 else f"ns-{(i * 104_729) % 200}"


def outcome_of(i: int) -> str:
    m = i % 100
    return "DENIED" if m < 3 else "ERROR" if m < 5 else "SUCCESS"


def event_rows(count: int, start: datetime, step: timedelta) -> Iterator[tuple[Any, ...]]:
    """(id, time, actor, action, outcome, namespace, resource, protocol, request_id,
    operation_id, code, reason, details-as-dict, prev_hash, hash), chained."""
    prev = GENESIS_HASH
    for i in range(1, count + 1):
        when = start + step * i
        if i == STEP_BACK_ID:
            when -= timedelta(minutes=5)  # a clock that stepped back
        outcome = outcome_of(i)
        fields = {
            "actor": actor_of(i), "action": ACTIONS[i % len(ACTIONS)], "outcome": outcome,
            "namespace": namespace_of(i), "resource": f"{KINDS[i % 4]}/item-{i % 50_000}",
            "protocol": "grpc" if i % 2 else "rest", "request_id": f"req-{i}", "operation_id": "",
            "code": "" if outcome == "SUCCESS" else "PERMISSION_DENIED", "reason": "",
            "details": {"n": i, "pageSize": 100},
        }
        digest = compute_hash(i, when, fields, prev)
        yield (i, when, fields["actor"], fields["action"], outcome, fields["namespace"], fields["resource"],
               fields["protocol"], fields["request_id"], "", fields["code"], "", fields["details"], prev, digest)
        prev = digest


def operation_row(i: int, start: datetime, step: timedelta) -> dict[str, Any]:
    created = start + step * i
    unfinished = i > 0 and i % max(1, OPERATIONS_TOTAL // UNFINISHED_OPERATIONS) == 0
    op_type = list(OperationType)[i % len(OperationType)]
    state = OperationState.RUNNING if unfinished else (
        OperationState.FAILED if i % 50 == 0 else OperationState.SUCCEEDED)
    op = Operation(
        id=f"op-{i:09d}", type=op_type, namespace=namespace_of(i),
        target=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", f"disk-{i % 20_000}",
                           namespace_of(i), f"uid-{i}"),
        actor=actor_of(i), request_hash=f"{i:064x}", state=state, phase="Ready" if not unfinished else "InProgress",
        request={"name": f"snap-{i}"}, request_id=f"req-{i}", create_time=created, update_time=created,
        end_time=None if unfinished else created + timedelta(seconds=3))
    return to_row(op)


OPERATIONS_TOTAL = 0


async def _counts(url: str) -> tuple[int, int]:
    engine = create_engine(url, pooled=False)
    try:
        async with engine.connect() as conn:
            events = (await conn.execute(sa.select(sa.func.count()).select_from(audit_events))).scalar_one()
            ops = (await conn.execute(sa.select(sa.func.count()).select_from(operations))).scalar_one()
            return int(events), int(ops)
    finally:
        await engine.dispose()


def _index_ddl(table: sa.Table, dialect: Any) -> list[str]:
    from sqlalchemy.schema import CreateIndex
    return [str(CreateIndex(ix).compile(dialect=dialect)) for ix in table.indexes]


async def seed(url: str, events: int, ops: int, days: float) -> None:
    global OPERATIONS_TOTAL
    OPERATIONS_TOTAL = ops
    await migrate(url)
    have = await _counts(url)
    if have == (events, ops):
        print(f"seed: reusing {events} events, {ops} operations", flush=True)
        return
    if have != (0, 0):
        raise SystemExit(f"seed: the database holds {have} (events, operations), not (0, 0) or {(events, ops)}: "
                         "use another database")
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=days)
    ev_step = timedelta(days=days) / max(events, 1)
    op_step = timedelta(days=days) / max(ops, 1)
    engine = create_engine(url, pooled=False)
    try:
        if engine.dialect.name == "postgresql":
            await _seed_postgres(engine, events, ops, start, ev_step, op_step)
        else:
            await _seed_sqlite(engine, events, ops, start, ev_step, op_step)
    finally:
        await engine.dispose()


async def _seed_postgres(engine: Any, events: int, ops: int, start: datetime, ev_step: timedelta,
                         op_step: timedelta) -> None:
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        for table in (audit_events, operations):
            for ix in table.indexes:
                await raw.execute(f'DROP INDEX IF EXISTS "{ix.name}"')
        t0 = time.monotonic()
        last: tuple[Any, ...] = ()
        columns = [c.name for c in audit_events.c]
        chunk: list[tuple[Any, ...]] = []
        for row in event_rows(events, start, ev_step):
            chunk.append((*row[:12], json.dumps(row[12]), *row[13:]))
            if len(chunk) == CHUNK:
                await raw.copy_records_to_table("audit_events", records=chunk, columns=columns)
                last, chunk = chunk[-1], []
                print(f"  audit {last[0]:,} rows, {last[0] / (time.monotonic() - t0):,.0f}/s", flush=True)
        if chunk:
            await raw.copy_records_to_table("audit_events", records=chunk, columns=columns)
            last = chunk[-1]
        if last:
            await raw.execute("UPDATE audit_chain_head SET last_id = $1, last_hash = $2 WHERE id = 1",
                              last[0], last[14])
        print(f"seed: {events:,} events copied in {time.monotonic() - t0:.1f}s", flush=True)
        t0 = time.monotonic()
        op_columns = [c.name for c in operations.c]
        json_columns = {c.name for c in operations.c if isinstance(c.type, sa.JSON)}
        batch: list[tuple[Any, ...]] = []
        for i in range(1, ops + 1):
            row = operation_row(i, start, op_step)
            batch.append(tuple(json.dumps(row[n]) if n in json_columns and row[n] is not None else row[n]
                               for n in op_columns))
            if len(batch) == CHUNK:
                await raw.copy_records_to_table("operations", records=batch, columns=op_columns)
                batch = []
        if batch:
            await raw.copy_records_to_table("operations", records=batch, columns=op_columns)
        print(f"seed: {ops:,} operations copied in {time.monotonic() - t0:.1f}s", flush=True)
        t0 = time.monotonic()
        await raw.execute("SET maintenance_work_mem = '512MB'")
        for table in (audit_events, operations):
            for ddl in _index_ddl(table, engine.dialect):
                await raw.execute(ddl)
        print(f"seed: indexes built in {time.monotonic() - t0:.1f}s", flush=True)
        await conn.commit()
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM (ANALYZE) audit_events"))
        await conn.execute(sa.text("VACUUM (ANALYZE) operations"))


async def _seed_sqlite(engine: Any, events: int, ops: int, start: datetime, ev_step: timedelta,
                       op_step: timedelta) -> None:
    path = engine.url.database
    await engine.dispose()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-262144")
    for table in (audit_events, operations):
        for ix in table.indexes:
            db.execute(f'DROP INDEX IF EXISTS "{ix.name}"')
    t0 = time.monotonic()
    placeholders = ",".join("?" * len(audit_events.c))
    chunk: list[tuple[Any, ...]] = []
    last: tuple[Any, ...] = ()

    def flush(rows: list[tuple[Any, ...]]) -> None:
        db.execute("BEGIN")
        db.executemany(f"INSERT INTO audit_events VALUES ({placeholders})", rows)
        db.execute("COMMIT")

    for row in event_rows(events, start, ev_step):
        # SQLite stores UTC without an offset (models.UtcDateTime), text as the driver writes it.
        stored_time = row[1].replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        chunk.append((row[0], stored_time, *row[2:12], json.dumps(row[12]), *row[13:]))
        if len(chunk) == CHUNK:
            flush(chunk)
            last, chunk = chunk[-1], []
    if chunk:
        flush(chunk)
        last = chunk[-1]
    if last:
        db.execute("UPDATE audit_chain_head SET last_id = ?, last_hash = ? WHERE id = 1", (last[0], last[14]))
    print(f"seed: {events:,} events inserted in {time.monotonic() - t0:.1f}s", flush=True)
    op_columns = [c.name for c in operations.c]
    json_columns = {c.name for c in operations.c if isinstance(c.type, sa.JSON)}
    time_columns = {"create_time", "update_time", "end_time"}

    def cell(name: str, value: Any) -> Any:
        if value is None:
            return None
        if name in json_columns:
            return json.dumps(value)
        if name in time_columns:
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return value

    sql = f"INSERT INTO operations ({','.join(op_columns)}) VALUES ({','.join('?' * len(op_columns))})"
    db.execute("BEGIN")
    db.executemany(sql, (tuple(cell(n, row[n]) for n in op_columns)
                         for row in (operation_row(i, start, op_step) for i in range(1, ops + 1))))
    db.execute("COMMIT")
    sync_engine = sa.create_engine(f"sqlite:///{path}")
    for table in (audit_events, operations):
        for ddl in _index_ddl(table, sync_engine.dialect):
            db.execute(ddl)
    sync_engine.dispose()
    db.execute("ANALYZE")
    db.close()
    print(f"seed: done in {time.monotonic() - t0:.1f}s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=100.0)
    args = parser.parse_args()
    asyncio.run(seed(args.database_url, args.events, args.operations, args.days))
    return 0


if __name__ == "__main__":
    sys.exit(main())
