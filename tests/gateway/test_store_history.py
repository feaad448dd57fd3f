"""The history read side against real SQLite and PostgreSQL: the index-bound queries give
exactly what a naive filter gives (time ranges over times that step back, prefixes with
LIKE's metacharacters, keyset pages), export equals list, verify reports progress, and the
fast hash and JSON paths keep the chain's exact bytes."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.domain import (
    AuditEvent,
    AuditFilter,
    AuditOutcome,
    Operation,
    OperationFilter,
    OperationState,
    OperationType,
    Page,
    ResourceRef,
)
from service.store import audit as audit_module
from service.store import audit_query, audit_read
from service.store.audit_chain import GENESIS_HASH, canonical_json, compute_hash
from service.store.db import Database
from service.store.models import UNFINISHED_PREDICATE, audit_events, operations
from service.store.operation_rows import to_row

pytestmark = pytest.mark.timeout(120)

BASE = datetime(2026, 1, 1, tzinfo=UTC)
ACTORS = ("alice", "bob", "carol")
NAMESPACES = ("ns1", "ns2", "")
# Prefix material: LIKE's metacharacters, the escape character, non-ASCII and the top code point.
RESOURCE_CHARS = ("a", "b", "%", "_", "\\", "/", "é", "\U0010ffff", "\ud7ff", "\ue000")
ACTIONS = ("Create", "Delete", "Get")
OUTCOMES = tuple(AuditOutcome)


def _resource(rng: random.Random) -> str:
    return "".join(rng.choice(RESOURCE_CHARS) for _ in range(rng.randint(0, 4)))


def _times(rng: random.Random, count: int) -> list[datetime]:
    """Mostly increasing, with steps back (a clock that stepped back, a replica behind),
    repeats, and one event far in the past."""
    times, now = [], BASE
    for _ in range(count):
        roll = rng.random()
        if roll < 0.15:
            now -= timedelta(seconds=rng.randint(1, 300))
        elif roll < 0.25:
            pass  # the same instant as the one before
        else:
            now += timedelta(seconds=rng.randint(1, 120), microseconds=rng.randint(0, 999_999))
        times.append(now)
    times[count // 3] = BASE - timedelta(days=30)
    return times


async def _insert_events(database: Database, rows: list[dict[str, Any]]) -> None:
    async with database.engine.begin() as conn:
        await conn.execute(audit_events.insert(), rows)


def _event_rows(seed: int, count: int, first_id: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for offset, time in enumerate(_times(rng, count)):
        rows.append({
            "id": first_id + offset, "time": time, "actor": rng.choice(ACTORS), "action": rng.choice(ACTIONS),
            "outcome": rng.choice(OUTCOMES).value, "namespace": rng.choice(NAMESPACES), "resource": _resource(rng),
            "protocol": "grpc", "request_id": "", "operation_id": "", "code": "", "reason": "", "details": {},
            "prev_hash": GENESIS_HASH, "hash": GENESIS_HASH,  # listing does not check the chain
        })
    return rows


def _naive(rows: list[dict[str, Any]], flt: AuditFilter) -> list[int]:
    def keep(r: dict[str, Any]) -> bool:
        return ((flt.actor is None or r["actor"] == flt.actor)
                and (flt.namespace is None or r["namespace"] == flt.namespace)
                and (not flt.resource or r["resource"].startswith(flt.resource))
                and (flt.action is None or r["action"] == flt.action)
                and (flt.outcome is None or r["outcome"] == flt.outcome.value)
                and (flt.since is None or r["time"] >= flt.since)
                and (flt.until is None or r["time"] < flt.until))
    return sorted(r["id"] for r in rows if keep(r))


F = TypeVar("F")
P = TypeVar("P")


async def _every_page(list_page: Callable[[F, int, str], Awaitable[Page[P]]], flt: F, size: int) -> list[P]:
    """Every item of every page, following the tokens."""
    items: list[P] = []
    token = ""
    while True:
        page = await list_page(flt, size, token)
        items += page.items
        token = page.next_page_token
        if not token:
            return items


async def _all_pages(database: Database, flt: AuditFilter, size: int) -> list[int]:
    return [e.id for e in await _every_page(database.audit.list_page, flt, size)]


def _instants(rows: list[dict[str, Any]]) -> st.SearchStrategy[datetime | None]:
    # Exact row times (boundaries), times between them, and outside the whole range.
    exact = [r["time"] for r in rows]
    return st.one_of(st.none(), st.sampled_from(exact),
                     st.integers(-40 * 86400, 86400).map(lambda s: BASE + timedelta(seconds=s, microseconds=7)))


def _filters(rows: list[dict[str, Any]]) -> st.SearchStrategy[AuditFilter]:
    return st.builds(
        AuditFilter,
        actor=st.one_of(st.none(), st.sampled_from(ACTORS)),
        namespace=st.one_of(st.none(), st.sampled_from(NAMESPACES)),
        resource=st.one_of(st.none(), st.text(st.sampled_from(RESOURCE_CHARS), min_size=1, max_size=3)),
        action=st.one_of(st.none(), st.sampled_from(ACTIONS)),
        outcome=st.one_of(st.none(), st.sampled_from(OUTCOMES)),
        since=_instants(rows), until=_instants(rows))


ROWS = _event_rows(seed=7, count=200)
PROPERTY = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


async def _insert_once(database: Database, rows: list[dict[str, Any]], table: sa.Table) -> None:
    """The examples share the test's database: the rows go in with the first one."""
    async with database.engine.begin() as conn:
        if not (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one():
            await conn.execute(table.insert(), rows)
    if table is audit_events:
        await _checked(database)


async def _checked(database: Database) -> None:
    """Wait for the repository's time order check (it runs in the background)."""
    await database.audit._time_order.checked()  # type: ignore[attr-defined]


@PROPERTY
@given(flt=_filters(ROWS), size=st.sampled_from([1, 7, 50, 1000]))
async def test_list_equals_a_naive_filter_even_where_time_steps_back(database: Database, flt: AuditFilter,
                                                                     size: int) -> None:
    await _insert_once(database, ROWS, audit_events)
    expected = _naive(ROWS, flt)
    if size == 1 and len(expected) > 40:
        size = 13  # keep the example quick
    assert await _all_pages(database, flt, size) == expected, flt


async def test_time_bounds_stay_exact_for_steps_back_appended_after_the_last_check(database: Database) -> None:
    rows = _event_rows(seed=3, count=50)
    await _insert_events(database, rows)
    latest = max(r["time"] for r in rows)
    flt = AuditFilter(until=latest)
    assert await _all_pages(database, flt, 10) == _naive(rows, flt)  # before the first check: no bounds
    await _checked(database)
    assert await _all_pages(database, flt, 10) == _naive(rows, flt)
    # Appended after that check (the cache is fresh for REFRESH_SECONDS): one event from a
    # clock far behind, then one from a clock ahead.
    late = [{**rows[0], "id": 51, "time": BASE - timedelta(days=60), "resource": "late"},
            {**rows[0], "id": 52, "time": latest + timedelta(days=1), "resource": "ahead"}]
    await _insert_events(database, late)
    rows += late
    for flt in (AuditFilter(until=latest), AuditFilter(since=BASE - timedelta(days=61)),
                AuditFilter(since=BASE - timedelta(days=61), until=BASE - timedelta(days=59)),
                AuditFilter(since=latest)):
        assert await _all_pages(database, flt, 10) == _naive(rows, flt), flt


@pytest.mark.parametrize("prefix", ["%", "_", "\\", "a%", "a_b", "\\%", "%_\\", "\U0010ffff", "\ud7ff"])
async def test_resource_prefixes_with_like_metacharacters_are_literal(database: Database, prefix: str) -> None:
    names = ["%", "%x", "_", "_x", "ax", "a%x", "a_b", "aab", "\\", "\\%", "\\x", "%_\\", "%a\\", "\U0010ffff",
             "\U0010ffffz", "\ud7ff", "\ud7ffa", "\ue000", "b"]
    rows = [{**_event_rows(1, 1)[0], "id": i + 1, "time": BASE + timedelta(seconds=i), "resource": name}
            for i, name in enumerate(names)]
    await _insert_events(database, rows)
    flt = AuditFilter(resource=prefix)
    assert await _all_pages(database, flt, 5) == _naive(rows, flt)
    assert _naive(rows, flt)  # every prefix above matches something


def test_prefix_upper_bound() -> None:
    assert audit_query.prefix_upper_bound("ab") == "ac"
    assert audit_query.prefix_upper_bound("a\U0010ffff") == "b"
    assert audit_query.prefix_upper_bound("\U0010ffff") is None
    assert audit_query.prefix_upper_bound("\ud7ff") == "\ue000"


async def test_export_equals_the_list(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "STREAM_BATCH", 7)
    rows = _event_rows(seed=11, count=60)
    await _insert_events(database, rows)
    for flt in (AuditFilter(), AuditFilter(actor="bob"), AuditFilter(since=BASE + timedelta(minutes=20)),
                AuditFilter(resource="a", until=BASE + timedelta(hours=1))):
        exported = [e async for e in database.audit.stream(flt)]
        assert exported == await _every_page(database.audit.list_page, flt, 9)
        assert [e.id for e in exported] == _naive(rows, flt)


async def test_verify_reports_progress_per_batch(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "VERIFY_BATCH", 4)
    for i in range(10):
        await database.audit.append(_draft(i))
    reports: list[tuple[int, int]] = []

    async def progress(checked: int, total: int) -> None:
        reports.append((checked, total))

    result = await database.audit.verify(progress)
    assert (result.ok, result.checked) == (True, 10)
    assert reports == [(4, 10), (8, 10), (10, 10)]


def _draft(i: int) -> Any:
    from service.core.domain import AuditEventDraft
    return AuditEventDraft(actor="alice", action="Create", outcome=AuditOutcome.SUCCESS, namespace="ns",
                           resource=f"r/{i}", protocol="grpc", request_id=f"q{i}", operation_id="",
                           details={"i": i, "f": 0.1 * i, "s": "é\u2028\x00"})


# ---------------------------------------------------------------- fast paths, exact bytes

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(), lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(value=_json_values)
def test_load_json_reads_what_json_loads_reads(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False), canonical_json(value)):
        loaded = audit_read.load_json(text)
        assert loaded == json.loads(text)
        assert canonical_json(loaded) == canonical_json(json.loads(text))


