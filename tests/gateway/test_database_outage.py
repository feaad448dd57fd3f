"""A database that is locked past its timeout, or down, answers 503 with Retry-After on
every call (never 500), on SQLite and on PostgreSQL; the gateway recovers by itself."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import make_url

from service.store import engine as store_engine
from service.store.db import migrate
from tests.support.gateway import GatewayServer, running_gateway
from tests.support.postgres import PostgresServer
from tests.support.tcp_proxy import TcpProxy

DISK = "linux-vm-root"
LOCK_TIMEOUT_MS = 400


@pytest.fixture(autouse=True)
def short_lock_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    # The production waits are 10 s; the behaviour past them is what is tested.
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_MS", LOCK_TIMEOUT_MS)
    monkeypatch.setattr(store_engine, "POSTGRES_LOCK_TIMEOUT_MS", LOCK_TIMEOUT_MS)


async def _calls(server: GatewayServer, session: aiohttp.ClientSession,
                 *, audit_log: bool = True) -> list[tuple[str, int, dict[str, Any]]]:
    """One of each kind of call: a create (write-ahead), reads, the audit log."""
    base = f"{server.rest_url}/v1"
    requests: list[tuple[str, str, Any]] = [
        ("POST", f"{base}/namespaces/demo/disk-snapshots",
         {"name": f"s-{uuid.uuid4().hex[:8]}", "virtualDiskName": DISK}),
        ("GET", f"{base}/operations?namespace=demo", None),
        ("GET", f"{base}/operations/{uuid.uuid4()}", None),
        *([("GET", f"{base}/audit/events", None)] if audit_log else []),
    ]
    answers = []
    for method, url, body in requests:
        async with session.request(method, url, json=body, headers=server.auth()) as response:
            payload = await response.json(content_type=None) if response.status != 200 else {}
            answers.append((f"{method} {url}", response.status, {"retry": response.headers.get("Retry-After"),
                                                                   **(payload or {})}))
    return answers


def _assert_unavailable(answers: list[tuple[str, int, dict[str, Any]]],
                        reasons: tuple[str, ...] = ("DATABASE_UNAVAILABLE", "AUDIT_UNAVAILABLE")) -> None:
    for call, status, body in answers:
        assert status == 503, (call, status, body)
        assert body["retry"] and int(body["retry"]) >= 1, (call, body)
        assert body["code"] == "UNAVAILABLE" and body["reason"] in reasons, (call, body)


async def _assert_recovered(server: GatewayServer, session: aiohttp.ClientSession) -> None:
    for _ in range(50):
        answers = await _calls(server, session)
        if all(status < 500 for _, status, _ in answers):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"still failing after the database came back: {answers}")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_locked_past_the_busy_timeout_is_503(embedded_cluster: Any, database_url: str,
                                                          tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with running_gateway(embedded_cluster, database_url, tmp_path) as server:
        path = make_url(database_url).database
        assert path
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        try:
            _assert_unavailable(await _calls(server, session))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await _assert_recovered(server, session)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_lock_held_past_lock_timeout_is_503(embedded_cluster: Any, database_url: str,
                                                             tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with running_gateway(embedded_cluster, database_url, tmp_path) as server:
        url = make_url(database_url)
        holder = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database=url.database)
        transaction = holder.transaction()
        await transaction.start()
        # The operations table only: the audit log still works, so the answer must be the
        # database's own UNAVAILABLE, recorded as such, not an INTERNAL error.
        await holder.execute("LOCK TABLE operations IN ACCESS EXCLUSIVE MODE")
        try:
            _assert_unavailable(await _calls(server, session, audit_log=False), ("DATABASE_UNAVAILABLE",))
        finally:
            await transaction.rollback()
            await holder.close()
        await _assert_recovered(server, session)


async def test_postgresql_down_is_503_and_the_gateway_reconnects(
        embedded_cluster: Any, postgres_server: PostgresServer, tmp_path: Path,
        session: aiohttp.ClientSession) -> None:
    name = f"outage_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(host=postgres_server.host, port=postgres_server.port, user=postgres_server.user,
                                  database="postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    proxy = TcpProxy(postgres_server.host, postgres_server.port)
    await proxy.start()
    try:
        database_url = postgres_server.url(name).replace(f":{postgres_server.port}/", f":{proxy.port}/")
        await migrate(database_url)
        async with running_gateway(embedded_cluster, database_url, tmp_path) as server:
            assert all(status < 500 for _, status, _ in await _calls(server, session))
            await proxy.cut()
            _assert_unavailable(await _calls(server, session))
            async with session.get(f"{server.rest_url}/readyz") as ready:
                assert ready.status == 503
            await proxy.start()
            await _assert_recovered(server, session)
    finally:
        await proxy.cut()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
