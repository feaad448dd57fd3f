"""Apply the alembic migrations in ``migrations/`` programmatically (to head).

Safe to call from several processes at once: PostgreSQL serializes them with a
transaction-level advisory lock, SQLite with its write lock (BEGIN IMMEDIATE). The
migrations run inside that one transaction, so a second process sees either nothing or
the finished schema. Within one process, calls are also serialized per event loop:
alembic keeps its migration context in module globals.

alembic (with mako and pygments: 11 MB of RSS) is imported only when there is something
to migrate: a database whose ``alembic_version`` already names the heads of
``migrations/versions`` (read from the files' ``revision``/``down_revision`` without
running them) is left as it is, which is every start but the first after an upgrade.
"""

from __future__ import annotations

import ast
import asyncio
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.engine import create_engine, is_sqlite, normalize_url, writer

if TYPE_CHECKING:
    from alembic.config import Config

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
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def _upgrade(connection: Connection) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def script_heads(versions: Path) -> frozenset[str] | None:
    """The head revisions of the migration scripts in ``versions``, read from their
    top-level ``revision`` and ``down_revision`` literals; None when a script does not
    have them in that form (then alembic itself decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted(versions.glob("*.py")):
        values: dict[str, object] = {}
        try:
            tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target, value = node.targets[0], node.value
                elif isinstance(node, ast.AnnAssign) and node.value is not None:
                    target, value = node.target, node.value
                else:
                    continue
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    values[target.id] = ast.literal_eval(value)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            return None
        revision, down = values.get("revision"), values.get("down_revision", ...)
        if not isinstance(revision, str) or down is ...:
            return None
        revisions.add(revision)
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, (tuple, list)) and all(isinstance(d, str) for d in down):
            parents.update(down)
        elif down is not None:
            return None
    heads = revisions - parents
    return frozenset(heads) if heads else None


async def _at_heads(conn: AsyncConnection, sqlite: bool) -> bool:
    """True when the database's alembic_version names exactly the scripts' heads (asked
    without an error that would abort a PostgreSQL transaction: the table may not exist)."""
    heads = script_heads(migrations_dir() / "versions")
    if heads is None:
        return False
    exists = ("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'" if sqlite
              else "SELECT count(*) FROM (SELECT to_regclass('alembic_version') AS t) AS r WHERE t IS NOT NULL")
    if not (await conn.execute(text(exists))).scalar_one():
        return False
    current = {row[0] for row in await conn.execute(text("SELECT version_num FROM alembic_version"))}
    return current == heads


async def migrate(url: str) -> None:
    """Bring the database at ``url`` to the latest revision; a no-op when it is there."""
    lock = _in_process_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        await _migrate_locked(url)


async def _migrate_locked(url: str) -> None:
    sqlite = is_sqlite(normalize_url(url))
    engine = create_engine(url, pooled=False)
    try:
        async with engine.connect() as conn:
            await writer(conn)
            async with conn.begin():
                if not sqlite:
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
                if not await _at_heads(conn, sqlite):
                    await conn.run_sync(_upgrade)
    finally:
        await engine.dispose()
