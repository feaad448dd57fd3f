"""AuditRepository against real SQLite and PostgreSQL: filters, paging, streaming, and
the hash chain under concurrency and tampering."""

from __future__ import annotations

import asyncio
import base64
import itertools
from dataclasses import asdict
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from service.core.domain import AuditEvent, AuditEventDraft, AuditFilter, AuditOutcome
from service.core.errors import ApiError, Code
from service.store import audit as audit_module
from service.store.audit_chain import GENESIS_HASH
from service.store.db import Database

pytestmark = pytest.mark.timeout(60)


def draft(i: int = 0, **overrides: object) -> AuditEventDraft:
    fields: dict[str, object] = {
        "actor": "alice", "action": "CreateDiskSnapshot", "outcome": AuditOutcome.SUCCESS, "namespace": "ns",
        "resource": f"disk-snapshots/snap-{i}", "protocol": "grpc", "request_id": f"req-{i}",
        "operation_id": f"op-{i}", "details": {"n": i, "nested": {"b": [1, 2.5, None], "a": "ü"}},
    }
    fields.update(overrides)
    return AuditEventDraft(**fields)  # type: ignore[arg-type]


async def append_many(database: Database, count: int) -> list[AuditEvent]:
    return [await database.audit.append(draft(i)) for i in range(count)]


async def tamper(database: Database, statement: str) -> None:
    """Change audit rows behind the application's back (PostgreSQL: past the trigger)."""
    async with database.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete"))
        await conn.execute(sa.text(statement))
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete"))


async def test_append_links_each_event_to_the_previous_one(database: Database) -> None:
    events = await append_many(database, 4)
    assert [e.id for e in events] == [1, 2, 3, 4]
    assert events[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(events))
    listed = (await database.audit.list_page(AuditFilter(), 0, "")).items
    assert listed == events
    assert listed[0].time.tzinfo is not None and listed[0].details["nested"]["a"] == "ü"
    result = await database.audit.verify()
    assert (result.ok, result.checked, result.first_bad_id) == (True, 4, None)


async def test_details_are_stored_as_json_and_covered_by_the_hash(database: Database) -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = await database.audit.append(draft(details={"when": moment, 7: "int key", "list": (1, 2)}))
    assert event.details == {"when": str(moment), "7": "int key", "list": [1, 2]}
    assert (await database.audit.list_page(AuditFilter(), 0, "")).items == [event]
    assert (await database.audit.verify()).ok


async def test_verify_of_an_empty_log_is_ok(database: Database) -> None:
    assert (await database.audit.verify()).ok


async def test_filters_and_time_range(database: Database) -> None:
    specs = [
        {"actor": "alice", "namespace": "ns1", "resource": "disk-snapshots/a", "action": "CreateDiskSnapshot"},
        {"actor": "bob", "namespace": "ns1", "resource": "disk-snapshots/b", "action": "DeleteDiskSnapshot",
         "outcome": AuditOutcome.DENIED, "code": "PERMISSION_DENIED"},
        {"actor": "bob", "namespace": "ns2", "resource": "operations/x", "action": "GetOperation",
         "outcome": AuditOutcome.ERROR, "code": "NOT_FOUND"},
        {"actor": "carol", "namespace": "ns2", "resource": "disk_snapshots/c", "action": "CreateDiskSnapshot"},
        {"actor": "carol", "namespace": "", "resource": "", "action": "VerifyAuditLog"},
    ]
    events = [await database.audit.append(draft(i, **spec)) for i, spec in enumerate(specs)]

    async def ids(flt: AuditFilter) -> list[int]:
        return [e.id for e in (await database.audit.list_page(flt, 0, "")).items]

    assert await ids(AuditFilter(actor="bob")) == [2, 3]
    assert await ids(AuditFilter(namespace="ns2")) == [3, 4]
    assert await ids(AuditFilter(resource="disk-snapshots/")) == [1, 2]
    assert await ids(AuditFilter(resource="disk-snapshots/b")) == [2]
    # LIKE wildcards in the prefix are literal characters.
    assert await ids(AuditFilter(resource="disk_")) == [4]
    assert await ids(AuditFilter(resource="%")) == []
    assert await ids(AuditFilter(action="CreateDiskSnapshot")) == [1, 4]
    assert await ids(AuditFilter(outcome=AuditOutcome.DENIED)) == [2]
    assert await ids(AuditFilter(outcome=AuditOutcome.SUCCESS, namespace="ns2")) == [4]
    assert await ids(AuditFilter(since=events[1].time)) == [2, 3, 4, 5]
    assert await ids(AuditFilter(until=events[1].time)) == [1]
    assert await ids(AuditFilter(since=events[1].time, until=events[3].time)) == [2, 3]
    assert await ids(AuditFilter(actor="nobody")) == []
    # A bound without an offset is ambiguous: rejected, not guessed.
    with pytest.raises(ApiError) as caught:
        await database.audit.list_page(AuditFilter(since=datetime(2026, 1, 1)), 0, "")
    assert [v.field for v in caught.value.field_violations] == ["since"]
    with pytest.raises(ApiError):
        [e async for e in database.audit.stream(AuditFilter(until=datetime(2026, 1, 1)))]