def test_load_json_falls_back_where_orjson_refuses() -> None:
    for text in ('{"a": NaN}', '"\\ud800"', "123456789012345678901234567890", '{"a": 1, "a": 2}'):
        assert repr(audit_read.load_json(text)) == repr(json.loads(text))


# No floats: the documents the fast path hands to orjson (floats go to the json encoder).
_json_no_floats = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(details=st.dictionaries(st.text(max_size=5), _json_values | _json_no_floats, max_size=4),
       text=st.text(max_size=8),
       micros=st.integers(0, 10**12), event_id=st.integers(1, 2**62))
def test_the_fast_row_hash_is_compute_hash(details: dict[str, Any], text: str, micros: int, event_id: int) -> None:
    time = BASE + timedelta(microseconds=micros)
    fields = {"actor": text, "action": "a", "outcome": "SUCCESS", "namespace": text[::-1], "resource": "r",
              "protocol": "grpc", "request_id": "", "operation_id": text, "code": "", "reason": "\u2028",
              "details": details}
    prev = "ab" * 32
    row = [event_id, time, *fields.values(), prev, ""]
    assert audit_read.row_hash(row) == compute_hash(event_id, time, fields, prev)


def test_time_text_matches_strftime_for_every_year_form() -> None:
    for when in (datetime(1, 2, 3, 4, 5, 6, 7, tzinfo=UTC), datetime(999, 1, 1, tzinfo=UTC),
                 datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC),
                 datetime(2026, 11, 30, 1, 2, 3, 999999, tzinfo=UTC).astimezone(datetime.now().astimezone().tzinfo)):
        assert audit_read._time_text(when) == when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- operations

