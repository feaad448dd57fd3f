"""The deployment's keys, kept in the database so every replica on it shares them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.page_tokens import new_key
from service.store.engine import write_transaction
from service.store.models import deployment_keys

PAGE_TOKEN_KEY = "page-tokens"


async def deployment_key(engine: AsyncEngine, name: str = PAGE_TOKEN_KEY) -> bytes:
    """The key called ``name``, created (random) by whichever replica asks first."""
    query = sa.select(deployment_keys.c.value).where(deployment_keys.c.name == name)
    async with engine.connect() as conn:
        stored = (await conn.execute(query)).scalar_one_or_none()
    if stored is None:
        try:
            async with write_transaction(engine) as conn:
                await conn.execute(deployment_keys.insert().values(name=name, value=new_key().hex()))
        except IntegrityError:
            pass  # another replica created it first: use theirs
        async with engine.connect() as conn:
            stored = (await conn.execute(query)).scalar_one()
    return bytes.fromhex(stored)
