"""Migrations and the Database handle against real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.core.page_tokens import new_key
from service.store.db import Database, migrate
from service.store.engine import create_engine, normalize_url, safe_url
from service.store.migrator import alembic_config
from service.store.models import metadata

REPO = Path(__file__).resolve().parents[2]
HEAD = "0005_history_indexes"
TABLES = {"operations", "operation_transitions", "audit_events", "audit_chain_head", "deployment_keys",
          "alembic_version"}


async def _inspect(url: str) -> tuple[set[str], str | None]:
    engine = create_engine(url, pooled=False)
    try:
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
            version = None
            if "alembic_version" in tables:
                version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
        return tables, version
    finally:
        await engine.dispose()


async def test_migrate_creates_the_schema_and_is_idempotent(database_url: str) -> None:
    assert await _inspect(database_url) == (set(), None)
    await migrate(database_url)
    assert await _inspect(database_url) == (TABLES, HEAD)
    await migrate(database_url)
    assert await _inspect(database_url) == (TABLES, HEAD)


async def test_concurrent_migrations_do_not_collide(database_url: str, tmp_path: Path) -> None:
    # Two processes starting at once (replicas), plus two calls inside this process.
    second = tmp_path / "second.db"
    script = "import asyncio, sys; from service.store.db import migrate; asyncio.run(migrate(sys.argv[1]))"
    processes = [await asyncio.create_subprocess_exec(sys.executable, "-c", script, url, cwd=REPO,
                                                      stderr=asyncio.subprocess.PIPE)
                 for url in (database_url, database_url)]
    await asyncio.gather(migrate(database_url), migrate(f"sqlite:///{second}"))
    for process in processes:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, stderr.decode()
    assert await _inspect(database_url) == (TABLES, HEAD)
    assert await _inspect(f"sqlite:///{second}") == (TABLES, HEAD)


async def test_models_match_the_hand_written_migration(database_url: str) -> None:
    await migrate(database_url)
    engine = create_engine(database_url, pooled=False)

    def diff(conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_downgrade_to_base_and_back(database_url: str) -> None:
    await migrate(database_url)
    config = alembic_config()
    engine = create_engine(database_url, pooled=False)

    def run(conn: sa.Connection, target: str, upgrade: bool) -> None:
        config.attributes["connection"] = conn
        (command.upgrade if upgrade else command.downgrade)(config, target)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(run, "base", False)
    finally:
        await engine.dispose()
    assert await _inspect(database_url) == ({"alembic_version"}, None)
    await migrate(database_url)
    assert await _inspect(database_url) == (TABLES, HEAD)


def test_alembic_cli_uses_the_url_from_the_environment(database_url: str) -> None:
    env = {**os.environ, "DVP_GATEWAY_DATABASE_URL": database_url}
    upgraded = subprocess.run([sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini"), "upgrade", "head"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert upgraded.returncode == 0, upgraded.stderr
    assert HEAD in upgraded.stderr  # alembic logs each revision it applies
    assert asyncio.run(_inspect(database_url)) == (TABLES, HEAD)


async def test_connect_accepts_plain_urls_and_pings(database_url: str) -> None:
    plain = database_url.replace("+aiosqlite", "").replace("+asyncpg", "")
    await migrate(plain)
    database = await Database.connect(plain)
    try:
        assert await database.ping()
        assert database.engine.dialect.driver in {"aiosqlite", "asyncpg"}
        async with database.session() as session:
            assert (await session.execute(sa.text("SELECT count(*) FROM audit_chain_head"))).scalar_one() == 1
    finally:
        await database.close()


async def test_ping_is_false_when_the_server_is_gone() -> None:
    unreachable = Database(create_engine("postgresql://nobody@127.0.0.1:1/none"), new_key())
    try:
        assert await unreachable.ping() is False
    finally:
        await unreachable.close()
    with pytest.raises(OSError):
        await Database.connect("postgresql://nobody@127.0.0.1:1/none")


def test_url_normalization_and_redaction() -> None:
    assert normalize_url("sqlite:///tmp/x.db").drivername == "sqlite+aiosqlite"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert normalize_url("postgresql+asyncpg://u@h/db").drivername == "postgresql+asyncpg"
    for bad in ("mysql://u@h/db", "not a url", "sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ValueError) as caught:
            normalize_url(bad)
        assert "s3cret" not in str(caught.value)
    assert "s3cret" not in safe_url("postgresql://u:s3cret@h/db")
    assert "s3cret" not in safe_url(normalize_url("postgresql://u:s3cret@h/db"))
