"""OperationRepository against real SQLite and PostgreSQL (the ``database`` fixture)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from service.core.domain import (
    AuditEventDraft,
    AuditFilter,
    AuditOutcome,
    Condition,
    ExportTransfer,
    Operation,
    OperationError,
    OperationFilter,
    OperationState,
    OperationType,
    ResourceRef,
    ResourceResult,
    TransferOutcome,
)
from service.core.errors import ApiError, Code
from service.store.db import Database

BASE_TIME = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_op(*, namespace: str = "ns", actor: str = "alice", request_id: str | None = None,
            type_: OperationType = OperationType.CREATE_DISK_SNAPSHOT, target_name: str = "disk-a",
            created: datetime | None = None, state: OperationState = OperationState.PENDING) -> Operation:
    created = created or BASE_TIME
    return Operation(
        id=str(uuid.uuid4()), type=type_, namespace=namespace,
        target=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", target_name, namespace),
        actor=actor, request_hash="sha256:abc", state=state, request_id=request_id,
        request={"disk_snapshot": {"name": "snap", "required_consistency": True}},
        create_time=created, update_time=created,
    )


async def test_create_then_get_round_trips_every_field(database: Database) -> None:
    op = make_op(request_id="req-1")
    op.conditions = [Condition("Ready", "False", "Pending", "waiting", BASE_TIME)]
    op.results = [ResourceResult("v1", "VirtualDisk", "disk-a", "InProgress", "copying")]
    op.warnings = ["the disk is attached to a running VM"]
    op.resource = ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDiskSnapshot", "snap", "ns", "uid-1")
    created = await database.operations.create(op, reason="Accepted", message="recorded")
    assert created == op

    stored = await database.operations.get(op.id)
    assert stored == op
    assert stored is not None and stored.create_time.tzinfo is not None
    assert await database.operations.find_by_request_id("alice", "req-1") == op
    assert await database.operations.find_by_request_id("bob", "req-1") is None
    assert await database.operations.get("missing") is None

    [first] = await database.operations.transitions(op.id)
    assert (first.seq, first.state, first.phase, first.reason, first.message) == \
        (1, OperationState.PENDING, "", "Accepted", "recorded")


async def test_save_bumps_version_and_records_only_state_or_phase_changes(database: Database) -> None:
    op = await database.operations.create(make_op())
    running = replace(op, state=OperationState.RUNNING, phase="InProgress")
    saved = await database.operations.save(running, reason="ResourceCreated", message="snapshot written")
    assert saved.version == 2 and saved.update_time >= op.update_time and saved.end_time is None

    # Same state and phase: version moves, the timeline does not.
    saved = await database.operations.save(replace(saved, warnings=["slow"]))
    assert saved.version == 3 and saved.warnings == ["slow"]

    failed = replace(saved, state=OperationState.FAILED, phase="Failed",
                     error=OperationError("FAILED_PRECONDITION", "VirtualDiskNotReady", "disk is not ready"))
    saved = await database.operations.save(failed, reason="Failed", message="gave up")
    assert saved.version == 4 and saved.done and saved.end_time is not None
    assert saved.error == failed.error
    assert await database.operations.get(op.id) == saved

    timeline = await database.operations.transitions(op.id)
    assert [(t.seq, t.state, t.phase, t.reason) for t in timeline] == [
        (1, OperationState.PENDING, "", "Created"),
        (2, OperationState.RUNNING, "InProgress", "ResourceCreated"),
        (3, OperationState.FAILED, "Failed", "Failed"),
    ]
    assert timeline[2].time == saved.update_time


async def test_save_keeps_identity_fields_from_the_stored_row(database: Database) -> None:
    op = await database.operations.create(make_op(request_id="r"))
    saved = await database.operations.save(replace(op, actor="mallory", request_id="other", phase="X"))
    assert (saved.actor, saved.request_id, saved.create_time) == ("alice", "r", op.create_time)


async def test_save_of_unknown_operation_is_not_found(database: Database) -> None:
    with pytest.raises(ApiError) as caught:
        await database.operations.save(make_op())
    assert caught.value.code == Code.NOT_FOUND


async def test_concurrent_saves_of_one_copy_keep_one_and_refuse_the_older_copies(database: Database) -> None:
    """Ten writers (as ten replicas would) save changes to the same version 1: one wins,
    the other nine are refused (OPERATION_CHANGED) instead of overwriting it."""
    op = await database.operations.create(make_op())
    results = await asyncio.gather(*(database.operations.save(replace(op, phase=f"P{i}"), reason=f"r{i}")
                                     for i in range(10)), return_exceptions=True)
    saved = [r for r in results if isinstance(r, Operation)]
    refused = [r for r in results if isinstance(r, ApiError)]
    assert len(saved) == 1 and len(refused) == 9
    assert {(e.code, e.reason) for e in refused} == {(Code.ABORTED, "OPERATION_CHANGED")}
    stored = await database.operations.get(op.id)
    assert stored == saved[0] and stored.version == 2
    timeline = await database.operations.transitions(op.id)
    assert [(t.seq, t.phase) for t in timeline] == [(1, ""), (2, stored.phase)]


async def test_an_older_copy_never_overwrites_a_newer_one(database: Database) -> None:
    op = await database.operations.create(make_op())
    newer = await database.operations.save(replace(op, state=OperationState.RUNNING, phase="InProgress"))
    with pytest.raises(ApiError) as caught:
        await database.operations.save(replace(op, warnings=["from a stale copy"]))
    assert caught.value.reason == "OPERATION_CHANGED"
    assert await database.operations.get(op.id) == newer


async def test_an_operation_and_its_audit_event_commit_together(database: Database) -> None:
    draft = AuditEventDraft(actor="alice", action="CreateDiskSnapshot", outcome=AuditOutcome.SUCCESS,
                            namespace="ns", operation_id="set-below")
    op = make_op(request_id="k")
    stored = await database.operations.create(op, audit=replace(draft, operation_id=op.id))
    events = (await database.audit.list_page(AuditFilter(), 10, "")).items
    assert [(e.action, e.operation_id) for e in events] == [("CreateDiskSnapshot", stored.id)]
    # A refused insert (the same key again) leaves no event behind either.
    with pytest.raises(ApiError):
        await database.operations.create(make_op(request_id="k"), audit=draft)
    assert len((await database.audit.list_page(AuditFilter(), 10, "")).items) == 1
    assert (await database.audit.verify()).ok


async def test_same_actor_and_request_id_race_is_reported_as_idempotency_race(database: Database) -> None:
    await database.operations.create(make_op(request_id="dup"))
    with pytest.raises(ApiError) as caught:
        await database.operations.create(make_op(request_id="dup"))
    assert (caught.value.code, caught.value.reason) == (Code.ALREADY_EXISTS, "IDEMPOTENCY_RACE")
    # Other actors and operations without a key are unaffected.
    await database.operations.create(make_op(actor="bob", request_id="dup"))
    await database.operations.create(make_op(request_id=None))
    await database.operations.create(make_op(request_id=None))


async def test_concurrent_creates_with_one_request_id_leave_exactly_one(database: Database) -> None:
    results = await asyncio.gather(*(database.operations.create(make_op(request_id="once")) for _ in range(8)),
                                   return_exceptions=True)
    winners = [r for r in results if isinstance(r, Operation)]
    losers = [r for r in results if isinstance(r, ApiError)]
    assert len(winners) == 1 and len(losers) == 7
    assert all(e.reason == "IDEMPOTENCY_RACE" for e in losers)
    assert await database.operations.find_by_request_id("alice", "once") == winners[0]


async def test_duplicate_id_is_already_exists(database: Database) -> None:
    op = await database.operations.create(make_op())
    with pytest.raises(ApiError) as caught:
        await database.operations.create(replace(op, request_id=None))
    assert (caught.value.code, caught.value.reason) == (Code.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS")


async def _all_pages(database: Database, flt: OperationFilter, page_size: int) -> list[list[Operation]]:
    pages, token = [], ""
    while True:
        page = await database.operations.list_page(flt, page_size, token)
        pages.append(page.items)
        token = page.next_page_token
        if not token:
            return pages


async def test_list_pages_newest_first_without_gaps_or_duplicates(database: Database) -> None:
    ops = []
    for i in range(23):
        # Groups of three share a create_time, so the id tiebreak is exercised.
        ops.append(await database.operations.create(make_op(created=BASE_TIME + timedelta(seconds=i // 3))))
    pages = await _all_pages(database, OperationFilter(), 5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    listed = [op.id for page in pages for op in page]
    expected = [op.id for op in sorted(ops, key=lambda o: (o.create_time, o.id), reverse=True)]
    assert listed == expected


async def test_list_filters(database: Database) -> None:
    a = await database.operations.create(make_op(namespace="ns1", actor="alice", target_name="d1"))
    b = await database.operations.create(make_op(namespace="ns2", actor="bob", target_name="d2",
                                                 type_=OperationType.DELETE_DISK_SNAPSHOT))
    c = await database.operations.create(make_op(namespace="ns1", actor="bob", target_name="d2",
                                                 state=OperationState.SUCCEEDED))

    async def ids(flt: OperationFilter) -> set[str]:
        return {op.id for op in (await database.operations.list_page(flt, 0, "")).items}

    assert await ids(OperationFilter()) == {a.id, b.id, c.id}
    assert await ids(OperationFilter(namespace="ns1")) == {a.id, c.id}
    assert await ids(OperationFilter(actor="bob")) == {b.id, c.id}
    assert await ids(OperationFilter(type=OperationType.DELETE_DISK_SNAPSHOT)) == {b.id}
    assert await ids(OperationFilter(state=OperationState.SUCCEEDED)) == {c.id}
    assert await ids(OperationFilter(target_name="d2", namespace="ns1")) == {c.id}
    assert await ids(OperationFilter(namespace="none")) == set()


async def test_filtered_pagination_and_page_size_defaults(database: Database) -> None:
    for i in range(60):
        await database.operations.create(make_op(namespace="even" if i % 2 == 0 else "odd",
                                                 created=BASE_TIME + timedelta(milliseconds=i)))
    pages = await _all_pages(database, OperationFilter(namespace="even"), 7)
    listed = [op for page in pages for op in page]
    assert len(listed) == 30 == len({op.id for op in listed})
    assert all(op.namespace == "even" for op in listed)

    default = await database.operations.list_page(OperationFilter(), 0, "")
    assert len(default.items) == 50 and default.next_page_token
    capped = await database.operations.list_page(OperationFilter(), 10_000, "")
    assert len(capped.items) == 60 and capped.next_page_token == ""


@pytest.mark.parametrize("token", ["garbage!!", "eyJ4IjoxfQ", "", "A" * 5000])
async def test_malformed_page_token_is_invalid_argument(database: Database, token: str) -> None:
    await database.operations.create(make_op())
    if not token:  # an empty token is simply the first page
        assert len((await database.operations.list_page(OperationFilter(), 0, token)).items) == 1
        return
    with pytest.raises(ApiError) as caught:
        await database.operations.list_page(OperationFilter(), 0, token)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert [v.field for v in caught.value.field_violations] == ["page_token"]


async def test_page_token_is_bound_to_its_filter(database: Database) -> None:
    for _ in range(3):
        await database.operations.create(make_op())
    token = (await database.operations.list_page(OperationFilter(namespace="ns"), 1, "")).next_page_token
    assert token
    with pytest.raises(ApiError) as caught:
        await database.operations.list_page(OperationFilter(namespace="other"), 1, token)
    assert caught.value.code == Code.INVALID_ARGUMENT


async def test_unfinished_lists_only_non_terminal_oldest_first(database: Database) -> None:
    pending = await database.operations.create(make_op(created=BASE_TIME + timedelta(seconds=2)))
    running = await database.operations.create(make_op(created=BASE_TIME + timedelta(seconds=1),
                                                       state=OperationState.RUNNING))
    for state in (OperationState.SUCCEEDED, OperationState.FAILED, OperationState.CANCELLED):
        await database.operations.create(make_op(state=state))
    assert [op.id for op in await database.operations.unfinished()] == [running.id, pending.id]


@pytest.mark.parametrize("hostile", ["nul\x00byte", "lone\ud800surrogate"])
async def test_unstorable_text_is_cleaned_on_write_and_never_matches_on_lookup(database: Database,
                                                                                hostile: str) -> None:
    op = make_op(request_id="ok")
    op.warnings = [hostile]
    op.conditions = [Condition("Ready", "False", "Bad", hostile)]
    created = await database.operations.create(op, message=hostile)
    cleaned = hostile.replace("\x00", "\ufffd").replace("\ud800", "\ufffd")
    assert created.warnings == [cleaned] and created.conditions[0].message == cleaned
    assert await database.operations.get(op.id) == created
    saved = await database.operations.save(replace(created, phase=hostile), reason=hostile)
    assert saved.phase == cleaned
    timeline = await database.operations.transitions(op.id)
    assert [(t.phase, t.reason, t.message) for t in timeline] == [("", "Created", cleaned), (cleaned, cleaned, "")]

    assert await database.operations.get(hostile) is None
    assert await database.operations.find_by_request_id(hostile, hostile) is None
    assert await database.operations.transitions(hostile) == []
    assert (await database.operations.list_page(OperationFilter(namespace=hostile), 0, "")).items == []
    with pytest.raises(ApiError) as caught:
        await database.operations.save(replace(created, id=hostile))
    assert caught.value.code == Code.NOT_FOUND


async def test_mixed_concurrent_writers_all_succeed(database: Database) -> None:
    # What a burst of creates does to the store: each one inserts an operation, appends an
    # audit event and saves the operation twice, all interleaved on one pool.
    from service.core.domain import AuditEventDraft, AuditOutcome

    async def one_create(i: int) -> None:
        op = await database.operations.create(make_op(request_id=f"burst-{i}"))
        await database.audit.append(AuditEventDraft(actor="alice", action="CreateDiskSnapshot",
                                                    outcome=AuditOutcome.SUCCESS, operation_id=op.id))
        op = await database.operations.save(replace(op, state=OperationState.RUNNING, phase="Pending"))
        await database.operations.save(replace(op, state=OperationState.SUCCEEDED, phase="Ready"))

    await asyncio.gather(*(one_create(i) for i in range(60)))
    assert len((await database.operations.list_page(OperationFilter(), 500, "")).items) == 60
    assert (await database.audit.verify()).checked == 60


async def test_a_finished_operation_is_final_even_for_a_stale_writer(database: Database) -> None:
    # Two replicas hold copies of one operation; one finishes it, the other saves an older
    # RUNNING copy afterwards. The row lock in save keeps the finished state.
    op = await database.operations.create(make_op())
    stale = await database.operations.save(replace(op, state=OperationState.RUNNING, phase="InProgress"))
    done = await database.operations.save(replace(stale, state=OperationState.SUCCEEDED, phase="Ready"))
    after = await database.operations.save(replace(stale, state=OperationState.RUNNING, phase="Pending"))
    assert (after.state, after.phase, after.version) == (OperationState.SUCCEEDED, "Ready", done.version)
    stored = await database.operations.get(op.id)
    assert stored is not None and (stored.state, stored.phase) == (OperationState.SUCCEEDED, "Ready")
    assert [t.phase for t in await database.operations.transitions(op.id)] == ["", "InProgress", "Ready"]


async def test_an_export_transfer_round_trips_and_its_digest_is_found_by_content_tag(database: Database) -> None:
    op = make_op(type_=OperationType.EXPORT_DISK)
    op.transfer = ExportTransfer(size=10, length=10, bytes_sent=4, hole_bytes=2, etag='"tag"', duration_seconds=0.5)
    await database.operations.create(op)
    assert await database.operations.get(op.id) == op
    assert await database.operations.export_digest('"tag"') == ""    # not known while running

    op.transfer = replace(op.transfer, bytes_sent=10, sha256="ab" * 32, range_sha256="ab" * 32,
                          outcome=TransferOutcome.COMPLETED)
    op.state = OperationState.SUCCEEDED
    saved = await database.operations.save(op)
    assert saved.transfer == op.transfer
    assert await database.operations.export_digest('"tag"') == "ab" * 32
    assert await database.operations.export_digest('"other"') == ""
