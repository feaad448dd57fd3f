"""A keyed work queue (client-go's workqueue, in small): the latest value per key, each
key handled by one worker at a time, different keys in parallel.

The reconciler feeds it watch events keyed by object: a burst of changes to one object
collapses into its newest state (following is level-driven: only the latest state
matters), while many objects are followed at once, so one slow database write does not
hold up every other operation's progress."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class WorkQueue(Generic[K, V]):
    def __init__(self, handle: Callable[[K, V], Awaitable[None]], *, workers: int, name: str) -> None:
        self._handle = handle
        self._workers = workers
        self._name = name
        self._pending: dict[K, V] = {}
        self._processing: set[K] = set()
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def __len__(self) -> int:
        return len(self._pending) + len(self._processing)

    def put(self, key: K, value: V) -> None:
        """Handle ``value`` for ``key``, replacing a value of that key not yet started."""
        queued = key in self._pending
        self._pending[key] = value
        if not queued and key not in self._processing:
            self._ready.put_nowait(key)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._work(), name=f"{self._name}-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)

    async def _work(self) -> None:
        while True:
            key = await self._ready.get()
            value = self._pending.pop(key)
            self._processing.add(key)
            try:
                await self._handle(key, value)
            finally:
                self._processing.discard(key)
                if key in self._pending:  # changed again while being handled
                    self._ready.put_nowait(key)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until each has finished."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