async def test_pagination_oldest_first_with_a_filter(database: Database) -> None:
    for i in range(17):
        await database.audit.append(draft(i, actor="alice" if i % 3 else "bob"))
    seen: list[int] = []
    token, pages = "", 0
    while True:
        page = await database.audit.list_page(AuditFilter(actor="alice"), 4, token)
        seen.extend(e.id for e in page.items)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == [i + 1 for i in range(17) if i % 3]
    assert pages == 3

    alice_token = (await database.audit.list_page(AuditFilter(actor="alice"), 4, "")).next_page_token
    with pytest.raises(ApiError) as caught:
        await database.audit.list_page(AuditFilter(actor="bob"), 4, alice_token)
    assert caught.value.code == Code.INVALID_ARGUMENT


async def test_page_tokens_with_impossible_positions_are_rejected(database: Database) -> None:
    """Even correctly signed (a leaked key), a position out of range is a 400, not a 500."""
    await append_many(database, 2)
    query = asdict(AuditFilter())
    for position in ({"i": "1"}, {"i": -1}, {"i": True}, {}, {"i": 2**63},
                     {"i": 9 * 10**30}, {"i": 1.5}, {"i": None}, {"i": [1]}):
        with pytest.raises(ApiError) as caught:
            await database.audit.list_page(AuditFilter(), 1, database.page_tokens.seal("audit", query, position))
        assert [v.field for v in caught.value.field_violations] == ["page_token"]
    with pytest.raises(ApiError):
        await database.audit.list_page(AuditFilter(), -1, "")


async def test_stream_spans_several_batches(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "STREAM_BATCH", 4)
    events = await append_many(database, 13)
    assert [e async for e in database.audit.stream(AuditFilter())] == events
    evens = [e.id async for e in database.audit.stream(AuditFilter(resource="disk-snapshots/snap-1"))]
    assert evens == [2, 11, 12, 13]  # snap-1, snap-10, snap-11, snap-12
    exact_batch = await append_many(database, 3)  # 16 rows: the last batch is full, then empty
    assert len([e async for e in database.audit.stream(AuditFilter())]) == 16 == exact_batch[-1].id


async def test_concurrent_appends_keep_one_unbroken_chain(database: Database, database_url: str) -> None:
    # A second engine acts as a second replica writing to the same log.
    other = await Database.connect(database_url)
    try:
        results = await asyncio.gather(*(
            (database if i % 2 else other).audit.append(draft(i)) for i in range(50)))
    finally:
        await other.close()
    assert sorted(e.id for e in results) == list(range(1, 51))
    by_id = {e.id: e for e in results}
    assert all(by_id[i + 1].prev_hash == by_id[i].hash for i in range(1, 50))
    result = await database.audit.verify()
    assert (result.ok, result.checked) == (True, 50)


