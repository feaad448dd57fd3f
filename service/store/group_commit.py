"""Group commit: the writes of this process share transactions.

Every operation insert, operation save and audit append is a job handed to one writer
task per database. While a transaction commits, new jobs queue; the writer then takes
all of them (up to ``MAX_BATCH``) into the next transaction, with one multi-row statement
per table. Under load a create costs a share of a commit instead of a whole one, and the
audit chain is extended by that single writer: the head row is read and locked once per
batch, the new events are chained in job order, and the head is written once.

Nothing about what a job promises changes: its future resolves only after its batch has
committed (the operation row and its audit event are still in one transaction, since a
batch is one), and each job gets its own answer (a stale save is refused, a terminal
operation is returned unchanged) exactly as a transaction of its own would give it.

A batch that fails for a reason of its own (a unique key, a bad row) is rolled back and
its jobs are run again one transaction each, so one bad job cannot fail its neighbours.
A database that is down fails the whole batch (each job then maps it to UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.domain import AuditEvent, Operation, OperationState, utcnow
from service.core.errors import ApiError, not_found, stale_operation
from service.observability.telemetry import Telemetry
from service.store.audit_chain import compute_hash
from service.store.audit_rows import event_from_row
from service.store.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    SQLITE_IMMEDIATE,
    SqliteBusy,
    sqlite_sync_engine,
    sqlite_write_lock,
    write_transaction,
)
from service.store.failures import is_transient
from service.store.models import audit_chain_head, audit_events, operation_transitions, operations
from service.store.operation_rows import from_row, to_row
from service.store.text_safety import clean_text

# Enough to amortize a commit over many callers, small enough that one batch's
# statements stay short (a batch holds SQLite's write lock while it runs).
MAX_BATCH = 256
# A job that waited this long for its batch fails UNAVAILABLE rather than queueing on
# (the database is locked or slow beyond what a caller should wait for).
QUEUE_TIMEOUT_SECONDS = SQLITE_BUSY_TIMEOUT_MS / 1000
# Columns a save may change; identity and provenance are fixed at create.
IMMUTABLE_COLUMNS = frozenset({"id", "type", "actor", "request_id", "request_hash", "request", "create_time"})


@dataclass
class InsertOperation:
    """A new operation row, its first transition and (optionally) the call's audit event."""

    row: dict[str, Any]
    transition: dict[str, Any]
    audit: dict[str, Any] | None
    stored: Operation


@dataclass
class SaveOperation:
    """A new version of an operation, refused if ``op`` is older than the stored one."""

    op: Operation
    reason: str
    message: str


@dataclass
class AppendAudit:
    """One audit event (chained fields, without id, time and hashes)."""

    fields: dict[str, Any]


Job = InsertOperation | SaveOperation | AppendAudit


@dataclass
class _Queued:
    job: Job
    future: asyncio.Future[Any]
    since: float = field(default_factory=time.monotonic)
    span: object | None = None   # the submitting call's span (tracing on), linked from the batch's


