"""Group commit (service/store/group_commit.py) against real SQLite and PostgreSQL: many
writers at once share transactions, and the audit chain stays one unbroken chain, also
with a second writer (a second replica) appending to the same database."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from service.core.domain import (
    AuditEventDraft,
    AuditFilter,
    AuditOutcome,
    Operation,
    OperationState,
    OperationType,
    ResourceRef,
)
from service.core.errors import ApiError
from service.store import group_commit
from service.store.db import Database

pytestmark = pytest.mark.timeout(120)


def _draft(i: int, actor: str = "alice") -> AuditEventDraft:
    return AuditEventDraft(actor=actor, action="CreateDiskSnapshot", outcome=AuditOutcome.SUCCESS, namespace="ns",
                           resource=f"disk-snapshots/s-{i}", protocol="grpc", request_id=f"r-{i}",
                           details={"i": i})


def _operation(i: int, request_id: str | None = None) -> Operation:
    ref = ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", f"disk-{i}", "ns")
    return Operation(id=str(uuid.uuid4()), type=OperationType.CREATE_DISK_SNAPSHOT, namespace="ns", target=ref,
                     actor="alice", request_hash="h", request_id=request_id, request={"i": i})


async def test_concurrent_writers_share_commits_and_keep_one_chain(database: Database, database_url: str) -> None:
    """200 appends, 100 creates (each with its audit event) and 100 saves at once, plus a
    second Database (another replica's writer) appending 100 more: every event is chained
    exactly once, in id order, and verify() accepts the whole log."""
    other = await Database.connect(database_url)
    try:
        ops = [_operation(i) for i in range(100)]
        created = await asyncio.gather(*(database.operations.create(op, audit=_draft(1000 + i))
                                         for i, op in enumerate(ops)))

        async def run_saves() -> list[Operation]:
            saved = []
            for op in created:
                op.state, op.phase = OperationState.RUNNING, "InProgress"
                saved.append(database.operations.save(op, reason="Started"))
            return list(await asyncio.gather(*saved))

        appended, saved, replica = await asyncio.gather(
            asyncio.gather(*(database.audit.append(_draft(i)) for i in range(200))),
            run_saves(),
            asyncio.gather(*(other.audit.append(_draft(i, actor="bob")) for i in range(100))),
        )
    finally:
        await other.close()
    assert {s.state for s in saved} == {OperationState.RUNNING} and {s.version for s in saved} == {2}
    # Fewer transactions than jobs: the writes were grouped.
    assert database.writer.batches < database.writer.jobs
    events = [*appended, *replica]
    assert len({e.id for e in events}) == 300
    result = await database.audit.verify()
    assert result.ok, result.message
    assert result.checked == 400  # 200 + 100 creates' events + 100 from the other replica
    chain = [event async for event in database.audit.stream(AuditFilter())]
    assert [e.id for e in chain] == list(range(1, 401))
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(chain))
    for op in created:
        timeline = await database.operations.transitions(op.id)
        assert [(t.seq, t.state) for t in timeline] == [(1, OperationState.PENDING), (2, OperationState.RUNNING)]


async def test_one_bad_job_does_not_fail_its_batch(database: Database) -> None:
    """A duplicate request id (a unique key) refuses that create alone; the creates and
    appends sharing its batch are written, and the chain stays valid."""
    first = await database.operations.create(_operation(0, request_id="same-key"), audit=_draft(0))
    results = await asyncio.gather(
        database.operations.create(_operation(1, request_id="same-key"), audit=_draft(1)),
        *(database.operations.create(_operation(i), audit=_draft(i)) for i in range(2, 12)),
        *(database.audit.append(_draft(i)) for i in range(12, 22)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], ApiError) and refused[0].reason == "IDEMPOTENCY_RACE"
    assert (await database.operations.find_by_request_id("alice", "same-key")) == first
    result = await database.audit.verify()
    assert result.ok and result.checked == 21, result.message  # the refused create's event was not written


async def test_a_stale_save_is_refused_while_its_neighbours_land(database: Database) -> None:
    ops = [await database.operations.create(_operation(i)) for i in range(3)]
    await database.operations.save(replace(ops[0], phase="Pending"), reason="Touched")
    stale = replace(ops[0], state=OperationState.FAILED)  # version 1, the store has 2
    outcomes = await asyncio.gather(database.operations.save(stale), *(database.operations.save(op) for op in ops[1:]),
                                    return_exceptions=True)
    assert isinstance(outcomes[0], ApiError) and outcomes[0].reason == "OPERATION_CHANGED"
    assert all(isinstance(o, Operation) and o.version == 2 for o in outcomes[1:])
    assert (await database.operations.get(ops[0].id)).state is OperationState.PENDING  # type: ignore[union-attr]



async def test_event_times_never_step_back(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that steps back (or a replica behind another) does not put an event before
    the one it follows: time-range pages rely on times following ids."""
    first = await database.audit.append(_draft(1))
    monkeypatch.setattr(group_commit, "utcnow", lambda: first.time - timedelta(hours=1))
    second = await database.audit.append(_draft(2))
    assert second.id == first.id + 1 and second.time == first.time
    assert (await database.audit.verify()).ok