@pytest.mark.parametrize(("statement", "first_bad_id"), [
    ("UPDATE audit_events SET actor = 'mallory' WHERE id = 5", 5),
    ("UPDATE audit_events SET details = '{\"n\": 99}' WHERE id = 3", 3),
    ("UPDATE audit_events SET outcome = 'SUCCEEDED' WHERE id = 4", 4),
    ("UPDATE audit_events SET time = time + INTERVAL '1 second' WHERE id = 6", 6),
    ("DELETE FROM audit_events WHERE id = 4", 5),
    ("DELETE FROM audit_events WHERE id = 8", 8),
    # Swap two events' contents (reordering): the earlier one is the first to break.
    ("UPDATE audit_events SET request_id = CASE id WHEN 2 THEN 'req-6' ELSE 'req-1' END WHERE id IN (2, 7)", 2),
    # A forged event appended past the chain head.
    ("INSERT INTO audit_events SELECT id + 1, time, actor, action, outcome, namespace, resource, protocol, request_id,"
     " operation_id, code, reason, details, hash, hash FROM audit_events WHERE id = 8", 9),
], ids=["actor", "details", "outcome", "time", "delete-middle", "delete-last", "reorder", "insert-past-head"])
async def test_tampering_is_detected_at_the_first_bad_event(database: Database, monkeypatch: pytest.MonkeyPatch,
                                                            statement: str, first_bad_id: int) -> None:
    monkeypatch.setattr(audit_module, "VERIFY_BATCH", 3)  # the damage sits across batch boundaries
    await append_many(database, 8)
    if database.engine.dialect.name == "sqlite":
        statement = statement.replace("time + INTERVAL '1 second'", "'2001-01-01 00:00:00.000000'")
    await tamper(database, statement)
    result = await database.audit.verify()
    assert not result.ok
    assert result.first_bad_id == first_bad_id, result.message


async def test_rehashing_one_event_breaks_the_link_to_the_next(database: Database) -> None:
    await append_many(database, 5)
    await tamper(database, "UPDATE audit_events SET hash = '" + "f" * 64 + "' WHERE id = 2")
    assert (await database.audit.verify()).first_bad_id == 2
    await tamper(database, "UPDATE audit_events SET prev_hash = '" + "f" * 64 + "' WHERE id = 3")
    # Event 2 is still broken (its hash does not match its content); it is reported first.
    assert (await database.audit.verify()).first_bad_id == 2


async def test_postgresql_trigger_rejects_update_and_delete(database: Database) -> None:
    await append_many(database, 2)
    if database.engine.dialect.name != "postgresql":
        # SQLite has no roles to protect against; append-only is the repository's API.
        assert not hasattr(database.audit, "update") and not hasattr(database.audit, "delete")
        return
    for statement in ("UPDATE audit_events SET actor = 'x' WHERE id = 1", "DELETE FROM audit_events WHERE id = 2",
                      "TRUNCATE audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with database.engine.begin() as conn:
                await conn.execute(sa.text(statement))
    assert (await database.audit.verify()).ok


async def test_an_edited_page_token_is_rejected(database: Database) -> None:
    await append_many(database, 3)
    token = (await database.audit.list_page(AuditFilter(), 1, "")).next_page_token
    body, mac = token.split(".")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    edited = base64.urlsafe_b64encode(raw.replace('"i":1', '"i":2').encode()).decode().rstrip("=") + "." + mac
    assert edited != token
    with pytest.raises(ApiError) as caught:
        await database.audit.list_page(AuditFilter(), 1, edited)
    assert caught.value.field_violations[0].description == "the token was altered or issued by another deployment"
    assert [e.id for e in (await database.audit.list_page(AuditFilter(), 1, token)).items] == [2]


@pytest.mark.parametrize("hostile", ["nul\x00byte", "lone\ud800surrogate"])
async def test_unstorable_text_is_cleaned_and_still_chained(database: Database, hostile: str) -> None:
    event = await database.audit.append(draft(1, actor=hostile, resource=hostile, details={hostile: [hostile]}))
    assert "\ufffd" in event.actor and "\ufffd" in event.resource
    [(key, value)] = event.details.items()
    assert "\ufffd" in key and "\ufffd" in value[0]
    assert (await database.audit.list_page(AuditFilter(), 0, "")).items == [event]
    assert (await database.audit.list_page(AuditFilter(actor=hostile), 0, "")).items == []
    assert [e async for e in database.audit.stream(AuditFilter(resource=hostile))] == []
    assert (await database.audit.verify()).ok