class GroupCommit:
    """The writer of one database (``Database.writer``); ``submit`` answers once committed."""

    def __init__(self, engine: AsyncEngine, telemetry: Telemetry | None = None) -> None:
        self._engine = engine
        self._telemetry = telemetry or Telemetry.off()
        self._sqlite: Engine | None = sqlite_sync_engine(engine) if engine.dialect.name == "sqlite" else None
        if self._sqlite is not None:
            self._telemetry.instrument_engine(self._sqlite)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._queue: list[_Queued] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # committed transactions (tests and benchmarks read these)
        self.jobs = 0

    async def submit(self, job: Job) -> Any:
        loop = asyncio.get_running_loop()
        queued = _Queued(job, loop.create_future(), span=self._telemetry.span_context())
        self._queue.append(queued)
        if self._task is None or self._task.done():
            # A context of its own: the writer serves every caller, so it must not carry
            # the first one's request id (logs) or span (traces).
            self._task = loop.create_task(self._drain(), name="group-commit", context=contextvars.Context())
        # Shielded: once queued, the job is written even if its caller gives up (as a
        # transaction already sent would be); the caller's own cancellation still ends it.
        return await asyncio.shield(queued.future)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            now = time.monotonic()
            waiting = []
            for queued in batch:
                if now - queued.since > QUEUE_TIMEOUT_SECONDS:
                    _settle(queued.future, error=SqliteBusy("waited past the busy timeout for this process's writer"))
                else:
                    waiting.append(queued)
            if waiting:
                await self._commit(waiting)

    async def _commit(self, batch: list[_Queued]) -> None:
        reached: list[tuple[str, str]] = []   # (type, state) of every operation stored in a new state
        started = time.perf_counter()
        try:
            with self._telemetry.db_batch([q.span for q in batch]):
                results = await self._run([q.job for q in batch], reached)
        except Exception as error:  # handed to the callers, who map it
            if len(batch) == 1 or is_transient(error):
                for queued in batch:
                    _settle(queued.future, error=error)
                return
            for queued in batch:  # isolate the job at fault: one transaction each
                await self._commit([queued])
            return
        self.batches += 1
        self.jobs += len(batch)
        self._telemetry.batch_committed(len(batch), time.perf_counter() - started, reached)
        for queued, result in zip(batch, results, strict=True):
            if isinstance(result, ApiError):
                _settle(queued.future, error=result)
            else:
                _settle(queued.future, result=result)

    async def _run(self, jobs: Sequence[Job], reached: list[tuple[str, str]]) -> list[Any]:
        if self._sqlite is None:
            async with write_transaction(self._engine) as conn:
                return await conn.run_sync(apply_batch, jobs, reached)
        # SQLite: the whole batch in the writer thread, one hand-over each way (through
        # aiosqlite every statement is several thread hops, each waiting for the GIL).
        # The thread runs in this task's context: its statements are the batch span's children.
        run = contextvars.copy_context().run
        async with sqlite_write_lock(self._engine):
            return await asyncio.get_running_loop().run_in_executor(self._thread, run, self._sqlite_batch, jobs,
                                                                    reached)

    def _sqlite_batch(self, jobs: Sequence[Job], reached: list[tuple[str, str]]) -> list[Any]:
        assert self._sqlite is not None
        with self._sqlite.connect() as conn:
            conn = conn.execution_options(**{SQLITE_IMMEDIATE: True})
            with conn.begin():
                return apply_batch(conn, jobs, reached)

    async def close(self) -> None:
        """Finish what is queued, then close the SQLite writer's connection and thread."""
        if self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._sqlite is not None:
            self._sqlite.dispose()
        self._thread.shutdown(wait=False)