def _operation(i: int, rng: random.Random) -> dict[str, Any]:
    created = BASE + timedelta(seconds=rng.randint(0, 40))  # many share an instant
    op = Operation(
        id=f"op-{i:04d}", type=rng.choice(list(OperationType)), namespace=rng.choice(NAMESPACES[:2]),
        target=ResourceRef("v1", "VirtualDisk", rng.choice(["d1", "d2", "d_%"]), "ns1"),
        actor=rng.choice(ACTORS), request_hash="h", state=rng.choice(list(OperationState)),
        create_time=created, update_time=created)
    return to_row(op)


OPERATION_ROWS = [_operation(i, random.Random(i)) for i in range(120)]


@PROPERTY
@given(flt=st.builds(OperationFilter, namespace=st.one_of(st.none(), st.sampled_from(NAMESPACES[:2])),
                     type=st.one_of(st.none(), st.sampled_from(list(OperationType))),
                     state=st.one_of(st.none(), st.sampled_from(list(OperationState))),
                     actor=st.one_of(st.none(), st.sampled_from(ACTORS)),
                     target_name=st.one_of(st.none(), st.sampled_from(["d1", "d2", "d_%", "d"]))),
       size=st.sampled_from([1, 6, 500]))
async def test_operations_list_equals_a_naive_filter(database: Database, flt: OperationFilter, size: int) -> None:
    await _insert_once(database, OPERATION_ROWS, operations)
    wanted = {k: v.value if hasattr(v, "value") else v for k, v in asdict(flt).items() if v is not None}
    expected = sorted((r for r in OPERATION_ROWS if all(r[k] == v for k, v in wanted.items())),
                      key=lambda r: (r["create_time"], r["id"]), reverse=True)
    seen = [o.id for o in await _every_page(database.operations.list_page, flt, size)]
    assert seen == [r["id"] for r in expected], flt


