"""Helpers for the tests that run the gateway as real processes (tests/test_chaos.py,
tests/test_replicas.py): a fresh PostgreSQL database of its own, the gateway's optional
flags, and which replica holds the leader Lease."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import subprocess
from collections.abc import AsyncIterator, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bench.processes import BIN, REPO, GatewayProcess
from tests.support.postgres import PostgresServer

_numbers = itertools.count(1)


async def _autocommit(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def fresh_postgres_database(server: PostgresServer, prefix: str = "procs") -> AsyncIterator[str]:
    """An empty database on ``server`` (the gateway processes migrate it), dropped after:
    its URL."""
    name = f"{prefix}_{os.getpid()}_{next(_numbers)}"
    await _autocommit(server.url(), f'CREATE DATABASE "{name}"')
    try:
        yield server.url(name)
    finally:
        await _autocommit(server.url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@functools.cache
def serve_flags() -> frozenset[str]:
    """The flags ``dvp-gateway serve`` takes (read from its --help)."""
    done = subprocess.run([str(BIN / "dvp-gateway"), "serve", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    return frozenset(re.findall(r"--[a-z][a-z0-9-]*", done.stdout))


def became_leader(gateway: GatewayProcess, incarnation: int | None = None) -> bool:
    """The gateway's log (``--log-level INFO``) says it took the reconciling Lease."""
    path = gateway.err_path(incarnation)
    return path.exists() and "became leader of lease" in path.read_text(errors="replace")


def leaders(gateways: Sequence[GatewayProcess]) -> list[GatewayProcess]:
    return [g for g in gateways if g.alive and became_leader(g)]
