"""Operations: get, list, timeline, watch and cancel.

An operation is visible to whoever may ``get operations`` in its namespace; to anyone
else it does not exist (NOT_FOUND, no existence oracle), though the audit log records
the denial. Cancelling calls off the operation's custom resource (it is deleted) and
ends the operation CANCELLED. A VM restore in progress is not cancelled unless forced:
the guide warns it can leave the VM half-restored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.core import contract, request_checks
from service.core.capabilities.registry import Call, Deps, Registry
from service.core.domain import Operation, OperationState, OperationTransition, OperationType, Page
from service.core.errors import ApiError, PreconditionViolation, failed_precondition, not_found
from service.core.op_updates import Change, Mutation
from service.core.operations import Operations
from service.core.requests import CancelOperationRequest, ListOperationsRequest, OperationKey, WatchOperationRequest
from service.core.validation import raise_if_any
from service.core.validation import request_id as request_id_violations

# Phases in which a restore is rewriting the VM (calling it off leaves it half-restored).
RESTORE_WORKING_PHASES = frozenset({"InProgress"})


async def visible(ops: Operations, call: Call, operation_id: str, verb: str = "get") -> Operation:
    """The operation, or NOT_FOUND when it does not exist *or* the caller may not see it."""
    op = await ops.find(operation_id)
    call.audit.namespace, call.audit.operation_id = op.namespace, op.id
    try:
        await call.authorize(verb, contract.OPERATIONS, op.namespace)
    except ApiError:
        raise not_found("Operation", operation_id) from None
    return op


def _cancelled(subject: str, forced: bool) -> Mutation:
    def mutate(op: Operation) -> Change | None:
        op.state = OperationState.CANCELLED
        return Change("Cancelled", f"cancelled by {subject}" + (" (forced)" if forced else ""))

    return mutate


def register(registry: Registry, deps: Deps) -> None:
    ops = Operations(operations=deps.operations, notifier=deps.notifier, default_page_size=deps.default_page_size,
                     max_page_size=deps.max_page_size, poll_interval=deps.operation_poll_interval)

    async def get(call: Call, key: OperationKey) -> Operation:
        return await visible(ops, call, key.operation_id)

    async def list_page(call: Call, req: ListOperationsRequest) -> Page[Operation]:
        return await ops.list_page(req)

    async def timeline(call: Call, key: OperationKey) -> list[OperationTransition]:
        op = await visible(ops, call, key.operation_id)
        return await ops.timeline(op.id)

    async def watch(call: Call, req: WatchOperationRequest) -> AsyncIterator[Operation]:
        request_checks.watch_operation(req.operation_id, req.after_version)
        op = await visible(ops, call, req.operation_id)
        return ops.watch(op.id, req.after_version)

    async def cancel(call: Call, req: CancelOperationRequest) -> Operation:
        request_checks.operation_id(req.operation_id)
        raise_if_any(request_id_violations(req.request_id))
        call.audit.details = {"forced": bool(req.force)}
        op = await visible(ops, call, req.operation_id)
        await call.authorize("cancel", contract.OPERATIONS, op.namespace)
        if op.state is OperationState.CANCELLED:
            return op  # cancelling twice is the same as once
        if op.done:
            raise failed_precondition("OPERATION_DONE", f"operation {op.id} already ended {op.state.value}", [
                PreconditionViolation("OPERATION_DONE", f"operations/{op.id}", "only a running operation can be "
                                      "cancelled")])
        creates = registry.creates.get(op.type)
        if creates is None:
            raise failed_precondition("NOT_CANCELLABLE", f"a {op.type.value} operation cannot be cancelled", [
                PreconditionViolation("NOT_CANCELLABLE", f"operations/{op.id}", "a delete cannot be called off")])
        dry_run = op.request.get("mode") == "DryRun"
        if (op.type is OperationType.RESTORE_VM and not dry_run and op.phase in RESTORE_WORKING_PHASES
                and not req.force):
            raise failed_precondition(
                "RESTORE_IN_PROGRESS",
                "the restore is rewriting the virtual machine; cancelling it now can leave the VM half-restored "
                "(set force to cancel anyway)",
                [PreconditionViolation("RESTORE_IN_PROGRESS", f"operations/{op.id}",
                                       "wait for the restore to finish, or cancel with force")])
        if op.resource is not None and op.resource.uid:
            await deps.flows.remove_quietly(creates.kind, op.namespace, op.resource.name)
        return await deps.writer.update(op.id, _cancelled(call.ctx.caller.subject, bool(req.force)))

    registry.on(contract.GET_OPERATION, get)
    registry.on(contract.LIST_OPERATIONS, list_page)
    registry.on(contract.GET_OPERATION_TIMELINE, timeline)
    registry.on_stream(contract.WATCH_OPERATION, watch)
    registry.on(contract.CANCEL_OPERATION, cancel)
