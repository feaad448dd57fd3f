"""Waiting in tests for what has no event to await (a metric, a finished span)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def wait_for(condition: Callable[[], bool], what: str, limit: float = 5.0) -> None:
    """Return once ``condition()`` holds; fail naming ``what`` after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} (within {limit} s)")


async def wait_until(probe: Callable[[], Awaitable[bool]], what: str, limit: float = 15.0) -> None:
    """``wait_for`` with a probe that must await (an API call)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        if await probe():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} (within {limit} s)")