def _settle(future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def apply_batch(conn: Connection, jobs: Sequence[Job], reached: list[tuple[str, str]] | None = None) -> list[Any]:
    """Every job's statements inside the caller's transaction; the answers in job order
    (an ``ApiError`` is a job's refusal, not the batch's). ``reached`` gets the (type,
    state) of each operation stored in a state it was not in (for metrics, once committed)."""
    reached = [] if reached is None else reached
    results: list[Any] = [None] * len(jobs)
    inserts = [(i, job) for i, job in enumerate(jobs) if isinstance(job, InsertOperation)]
    if inserts:
        conn.execute(operations.insert(), [job.row for _, job in inserts])
        conn.execute(operation_transitions.insert(), [job.transition for _, job in inserts])
        for i, job in inserts:
            results[i] = job.stored
            reached.append((job.stored.type.value, job.stored.state.value))
    saves = [(i, job) for i, job in enumerate(jobs) if isinstance(job, SaveOperation)]
    if saves:
        for i, answer in _apply_saves(conn, saves, reached):
            results[i] = answer
    chained = [(i, job.audit if isinstance(job, InsertOperation) else job.fields) for i, job in enumerate(jobs)
               if isinstance(job, AppendAudit) or (isinstance(job, InsertOperation) and job.audit is not None)]
    if chained:
        events = _append_events(conn, [fields for _, fields in chained if fields is not None])
        for (i, _), event in zip(chained, events, strict=True):
            if isinstance(jobs[i], AppendAudit):
                results[i] = event
    return results


def _append_events(conn: Connection, batch: list[dict[str, Any]]) -> list[AuditEvent]:
    # The head row lock (SQLite: the immediate write lock) serializes appenders, so two
    # replicas on one PostgreSQL cannot fork the chain.
    head = (conn.execute(
        sa.select(audit_chain_head).where(audit_chain_head.c.id == 1).with_for_update()
    )).mappings().first()
    if head is None:
        raise RuntimeError("audit_chain_head is missing: run the database migrations")
    last_id, last_hash = int(head["last_id"]), str(head["last_hash"])
    now = utcnow()
    if last_id:
        # Times follow ids even when a clock steps back (this host's, or another replica's
        # running ahead): time-range pages turn since/until into id bounds.
        previous = conn.execute(sa.select(audit_events.c.time).where(audit_events.c.id == last_id)).scalar()
        if previous is not None and previous > now:
            now = previous
    rows = []
    for fields in batch:
        last_id += 1
        event_hash = compute_hash(last_id, now, fields, last_hash)
        rows.append({**fields, "id": last_id, "time": now, "prev_hash": last_hash, "hash": event_hash})
        last_hash = event_hash
    conn.execute(audit_events.insert(), rows)
    conn.execute(audit_chain_head.update().where(audit_chain_head.c.id == 1)
                       .values(last_id=last_id, last_hash=last_hash))
    return [event_from_row(row) for row in rows]


def _apply_saves(conn: Connection, saves: list[tuple[int, SaveOperation]],
                 reached: list[tuple[str, str]]) -> list[tuple[int, Any]]:
    ids = sorted({job.op.id for _, job in saves})
    current = {row["id"]: dict(row) for row in (conn.execute(
        sa.select(operations).where(operations.c.id.in_(ids)).order_by(operations.c.id).with_for_update()
    )).mappings()}
    last_seq: dict[str, int] = {key: int(seq or 0) for key, seq in (conn.execute(
        sa.select(operation_transitions.c.operation_id, sa.func.max(operation_transitions.c.seq))
        .where(operation_transitions.c.operation_id.in_(ids)).group_by(operation_transitions.c.operation_id)
    )).all()}
    now = utcnow()
    answers: list[tuple[int, Any]] = []
    updates: list[dict[str, Any]] = []
    transitions: list[dict[str, Any]] = []
    for i, job in saves:
        row = current.get(job.op.id)
        answer, values, transition = plan_save(row, job.op, now)
        answers.append((i, answer))
        if values is None:
            continue
        assert row is not None
        updates.append({**values, "b_id": job.op.id})
        if values["state"] != row["state"]:
            reached.append((str(row["type"]), str(values["state"])))
        current[job.op.id] = {**row, **values}  # a second save of it in this batch builds on this one
        if transition:
            seq = last_seq.get(job.op.id, 0) + 1
            last_seq[job.op.id] = seq
            transitions.append({"operation_id": job.op.id, "seq": seq, "state": values["state"],
                                "phase": values["phase"], "reason": clean_text(job.reason),
                                "message": clean_text(job.message), "time": values["update_time"]})
    if updates:
        conn.execute(operations.update().where(operations.c.id == sa.bindparam("b_id")), updates)
    if transitions:
        conn.execute(operation_transitions.insert(), transitions)
    return answers


def plan_save(current: dict[str, Any] | None, op: Operation,
              now: datetime) -> tuple[Operation | ApiError, dict[str, Any] | None, bool]:
    """What saving ``op`` over the stored ``current`` row does: the answer, the columns to
    write (None: nothing) and whether the timeline gets a transition."""
    if current is None:
        return not_found("Operation", op.id), None, False
    if OperationState(current["state"]).terminal:
        # Final, whoever writes: checked under the row lock, so a replica holding an older
        # copy cannot reopen an operation another replica has finished.
        return from_row(current), None, False
    if current["version"] != op.version:
        # Another writer (another replica) saved since ``op`` was read: applying this older
        # copy would undo its change. The caller re-reads and re-applies.
        return stale_operation(op.id, op.version, current["version"]), None, False
    # Keep update_time monotonic even if this host's clock stepped back.
    update_time = max(now, current["update_time"])
    end_time = op.end_time.astimezone(UTC) if op.end_time else (update_time if op.state.terminal else None)
    row = to_row(replace(op, version=current["version"] + 1, update_time=update_time, end_time=end_time))
    values = {k: v for k, v in row.items() if k not in IMMUTABLE_COLUMNS}
    # Identity and provenance come from the stored row, not the caller's copy.
    stored = from_row({**row, **{k: current[k] for k in IMMUTABLE_COLUMNS}})
    changed = (current["state"], current["phase"]) != (values["state"], values["phase"])
    return stored, values, changed
