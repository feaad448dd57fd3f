"""Async engines for the two supported backends.

SQLite (aiosqlite) is the embedded default, PostgreSQL (asyncpg) is production. Plain
``sqlite://`` / ``postgresql://`` URLs are accepted and pointed at the async drivers.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import URL, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

# Execution option asking SQLite for a writer transaction up front (BEGIN IMMEDIATE), so
# read-then-write sequences (the audit chain head, transition numbering) never interleave.
SQLITE_IMMEDIATE = "dvp_sqlite_immediate"

# How long a statement waits for a lock held by someone else (SQLite's busy timeout,
# PostgreSQL's lock_timeout) before the call answers UNAVAILABLE (store.failures).
SQLITE_BUSY_TIMEOUT_MS = 10_000
POSTGRES_LOCK_TIMEOUT_MS = 10_000

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def normalize_url(url: str) -> URL:
    """Parse ``url`` and switch it to the async driver; reject anything else."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError; never echo a URL with a password
        raise ValueError("database URL is malformed") from exc
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(f"unsupported database driver {parsed.drivername!r}: use sqlite:// or postgresql://")
    if driver == "sqlite+aiosqlite" and parsed.database in (None, "", ":memory:"):
        # Every pooled connection would get its own empty database.
        raise ValueError("in-memory SQLite is not supported: give the database a file path")
    return parsed.set(drivername=driver)


def safe_url(url: str | URL) -> str:
    """The URL for logs: password hidden."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _ensure_sqlite_dir(url: URL) -> None:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def _install_sqlite_pragmas(engine: Engine) -> None:
    # pysqlite's own transaction handling would defer BEGIN until the first write and
    # cannot do BEGIN IMMEDIATE; take control of it (the recipe from the SQLAlchemy docs).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(SQLITE_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(url: str, *, pooled: bool = True) -> AsyncEngine:
    """An async engine for ``url``; ``pooled=False`` for one-shot work such as migrations."""
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {"echo": False}
    if is_sqlite(parsed):
        _ensure_sqlite_dir(parsed)
        if not pooled:
            kwargs["poolclass"] = NullPool
        engine = create_async_engine(parsed, **kwargs)
        _install_sqlite_pragmas(engine.sync_engine)
        return engine
    if pooled:
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True, pool_recycle=1800, pool_timeout=30)
    else:
        kwargs["poolclass"] = NullPool
    kwargs["connect_args"] = {"timeout": 10, "command_timeout": 60,
                              "server_settings": {"lock_timeout": str(POSTGRES_LOCK_TIMEOUT_MS)}}
    return create_async_engine(parsed, **kwargs)


def sqlite_sync_engine(engine: AsyncEngine) -> Engine:
    """A blocking engine on ``engine``'s SQLite file, for one writer thread (group_commit):
    one connection, the same pragmas and BEGIN IMMEDIATE."""
    url = engine.url.set(drivername="sqlite")
    sync = sa.create_engine(url, pool_size=1, max_overflow=0, connect_args={"check_same_thread": False})
    _install_sqlite_pragmas(sync)
    return sync


async def writer(conn: AsyncConnection) -> AsyncConnection:
    """Mark ``conn`` so its next transaction takes SQLite's write lock immediately
    (a no-op on PostgreSQL, which serializes with row locks instead)."""
    return await conn.execution_options(**{SQLITE_IMMEDIATE: True})


_sqlite_write_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One writer transaction, committed on exit. On SQLite the writers of this process
    first queue on an asyncio lock: SQLite admits one writer at a time anyway, and leaving
    the queueing to its busy handler (which sleeps in steps of up to 100 ms) made the tail
    latency of concurrent creates many times the median, and could time out."""
    if engine.dialect.name != "sqlite":
        async with engine.connect() as conn:
            await writer(conn)
            async with conn.begin():
                yield conn
        return
    async with sqlite_write_lock(engine), engine.connect() as conn:
        await writer(conn)
        async with conn.begin():
            yield conn


@asynccontextmanager
async def sqlite_write_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """This process's turn at SQLite's one writer."""
    lock = _sqlite_write_locks.setdefault(engine.sync_engine, asyncio.Lock())
    try:
        # Queued writers wait no longer than SQLite itself would: behind a lock held
        # outside this process, each would otherwise add a busy timeout to the next.
        async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
            await lock.acquire()
    except TimeoutError:
        raise SqliteBusy("waited past the busy timeout for this process's SQLite writer") from None
    try:
        yield
    finally:
        lock.release()


class SqliteBusy(TimeoutError):
    """This process's writers queued past the busy timeout (store.failures: UNAVAILABLE)."""
