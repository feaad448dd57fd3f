"""The store's entry point: ``Database.connect(url)`` and ``migrate(url)``.

Importing it (the first module of ``service.store``) defers the ``__init__`` of
``sqlalchemy.ext.asyncio``, whose session half imports all of ``sqlalchemy.orm`` (5.6 MB
of RSS) that the store, written on Core, never uses: see ``_defer_asyncio_ext_init``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import TYPE_CHECKING

from sqlalchemy import text

from service import lazy_imports


def _defer_asyncio_ext_init() -> None:
    """``sqlalchemy.ext.asyncio`` with its engine half loaded (AsyncEngine, AsyncConnection,
    create_async_engine, the results) and its ``__init__`` deferred (``service.lazy_imports``):
    asking it for any other name (AsyncSession...) runs the real ``__init__`` then. A no-op
    when it is loaded."""
    name = "sqlalchemy.ext.asyncio"
    if name in sys.modules:
        return
    package = lazy_imports.deferred_package(name)
    try:
        # In this order: each one's ``from . import x`` finds x set on the package already.
        parts = [importlib.import_module(f"{name}.{part}") for part in ("exc", "base", "result", "engine")]
    except BaseException:
        del sys.modules[name]  # as if never tried: the usual import will report what is wrong
        raise
    engine, result = parts[3], parts[2]
    for attr in ("AsyncConnection", "AsyncEngine", "AsyncTransaction", "create_async_engine",
                 "async_engine_from_config", "create_async_pool_from_url"):
        package.__dict__.setdefault(attr, getattr(engine, attr))
    for attr in ("AsyncResult", "AsyncScalarResult", "AsyncMappingResult", "AsyncTupleResult"):
        package.__dict__.setdefault(attr, getattr(result, attr))


_defer_asyncio_ext_init()   # before the imports below, which all take the engine half only
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from service.core.page_tokens import PageTokens  # noqa: E402
from service.core.ports import AuditRepository, OperationRepository  # noqa: E402
from service.observability.telemetry import Telemetry  # noqa: E402
from service.store.audit import SqlAuditRepository  # noqa: E402
from service.store.engine import create_engine, normalize_url, safe_url  # noqa: E402
from service.store.group_commit import GroupCommit  # noqa: E402
from service.store.keys import deployment_key  # noqa: E402
from service.store.migrator import migrate  # noqa: E402
from service.store.operations import SqlOperationRepository  # noqa: E402

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = ["Database", "migrate"]

log = logging.getLogger(__name__)


class Database:
    """An engine plus the repositories built on it. Create with ``connect``."""

    def __init__(self, engine: AsyncEngine, page_token_key: bytes, telemetry: Telemetry | None = None) -> None:
        self.engine = engine
        self._session: async_sessionmaker[AsyncSession] | None = None
        # Shared with the core (cluster list tokens): one key per deployment.
        self.page_tokens = PageTokens(page_token_key)
        # The one writer of this process: operation rows and audit events share its commits.
        self.writer = GroupCommit(engine, telemetry)
        # Annotated with the core's Protocols so mypy checks the repositories honour them.
        self.operations: OperationRepository = SqlOperationRepository(engine, self.page_tokens, self.writer)
        self.audit: AuditRepository = SqlAuditRepository(engine, self.page_tokens, self.writer)

    @property
    def session(self) -> async_sessionmaker[AsyncSession]:
        """ORM sessions, for tests and tools (the repositories use Core): built, and the
        ORM imported, on first use."""
        if self._session is None:
            from sqlalchemy.ext.asyncio import async_sessionmaker

            self._session = async_sessionmaker(self.engine, expire_on_commit=False)
        return self._session

    @classmethod
    async def connect(cls, url: str, telemetry: Telemetry | None = None) -> Database:
        """Open a pooled engine for ``url`` and check it answers (raises if it does not)."""
        engine = create_engine(url)
        if telemetry is not None:
            telemetry.instrument_engine(engine.sync_engine)
        try:
            database = cls(engine, await deployment_key(engine), telemetry)
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
        await self.writer.close()
        await self.engine.dispose()
