"""In-process wake-ups for operation watchers.

Every operation write goes through ``NotifyingOperations``, which pokes the notifier;
watchers also re-read the store after a short poll timeout, so versions written by
another replica (sharing PostgreSQL) are seen within one poll interval."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from service.core.domain import AuditEventDraft, Operation, OperationFilter, OperationTransition, Page
from service.core.ports import OperationRepository


class OperationNotifier:
    def __init__(self) -> None:
        self._listeners: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, operation_id: str) -> None:
        for event in self._listeners.get(operation_id, ()):
            event.set()

    @contextmanager
    def listen(self, operation_id: str) -> Iterator[asyncio.Event]:
        """An event set on every write of the operation; register *before* reading the
        store so no write between the read and the wait is missed."""
        event = asyncio.Event()
        self._listeners[operation_id].add(event)
        try:
            yield event
        finally:
            listeners = self._listeners.get(operation_id)
            if listeners is not None:
                listeners.discard(event)
                if not listeners:
                    del self._listeners[operation_id]


async def wait_for(event: asyncio.Event, seconds: float) -> None:
    """Wait for ``event`` at most ``seconds``, then clear it."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass
    event.clear()


class NotifyingOperations:
    """An ``OperationRepository`` that pokes the notifier after every stored change."""

    def __init__(self, inner: OperationRepository, notifier: OperationNotifier) -> None:
        self._inner = inner
        self._notifier = notifier

    async def create(self, op: Operation, *, reason: str = "Created", message: str = "",
                     audit: AuditEventDraft | None = None) -> Operation:
        stored = await self._inner.create(op, reason=reason, message=message, audit=audit)
        self._notifier.notify(stored.id)
        return stored

    async def get(self, operation_id: str) -> Operation | None:
        return await self._inner.get(operation_id)

    async def find_by_request_id(self, actor: str, request_id: str) -> Operation | None:
        return await self._inner.find_by_request_id(actor, request_id)

    async def save(self, op: Operation, *, reason: str = "", message: str = "") -> Operation:
        stored = await self._inner.save(op, reason=reason, message=message)
        self._notifier.notify(stored.id)
        return stored

    async def list_page(self, flt: OperationFilter, page_size: int, page_token: str) -> Page[Operation]:
        return await self._inner.list_page(flt, page_size, page_token)

    async def transitions(self, operation_id: str) -> list[OperationTransition]:
        return await self._inner.transitions(operation_id)

    async def export_digest(self, etag: str) -> str:
        return await self._inner.export_digest(etag)

    async def unfinished(self) -> list[Operation]:
        return await self._inner.unfinished()
