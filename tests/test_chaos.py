"""kill -9 under load, bounded: bench/chaos.py's run (the embedded cluster and the gateway
as processes, clients on both doors retrying with the same request ids, the gateway
killed 4 times at random moments and restarted on the same database and cluster), on
SQLite and on PostgreSQL. Every "must be zero" figure must be zero: no acknowledged
operation lost, no request id answered with two operations, no orphan custom resource,
no operation without its audit event, nothing unfinished after the settle, no version
regression or fork, an intact audit chain. A failure prints the whole figures table
with the offending operation ids; the processes' logs stay in the test's tmp_path."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from bench.chaos import ChaosConfig, run_chaos
from tests.support.postgres import PostgresServer
from tests.support.processes import fresh_postgres_database

KILLS = 4


@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_kill_9_under_load_loses_nothing(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        database_url = ""
        if backend == "postgresql":
            server: PostgresServer = request.getfixturevalue("postgres_server")
            database_url = await stack.enter_async_context(fresh_postgres_database(server, "chaos"))
        report = await run_chaos(ChaosConfig(
            kills=KILLS, clients=6, min_delay=0.2, max_delay=2.0, database_url=database_url, reconcile_interval=0.3,
            step_delay=0.05, settle_timeout=30.0, abandon=0.5, workdir=tmp_path, quiet=True))
    print(report.table())
    if not report.ok:
        pytest.fail(f"{backend}: {', '.join(report.figures.failures())} not zero after {KILLS} kills "
                    f"(logs in {tmp_path}){report.table()}", pytrace=False)
