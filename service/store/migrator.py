"""Apply the alembic migrations in ``migrations/`` programmatically (to head).

Safe to call from several processes at once: PostgreSQL serializes them with a
transaction-level advisory lock, SQLite with its write lock (BEGIN IMMEDIATE). The
migrations run inside that one transaction, so a second process sees either nothing or
the finished schema. Within one process, calls are also serialized per event loop:
alembic keeps its migration context in module globals.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from service.store.engine import create_engine, is_sqlite, normalize_url, writer

MIGRATIONS_ENV = "DVP_GATEWAY_MIGRATIONS_DIR"
# Any fixed 64-bit number, the same in every replica.
_ADVISORY_LOCK_KEY = 0x64_76_70_67_77_6D_69_67  # "dvpgwmig"
_in_process_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def migrations_dir() -> Path:
    """``migrations/`` next to the ``service`` package (repo root or installed tree), or
    the directory named by $DVP_GATEWAY_MIGRATIONS_DIR."""
    candidates = []
    if override := os.environ.get(MIGRATIONS_ENV):
        candidates.append(Path(override))
    candidates.append(Path(__file__).resolve().parents[2] / "migrations")
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError(f"alembic migrations not found (looked in {', '.join(map(str, candidates))}); "
                       f"set {MIGRATIONS_ENV}")


def alembic_config() -> Config:
    """A Config for running alembic commands in-process on a connection passed in
    ``config.attributes["connection"]`` (the URL, with its password, stays out of it)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def _upgrade(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(url: str) -> None:
    """Bring the database at ``url`` to the latest revision; a no-op when it is there."""
    lock = _in_process_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        await _migrate_locked(url)


async def _migrate_locked(url: str) -> None:
    config = alembic_config()
    engine = create_engine(url, pooled=False)
    try:
        async with engine.connect() as conn:
            await writer(conn)
            async with conn.begin():
                if not is_sqlite(normalize_url(url)):
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
                await conn.run_sync(_upgrade, config)
    finally:
        await engine.dispose()
