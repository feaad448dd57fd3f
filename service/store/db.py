"""The store's entry point: ``Database.connect(url)`` and ``migrate(url)``."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.core.page_tokens import PageTokens
from service.core.ports import AuditRepository, OperationRepository
from service.store.audit import SqlAuditRepository
from service.store.engine import create_engine, normalize_url, safe_url
from service.store.keys import deployment_key
from service.store.migrator import migrate
from service.store.operations import SqlOperationRepository

__all__ = ["Database", "migrate"]

log = logging.getLogger(__name__)


class Database:
    """An engine plus the repositories built on it. Create with ``connect``."""

    def __init__(self, engine: AsyncEngine, page_token_key: bytes) -> None:
        self.engine = engine
        self.session: async_sessionmaker[AsyncSession] = async_sessionmaker(engine, expire_on_commit=False)
        # Shared with the core (cluster list tokens): one key per deployment.
        self.page_tokens = PageTokens(page_token_key)
        # Annotated with the core's Protocols so mypy checks the repositories honour them.
        self.operations: OperationRepository = SqlOperationRepository(engine, self.page_tokens)
        self.audit: AuditRepository = SqlAuditRepository(engine, self.page_tokens)

    @classmethod
    async def connect(cls, url: str) -> Database:
        """Open a pooled engine for ``url`` and check it answers (raises if it does not)."""
        engine = create_engine(url)
        try:
            database = cls(engine, await deployment_key(engine))
        except BaseException:
            await engine.dispose()
            raise
        log.info("database connected", extra={"database": safe_url(normalize_url(url))})
        return database

    async def ping(self) -> bool:
        """Readiness: True when a trivial query succeeds."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            # The class name only: driver messages can echo connection parameters.
            log.warning("database ping failed: %s", type(exc).__name__)
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()
