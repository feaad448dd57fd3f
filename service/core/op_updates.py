"""Serialized read-modify-write of operations.

Two paths in one process change the same operation (the request that created the
resource, and the reconciler following it), so every change re-reads the operation under
a per-operation lock and applies a pure function to the fresh copy. Another replica can
still save in between: the store's ``save`` refuses a copy older than the stored one
(ABORTED, OPERATION_CHANGED), and the change is applied again to a fresh read. A
terminal operation is never changed again.

The copy this process saved last is kept for the next change (a create is followed by
its RUNNING update and the watch's updates within moments), so those skip the read: if
another replica saved since, the version check refuses the save and the change is
applied to a fresh read, as above.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from service.core.domain import Operation
from service.core.errors import ApiError, not_found
from service.core.ports import OperationRepository

# Saves lost to another replica's concurrent save before giving up (each retry re-reads).
SAVE_ATTEMPTS = 5
# Unfinished operations whose last saved copy is kept (a few KiB each).
REMEMBERED = 1024


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
        self._latest: OrderedDict[str, Operation] = OrderedDict()

    def remember(self, op: Operation) -> None:
        """``op`` as this process just stored it (unfinished ones only: nothing changes a
        finished operation)."""
        if op.done:
            self._latest.pop(op.id, None)
            return
        self._latest[op.id] = op
        self._latest.move_to_end(op.id)
        if len(self._latest) > REMEMBERED:
            self._latest.popitem(last=False)

    def _recalled(self, operation_id: str) -> Operation | None:
        op = self._latest.get(operation_id)
        if op is None:
            return None
        # A copy: a mutation works on it in place, and a refused save must not leave it changed.
        return replace(op, conditions=list(op.conditions), results=list(op.results), warnings=list(op.warnings),
                       request=dict(op.request))

    async def update(self, operation_id: str, mutate: Mutation) -> Operation:
        self._users[operation_id] = self._users.get(operation_id, 0) + 1
        lock = self._locks.setdefault(operation_id, asyncio.Lock())
        try:
            async with lock:
                for attempt in range(1, SAVE_ATTEMPTS + 1):
                    op = self._recalled(operation_id) if attempt == 1 else None
                    if op is None:
                        op = await self.operations.get(operation_id)
                    if op is None:
                        raise not_found("Operation", operation_id)
                    if op.done:
                        self.remember(op)
                        return op
                    change = mutate(op)
                    if change is None:
                        return op
                    try:
                        saved = await self.operations.save(op, reason=change.reason, message=change.message)
                    except ApiError as exc:
                        self._latest.pop(operation_id, None)  # another writer's copy is newer: read it
                        if exc.reason != "OPERATION_CHANGED" or attempt == SAVE_ATTEMPTS:
                            raise
                        continue
                    self.remember(saved)
                    return saved
                raise AssertionError("unreachable")
        finally:
            self._users[operation_id] -= 1
            if not self._users[operation_id]:
                del self._users[operation_id]
                del self._locks[operation_id]
