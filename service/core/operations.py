"""Operation use cases: get, list, timeline, watch (the facade checks visibility)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from service.core import request_checks
from service.core.domain import Operation, OperationFilter, OperationTransition, Page
from service.core.errors import not_found
from service.core.notifier import OperationNotifier, wait_for
from service.core.ports import OperationRepository
from service.core.requests import ListOperationsRequest
from service.core.validation import effective_page_size


class Operations:
    def __init__(self, *, operations: OperationRepository, notifier: OperationNotifier, default_page_size: int,
                 max_page_size: int, poll_interval: float) -> None:
        self._operations = operations
        self._notifier = notifier
        self._default_page_size = default_page_size
        self._max_page_size = max_page_size
        self._poll_interval = poll_interval

    async def find(self, operation_id: str) -> Operation:
        request_checks.operation_id(operation_id)
        op = await self._operations.get(operation_id)
        if op is None:
            raise not_found("Operation", operation_id)
        return op

    async def list_page(self, req: ListOperationsRequest) -> Page[Operation]:
        request_checks.list_operations(req)
        flt = OperationFilter(namespace=req.namespace or None, type=req.type, state=req.state,
                              actor=req.actor or None)
        size = effective_page_size(req.page_size, self._default_page_size, self._max_page_size)
        return await self._operations.list_page(flt, size, req.page_token)

    async def timeline(self, operation_id: str) -> list[OperationTransition]:
        return await self._operations.transitions(operation_id)

    async def watch(self, operation_id: str, after_version: int) -> AsyncGenerator[Operation, None]:
        """Every stored version newer than ``after_version`` (the current one first),
        until the operation is done. Woken by in-process writes, polling for the rest."""
        with self._notifier.listen(operation_id) as poked:
            while True:
                op = await self._operations.get(operation_id)
                if op is None:
                    return
                if op.version > after_version:
                    after_version = op.version
                    yield op
                if op.done:
                    return
                await wait_for(poked, self._poll_interval)
