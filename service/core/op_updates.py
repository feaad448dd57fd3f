"""Serialized read-modify-write of operations.

Two paths in one process change the same operation (the request that created the
resource, and the reconciler following it), so every change re-reads the operation under
a per-operation lock and applies a pure function to the fresh copy. Another replica can
still save in between: the store's ``save`` refuses a copy older than the stored one
(ABORTED, OPERATION_CHANGED), and the change is applied again to a fresh read. A
terminal operation is never changed again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from service.core.domain import Operation
from service.core.errors import ApiError, not_found
from service.core.ports import OperationRepository

# Saves lost to another replica's concurrent save before giving up (each retry re-reads).
SAVE_ATTEMPTS = 5


@dataclass(frozen=True)
class Change:
    """The timeline entry for a change (reason/message of the transition row)."""

    reason: str
    message: str = ""


# Mutates the operation in place and returns the Change, or None for "nothing to do".
Mutation = Callable[[Operation], Change | None]


class OperationWriter:
    def __init__(self, operations: OperationRepository) -> None:
        self.operations = operations
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    async def update(self, operation_id: str, mutate: Mutation) -> Operation:
        self._users[operation_id] = self._users.get(operation_id, 0) + 1
        lock = self._locks.setdefault(operation_id, asyncio.Lock())
        try:
            async with lock:
                for attempt in range(1, SAVE_ATTEMPTS + 1):
                    op = await self.operations.get(operation_id)
                    if op is None:
                        raise not_found("Operation", operation_id)
                    if op.done:
                        return op
                    change = mutate(op)
                    if change is None:
                        return op
                    try:
                        return await self.operations.save(op, reason=change.reason, message=change.message)
                    except ApiError as exc:
                        if exc.reason != "OPERATION_CHANGED" or attempt == SAVE_ATTEMPTS:
                            raise
                raise AssertionError("unreachable")
        finally:
            self._users[operation_id] -= 1
            if not self._users[operation_id]:
                del self._users[operation_id]
                del self._locks[operation_id]
