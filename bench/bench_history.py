#!/usr/bin/env python3
"""Audit and operation history at scale: list pages, time ranges, export, verify, resync.

One command seeds (bench/seed_history.py: COPY on PostgreSQL, executemany on SQLite; an
already seeded database is reused) and then prints, for every query:

- ``sql``: the bare SQL, i.e. the very statement and parameters the repository sends
  (captured from SQLAlchemy), replayed on a plain driver connection (asyncpg / sqlite3):
  p50 of ``--repeat`` runs;
- ``repo``: ``list_page`` through the repository (SQLAlchemy, rows to domain objects,
  page token), ``rest``: that plus the REST body (``wire`` dicts, JSON encoded), ``grpc``:
  that plus the gRPC response (``convert``, serialized). Not through the gateway's
  sockets: auth, the call's own audit record and the transport are the create/watch
  benches' subject and cost the same for every call;
- the ratio rest/sql and grpc/sql, and the plan: EXPLAIN (ANALYZE, BUFFERS) on
  PostgreSQL, EXPLAIN QUERY PLAN on SQLite.

Then: export rows/s (the repository's stream, and stream + NDJSON lines) against COPY
(PostgreSQL) or a bare sqlite3 fetch; verify events/s; the reconciler's unfinished query.

PostgreSQL is a server of its own started from the machine's binaries (the tests'
helpers) in ``--pg-dir``, kept between runs with its data (delete the directory to start
over); SQLite is the file ``--sqlite-path``.

    .venv/bin/python bench/bench_history.py [--backend postgresql|sqlite|both] [--events N] [--operations N]
        [--repeat 30] [--export-rows N] [--skip-verify] [--no-plans] [--seed-only] [--sections LIST] [--pg-dir DIR]
        [--sqlite-path FILE]
        [--database-url URL (an existing PostgreSQL or SQLite database instead)]

Defaults (1M events, 100k operations) take a few minutes; the issue's scale is
``--events 10000000 --operations 1000000`` on PostgreSQL (about 25 minutes to seed) and
``--backend sqlite --events 1000000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import seed_history  # noqa: E402
from service.api.grpc import convert  # noqa: E402
from service.api.rest import wire  # noqa: E402
from service.core.domain import AuditFilter, AuditOutcome, OperationFilter, OperationState, OperationType  # noqa: E402
from service.store.db import Database  # noqa: E402
from service.store.models import audit_events, operations  # noqa: E402

# ---------------------------------------------------------------- PostgreSQL server

def start_postgres(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    from tests.support import postgres as pg  # the tests' server helpers (binaries, user, death signal)
    bin_dir, account = pg._bin_dir(), pg._server_account()
    data = directory / "data"
    sockets = directory / "sock"
    if not (data / "PG_VERSION").exists():
        directory.mkdir(parents=True, exist_ok=True)
        sockets.mkdir(exist_ok=True)
        if account:
            for path in (directory, sockets):
                os.chown(path, account["user"], account["group"])
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
                        "--encoding=UTF8", "--locale=C"], check=True, capture_output=True, cwd=directory, **account)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{sockets}'\n"
                       "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
                       "shared_buffers = 1GB\nmax_wal_size = 8GB\n")
    port = pg._free_port()
    log = (directory / "server.log").open("ab")
    process = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)], cwd=directory,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=pg._die_with_parent, **account)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lines = (data / "postmaster.pid").read_text().splitlines() if (data / "postmaster.pid").exists() else []
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return process, port
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"PostgreSQL did not start; see {directory / 'server.log'}")


async def ensure_database(port: int, name: str) -> str:
    admin = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{name}"


# ---------------------------------------------------------------- measuring

def p50(samples: list[float]) -> float:
    return statistics.median(samples)


@dataclass
class Captured:
    statement: str
    parameters: Any


class Capture:
    """The statements an engine sends (what the bare SQL replays)."""

    def __init__(self, db: Database) -> None:
        self.seen: list[Captured] = []
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._on)

    def _on(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        self.seen.append(Captured(statement, parameters))

    def last_select(self, table: str) -> Captured:
        for c in reversed(self.seen):
            if c.statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in c.statement:
                return c
        raise RuntimeError("no statement captured")


class Bare:
    """The same statement on a plain driver connection."""

    def __init__(self, url: sa.URL) -> None:
        self.url = url
        self.pg: asyncpg.Connection | None = None
        self.lite: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self.url.get_backend_name() == "postgresql":
            self.pg = await asyncpg.connect(host=self.url.host, port=self.url.port, user=self.url.username,
                                            database=self.url.database)
        else:
            self.lite = sqlite3.connect(str(self.url.database))

    async def close(self) -> None:
        if self.pg is not None:
            await self.pg.close()
        if self.lite is not None:
            self.lite.close()

    async def run(self, c: Captured) -> int:
        if self.pg is not None:
            return len(await self.pg.fetch(c.statement, *c.parameters))
        assert self.lite is not None
        return len(self.lite.execute(c.statement, c.parameters).fetchall())

    async def plan(self, c: Captured) -> list[str]:
        if self.pg is not None:
            rows = await self.pg.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + c.statement,
                                       *c.parameters)
            return [r[0] for r in rows]
        assert self.lite is not None
        return [" ".join(str(x) for x in r[1:]) for r in
                self.lite.execute("EXPLAIN QUERY PLAN " + c.statement, c.parameters).fetchall()]


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


@dataclass
class Row:
    name: str
    rows: int
    sql: float
    repo: float
    rest: float
    grpc: float
    plan: list[str]


def print_row(r: Row, show_plan: bool) -> None:
    print(f"{r.name:<44} rows={r.rows:<4} sql={r.sql:7.3f}ms repo={r.repo:7.3f}ms rest={r.rest:7.3f}ms "
          f"grpc={r.grpc:7.3f}ms  rest/sql={r.rest / r.sql:5.2f}x grpc/sql={r.grpc / r.sql:5.2f}x", flush=True)
    if show_plan:
        for line in r.plan:
            print("      | " + line)


async def measure(name: str, db: Database, cap: Capture, bare: Bare, table: str, call: Callable[[], Awaitable[Any]],
                  encode_rest: Callable[[Any], Any], encode_grpc: Callable[[Any], Any], repeat: int) -> Row:
    cap.seen.clear()
    page = await call()
    stmt = cap.last_select(table)
    await bare.run(stmt)  # warm both
    plan = await bare.plan(stmt)

    async def rest() -> None:
        encode_rest(await call())

    async def grpc() -> None:
        encode_grpc(await call())

    sql_s, repo_s, rest_s, grpc_s = [], [], [], []
    for _ in range(2):  # interleaved halves: the machine's noise lands on all four alike
        sql_s += await timed(lambda: bare.run(stmt), repeat // 2)
        repo_s += await timed(call, repeat // 2)
        rest_s += await timed(rest, repeat // 2)
        grpc_s += await timed(grpc, repeat // 2)
    return Row(name, len(page.items), p50(sql_s), p50(repo_s), p50(rest_s), p50(grpc_s), plan)


def rest_audit(page: Any) -> bytes:
    return json.dumps({"items": [wire.audit_event(e) for e in page.items], "nextPageToken": page.next_page_token},
                      ensure_ascii=False, separators=(",", ":")).encode()


def grpc_audit(page: Any) -> bytes:
    data: bytes = convert.audit_events_page(page).SerializeToString()
    return data


def rest_ops(page: Any) -> bytes:
    return json.dumps({"operations": [wire.operation(o) for o in page.items],
                       "nextPageToken": page.next_page_token}, ensure_ascii=False, separators=(",", ":")).encode()


def grpc_ops(page: Any) -> bytes:
    data: bytes = convert.operations_page(page).SerializeToString()
    return data


# ---------------------------------------------------------------- the cases

async def audit_cases(db: Database, n_events: int) -> list[tuple[str, AuditFilter, int]]:
    async with db.engine.connect() as conn:
        first, last = (await conn.execute(sa.select(sa.func.min(audit_events.c.time),
                                                    sa.func.max(audit_events.c.time)))).one()
    span = last - first
    day = span / max(1.0, span.total_seconds() / 86400)
    deep = int(n_events * 0.9)
    middle = first + span / 2
    cases = [("all", AuditFilter(), 0), ("all deep", AuditFilter(), deep)]
    for label, flt in (("actor busy", AuditFilter(actor="user-3")), ("actor rare", AuditFilter(actor="auditor")),
                       ("namespace", AuditFilter(namespace="ns-17")),
                       ("namespace rare", AuditFilter(namespace="ns-rare")),
                       ("resource prefix narrow", AuditFilter(resource="vm-snapshots/item-123")),
                       ("resource prefix broad", AuditFilter(resource="disk-snapshots/")),
                       ("action", AuditFilter(action="RestoreDisk")),
                       ("outcome DENIED", AuditFilter(outcome=AuditOutcome.DENIED))):
        cases += [(label, flt, 0), (label + " deep", flt, deep)]
    window = AuditFilter(since=middle, until=middle + day)
    cases += [
        ("since last day", AuditFilter(since=last - day), 0),
        ("one-day window (middle)", window, 0),
        ("one-day window deep", window, 0),  # position filled in below
        ("until first day", AuditFilter(until=first + day), 0),
        ("since 10% in (90% of the log)", AuditFilter(since=first + span / 10), deep),
        ("actor + one-day window", AuditFilter(actor="user-3", since=middle, until=middle + day), 0),
        ("namespace + since last day", AuditFilter(namespace="ns-17", since=last - day), 0),
    ]
    return cases


async def run_audit(db: Database, cap: Capture, bare: Bare, n_events: int, repeat: int, show_plan: bool) -> None:
    print("\n== audit list (page size 100) ==", flush=True)
    time_order = getattr(db.audit, "_time_order", None)
    if time_order is not None:  # the background check a gateway runs once at its first time-range query
        t0 = time.perf_counter()
        await time_order.checked()
        print(f"(time order check of the whole log, in the background in a gateway: "
              f"{time.perf_counter() - t0:.1f}s)", flush=True)
    for label, flt, after in await audit_cases(db, n_events):
        token = ""
        if label == "one-day window deep":
            first_page = await db.audit.list_page(flt, 100, "")
            middle_page = first_page
            for _ in range(20):  # 2,000 rows into the window
                if not middle_page.next_page_token:
                    break
                middle_page = await db.audit.list_page(flt, 100, middle_page.next_page_token)
            token = middle_page.next_page_token
        elif after:
            token = db.page_tokens.seal("audit", asdict(flt), {"i": after})

        async def call(flt: AuditFilter = flt, token: str = token) -> Any:
            return await db.audit.list_page(flt, 100, token)

        print_row(await measure(label, db, cap, bare, "audit_events", call, rest_audit, grpc_audit, repeat), show_plan)


async def run_operations(db: Database, cap: Capture, bare: Bare, n_ops: int, repeat: int, show_plan: bool) -> None:
    print("\n== operations list (page size 100, newest first) ==", flush=True)
    async with db.engine.connect() as conn:
        row = (await conn.execute(sa.select(operations.c.create_time, operations.c.id)
                                  .where(operations.c.id == f"op-{max(1, n_ops // 10):09d}"))).one()
    for label, flt in (("all", OperationFilter()), ("namespace", OperationFilter(namespace="ns-17")),
                       ("type", OperationFilter(type=OperationType.RESTORE_DISK)),
                       ("state FAILED", OperationFilter(state=OperationState.FAILED)),
                       ("actor", OperationFilter(actor="user-3")), ("actor rare", OperationFilter(actor="auditor")),
                       ("target", OperationFilter(target_name="disk-123"))):
        for deep in (False, True):
            token = db.page_tokens.seal("operations", asdict(flt), {"t": row.create_time.isoformat(), "i": row.id}) \
                if deep else ""

            async def call(flt: OperationFilter = flt, token: str = token) -> Any:
                return await db.operations.list_page(flt, 100, token)

            print_row(await measure(label + (" deep" if deep else ""), db, cap, bare, "operations", call, rest_ops,
                                    grpc_ops, repeat), show_plan)
    print("\n== reconciler resync: unfinished operations ==", flush=True)
    cap.seen.clear()
    found = await db.operations.unfinished()
    stmt = cap.last_select("operations")
    await bare.run(stmt)
    sql_s = await timed(lambda: bare.run(stmt), repeat)
    api_s = await timed(db.operations.unfinished, repeat)
    print(f"unfinished ({len(found)} rows): sql={p50(sql_s):.3f}ms repo={p50(api_s):.3f}ms", flush=True)
    for line in await bare.plan(stmt):
        print("      | " + line)
    # The query as it was (NOT IN the terminal states), for the before figure.
    old = "SELECT * FROM operations WHERE state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED') ORDER BY create_time, id"
    old_stmt = Captured(old, ())
    old_s = await timed(lambda: bare.run(old_stmt), max(3, repeat // 5))
    print(f"unfinished as before (state NOT IN terminal): sql={p50(old_s):.3f}ms", flush=True)


async def run_old_statements(db: Database, bare: Bare, repeat: int) -> None:
    """The statements as the store sent them before (same data, same run): the before figures."""
    print("\n== before: the old statements, bare SQL ==", flush=True)
    async with db.engine.connect() as conn:
        first, last = (await conn.execute(sa.select(sa.func.min(audit_events.c.time),
                                                    sa.func.max(audit_events.c.time)))).one()
    span = last - first
    day = span / max(1.0, span.total_seconds() / 86400)
    middle = first + span / 2
    lite = bare.lite is not None

    def t(value: Any) -> Any:
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds") if lite else value

    def q(sql: str) -> str:
        for n in range(9, 0, -1):
            sql = sql.replace(f"${n}", "?") if lite else sql
        return sql

    cases = [
        ("since last day (ORDER BY id past the time index)",
         "SELECT * FROM audit_events WHERE time >= $1 AND id > 0 ORDER BY id LIMIT 101", (t(last - day),)),
        ("one-day window (middle)",
         "SELECT * FROM audit_events WHERE time >= $1 AND time < $2 AND id > 0 ORDER BY id LIMIT 101",
         (t(middle), t(middle + day))),
        ("resource prefix narrow (LIKE ... ESCAPE)",
         "SELECT * FROM audit_events WHERE resource LIKE $1 ESCAPE '/' AND id > 0 ORDER BY id LIMIT 101",
         ("vm-snapshots//item-123%",)),  # SQLAlchemy's autoescape: "/" escapes, "//" is a "/"
        ("operations deep (OR keyset)",
         "SELECT * FROM operations WHERE create_time < $1 OR (create_time = $1 AND id < $2) "
         "ORDER BY create_time DESC, id DESC LIMIT 101", (t(middle), "op-000000001")),
    ]
    for label, sql, params in cases:
        if lite and "OR (create_time" in sql:
            params = (params[0], params[0], params[1])  # "?" placeholders are positional: $1 twice
        stmt = Captured(q(sql), params)
        await bare.run(stmt)
        samples = await timed(lambda stmt=stmt: bare.run(stmt), max(3, repeat // 5))
        plan = await bare.plan(stmt)
        print(f"{label:<52} sql={p50(samples):9.3f}ms  plan: {' / '.join(line.strip() for line in plan[:3])}",
              flush=True)


async def run_export(db: Database, bare: Bare, rows: int) -> None:
    print(f"\n== export (first {rows:,} rows of the whole log) ==", flush=True)
    for _ in range(2):
        t0 = time.perf_counter()
        count = 0
        async for _event in db.audit.stream(AuditFilter()):
            count += 1
            if count >= rows:
                break
        repo_rate = count / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        count = 0
        size = 0
        async for ev in db.audit.stream(AuditFilter()):
            size += len(json.dumps(wire.audit_event(ev), ensure_ascii=False, separators=(",", ":")))
            count += 1
            if count >= rows:
                break
        ndjson_rate = count / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        if bare.pg is not None:
            async def sink(chunk: bytes) -> None:
                pass  # keep nothing: the rate of producing and moving the rows

            await bare.pg.copy_from_query(f"SELECT * FROM audit_events WHERE id <= {rows} ORDER BY id", output=sink)
            baseline = "COPY TO STDOUT"
        else:
            assert bare.lite is not None
            cursor = bare.lite.execute(f"SELECT * FROM audit_events WHERE id <= {rows} ORDER BY id")
            while cursor.fetchmany(5000):
                pass
            baseline = "bare sqlite3 fetch"
        base_rate = rows / (time.perf_counter() - t0)
        print(f"export: repository stream {repo_rate:,.0f} rows/s, + NDJSON lines {ndjson_rate:,.0f} rows/s; "
              f"{baseline} {base_rate:,.0f} rows/s", flush=True)


async def run_verify(db: Database) -> None:
    print("\n== verify (whole chain) ==", flush=True)
    for _ in range(2):
        reports: list[float] = []
        t0 = time.perf_counter()

        async def progress(checked: int, total: int, reports: list[float] = reports, t0: float = t0) -> None:
            reports.append(time.perf_counter() - t0)

        try:
            result = await db.audit.verify(progress)  # type: ignore[call-arg]
        except TypeError:  # a gateway before progress reports (the before figures)
            result = await db.audit.verify()
        took = time.perf_counter() - t0
        gaps = [b - a for a, b in zip([0.0, *reports], reports, strict=False)]
        print(f"verify: ok={result.ok} checked={result.checked:,} in {took:.1f}s = {result.checked / took:,.0f} "
              f"events/s; {len(reports)} progress reports, longest gap {max(gaps, default=0):.2f}s", flush=True)


async def bench(url: str, events: int, ops: int, args: argparse.Namespace) -> None:
    t0 = time.monotonic()
    await seed_history.seed(url, events, ops, args.days)
    print(f"seeded/reused in {time.monotonic() - t0:.1f}s", flush=True)
    if args.seed_only:
        return
    db = await Database.connect(url)
    cap = Capture(db)
    bare = Bare(db.engine.url)
    await bare.open()
    try:
        print(f"\n#### {db.engine.dialect.name}: {events:,} audit events, {ops:,} operations", flush=True)
        sections = set(args.sections.split(","))
        if "audit" in sections:
            await run_audit(db, cap, bare, events, args.repeat, not args.no_plans)
        if "operations" in sections:
            await run_operations(db, cap, bare, ops, args.repeat, not args.no_plans)
        if "before" in sections:
            await run_old_statements(db, bare, args.repeat)
        if "export" in sections:
            await run_export(db, bare, min(args.export_rows, events))
        if "verify" in sections and not args.skip_verify:
            await run_verify(db)
    finally:
        await bare.close()
        await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument("--sections", default="audit,operations,before,export,verify",
                        help="comma-separated subset of audit,operations,before,export,verify")
    parser.add_argument("--no-plans", action="store_true")
    parser.add_argument("--seed-only", action="store_true", help="seed (or check) the database, measure nothing")
    parser.add_argument("--pg-dir", type=Path, default=Path("/var/tmp/dvp-bench-history-pg"))
    parser.add_argument("--sqlite-path", type=Path, default=Path("/var/tmp/dvp-bench-history.db"))
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    if args.database_url:
        asyncio.run(bench(args.database_url, args.events, args.operations, args))
        return 0
    if args.backend in ("postgresql", "both"):
        process, port = start_postgres(args.pg_dir)
        try:
            url = asyncio.run(ensure_database(port, f"history_{args.events}_{args.operations}"))
            asyncio.run(bench(url, args.events, args.operations, args))
        finally:
            process.send_signal(signal.SIGINT)  # fast shutdown, data kept for the next run
            process.wait(timeout=120)
    if args.backend in ("sqlite", "both"):
        path = args.sqlite_path.with_name(f"{args.sqlite_path.stem}-{args.events}-{args.operations}.db")
        asyncio.run(bench(f"sqlite+aiosqlite:///{path}", args.events, args.operations, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
