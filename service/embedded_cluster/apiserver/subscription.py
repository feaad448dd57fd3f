"""A bounded per-consumer event queue: a consumer that falls too far behind is closed
(it relists, as a real watcher would) instead of growing memory without bound."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable

from service.embedded_cluster.contracts import StoreEvent


class Subscription:
    def __init__(self, resource: str | None, maxsize: int, on_close: Callable[[Subscription], None]) -> None:
        self.resource = resource
        self.maxsize = maxsize
        self.overflowed = False
        self._queue: asyncio.Queue[StoreEvent | None] = asyncio.Queue()
        self._closed = False
        self._on_close = on_close

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, event: StoreEvent) -> None:
        if self._closed or (self.resource is not None and event.resource != self.resource):
            return
        if self._queue.qsize() >= self.maxsize:
            self.overflowed = True
            self.close()
            return
        # Each consumer gets its own copy: one that mutates an event cannot affect another.
        self._queue.put_nowait(StoreEvent(event.type, event.resource, copy.deepcopy(event.object)))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)
            self._on_close(self)

    async def aclose(self) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StoreEvent:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event