def test_the_unfinished_predicate_names_exactly_the_non_terminal_states() -> None:
    listed = set(UNFINISHED_PREDICATE.split("(", 1)[1].rstrip(")").replace("'", "").replace(" ", "").split(","))
    assert listed == {s.value for s in OperationState if not s.terminal}


async def test_unfinished_reads_the_partial_index(database: Database) -> None:
    rng = random.Random(9)
    rows = [_operation(i, rng) for i in range(40)]
    async with database.engine.begin() as conn:
        await conn.execute(operations.insert(), rows)
    expected = sorted((r for r in rows if not OperationState(r["state"]).terminal),
                      key=lambda r: (r["create_time"], r["id"]))
    assert [o.id for o in await database.operations.unfinished()] == [r["id"] for r in expected]
    query = f"SELECT * FROM operations WHERE {UNFINISHED_PREDICATE} ORDER BY create_time, id"
    async with database.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            plan = " ".join(str(r) for r in (await conn.execute(sa.text("EXPLAIN QUERY PLAN " + query))).all())
        else:
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))  # a tiny table: force the choice
            plan = " ".join(str(r) for r in (await conn.execute(sa.text("EXPLAIN " + query))).all())
    # Either way, only the unfinished rows are read: the partial index (PostgreSQL; SQLite
    # once ANALYZE has run), or SQLite's two seeks into the state index without statistics.
    assert "ix_operations_unfinished" in plan or "SEARCH operations USING INDEX ix_operations_state_keyset" in plan


# ---------------------------------------------------------------- adapters' per-event conversion

@settings(max_examples=100, deadline=None)
@given(details=st.dictionaries(st.text(max_size=5), _json_values, max_size=4),
       micros=st.integers(-(10**15), 10**15))
def test_the_grpc_event_conversion_shortcuts_change_nothing(details: dict[str, Any], micros: int) -> None:
    from google.protobuf.struct_pb2 import Struct
    from google.protobuf.timestamp_pb2 import Timestamp

    from service.api.grpc import convert
    when = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    event = AuditEvent(1, when, "a", "b", AuditOutcome.SUCCESS, "n", "r", "grpc", "", "", "", "", details, "p", "h")
    msg = convert.audit_event(event)
    expected_time = Timestamp()
    expected_time.FromDatetime(when)
    assert msg.time == expected_time
    expected_details = Struct()
    expected_details.update(json.loads(json.dumps(details, default=str)))
    assert msg.details == expected_details


def test_grpc_event_details_that_are_not_json_still_convert() -> None:
    from service.api.grpc import convert
    event = AuditEvent(1, BASE, "a", "b", AuditOutcome.SUCCESS, "n", "r", "grpc", "", "", "", "",
                       {"when": BASE, 7: "int key"}, "p", "h")
    assert dict(convert.audit_event(event).details) == {"when": str(BASE), "7": "int key"}
