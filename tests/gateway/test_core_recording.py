"""The core's store-facing parts on the real store (SQLite and PostgreSQL): the audit
recorder's outcomes, serialized operation updates, idempotent creates, and operation
watches woken in-process or by polling (a write from another replica)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from service.core.audit import AuditRecorder
from service.core.domain import (
    AuditFilter,
    AuditOutcome,
    Caller,
    Operation,
    OperationState,
    OperationType,
    RequestContext,
    ResourceRef,
)
from service.core.errors import ApiError, Code, not_found
from service.core.idempotency import create_once
from service.core.notifier import NotifyingOperations, OperationNotifier
from service.core.op_updates import Change, Mutation, OperationWriter
from service.core.operations import Operations
from service.store import Database

CTX = RequestContext(Caller("alice", ("users",)), request_id="corr-1", protocol="rest", peer="127.0.0.1")


def new_operation(request_id: str | None = None, request_hash: str = "h1") -> Operation:
    return Operation(id=str(uuid.uuid4()), type=OperationType.CREATE_DISK_SNAPSHOT, namespace="demo",
                     target=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", "d", "demo"),
                     actor="alice", request_hash=request_hash, request_id=request_id)


async def test_audit_outcomes(database: Database) -> None:
    recorder = AuditRecorder(database.audit)
    async with recorder.call(CTX, "GetDiskSnapshot", namespace="demo", resource="disk-snapshots/a"):
        pass
    with pytest.raises(ApiError):
        async with recorder.call(CTX, "GetDiskSnapshot", namespace="demo", resource="disk-snapshots/b"):
            raise not_found("VirtualDiskSnapshot", "b", "demo")
    with pytest.raises(ApiError):
        async with recorder.call(CTX, "DeleteDiskSnapshot", namespace="prod") as call:
            call.deny()  # the gateway's policy refused
            raise ApiError(Code.PERMISSION_DENIED, "PERMISSION_DENIED", "no")
    with pytest.raises(ApiError):
        async with recorder.call(CTX, "CreateDiskSnapshot", namespace="demo"):
            raise ApiError(Code.PERMISSION_DENIED, "CLUSTER_FORBIDDEN", "the cluster refused the gateway")
    with pytest.raises(ApiError):
        async with recorder.call(CTX, "GetOperation"):
            raise ApiError(Code.UNAUTHENTICATED, "UNAUTHENTICATED", "who?")
    with pytest.raises(ApiError) as caught:
        async with recorder.call(CTX, "ListOperations"):
            raise RuntimeError("secret internals")
    assert caught.value.code is Code.INTERNAL and "secret" not in caught.value.message
    async with recorder.call(CTX, "GetOperation") as call:
        call.operation_id = "op-1"
        call.deny()

    events = [e async for e in database.audit.stream(AuditFilter())]
    assert [(e.action, e.outcome, e.code, e.reason) for e in events] == [
        ("GetDiskSnapshot", AuditOutcome.SUCCESS, "", ""),
        ("GetDiskSnapshot", AuditOutcome.ERROR, "NOT_FOUND", "RESOURCE_NOT_FOUND"),
        ("DeleteDiskSnapshot", AuditOutcome.DENIED, "PERMISSION_DENIED", "PERMISSION_DENIED"),
        ("CreateDiskSnapshot", AuditOutcome.ERROR, "PERMISSION_DENIED", "CLUSTER_FORBIDDEN"),
        ("GetOperation", AuditOutcome.DENIED, "UNAUTHENTICATED", "UNAUTHENTICATED"),
        ("ListOperations", AuditOutcome.ERROR, "INTERNAL", "INTERNAL"),
        ("GetOperation", AuditOutcome.DENIED, "", ""),
    ]
    first = events[0]
    assert (first.actor, first.protocol, first.request_id, first.namespace, first.resource) == (
        "alice", "rest", "corr-1", "demo", "disk-snapshots/a")
    assert events[-1].operation_id == "op-1"
    assert (await database.audit.verify()).ok


async def test_idempotent_create_race(database: Database) -> None:
    first, stored = await create_once(database.operations, new_operation("key-1"))
    assert stored
    winner, stored = await create_once(database.operations, new_operation("key-1"))
    assert not stored and winner.id == first.id
    with pytest.raises(ApiError) as caught:
        await create_once(database.operations, new_operation("key-1", request_hash="other"))
    assert caught.value.code is Code.ABORTED


async def test_serialized_updates_never_touch_a_finished_operation(database: Database) -> None:
    writer = OperationWriter(database.operations)
    op = await database.operations.create(new_operation())

    def bump_phase(phase: str) -> Mutation:
        def mutate(current: Operation) -> Change:
            current.phase = phase
            current.state = OperationState.RUNNING
            return Change(phase)
        return mutate

    await asyncio.gather(*(writer.update(op.id, bump_phase(f"P{i}")) for i in range(5)))
    stored = await database.operations.get(op.id)
    assert stored is not None and stored.version == 6

    def finish(current: Operation) -> Change:
        current.state = OperationState.SUCCEEDED
        return Change("Done")

    await writer.update(op.id, finish)
    after = await writer.update(op.id, bump_phase("Late"))
    assert after.state is OperationState.SUCCEEDED and after.phase != "Late"
    with pytest.raises(ApiError):
        await writer.update(str(uuid.uuid4()), finish)


async def test_watch_is_woken_in_process_and_polls_other_writers(database: Database) -> None:
    notifier = OperationNotifier()
    notifying = NotifyingOperations(database.operations, notifier)
    poll = 0.3
    ops = Operations(operations=notifying, notifier=notifier, default_page_size=50, max_page_size=500,
                     poll_interval=poll)
    op = await notifying.create(new_operation())
    stream = ops.watch(op.id, after_version=0)
    assert (await anext(stream)).version == 1

    # In-process write: woken at once, well before the poll interval.
    running = await notifying.get(op.id)
    assert running is not None
    running.state, running.phase = OperationState.RUNNING, "InProgress"
    started = time.monotonic()
    pending_next = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.01)
    await notifying.save(running, reason="Snapshotting")
    assert (await pending_next).version == 2
    assert time.monotonic() - started < poll

    # Another replica writes straight to the shared database: seen by polling.
    done = await database.operations.get(op.id)
    assert done is not None
    done.state, done.phase = OperationState.SUCCEEDED, "Ready"
    await database.operations.save(done, reason="Ready")
    last = await asyncio.wait_for(anext(stream), 5)
    assert last.version == 3 and last.done
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
