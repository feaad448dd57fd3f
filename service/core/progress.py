"""How an operation follows its custom resource (pure: a Mutation for OperationWriter)."""

from __future__ import annotations

from typing import Any

from service.cluster.translate import conditions_from_resource, object_ref, operation_progress, resource_version
from service.core.domain import Condition, Operation, OperationError, OperationState
from service.core.op_updates import Change, Mutation
from service.core.ports import ResourceKind

# Condition reasons that mean "the snapshot may be taken without consistency guarantees
# or waits for them": surfaced to the caller as operation warnings.
WARNING_REASONS = frozenset({"PotentiallyInconsistent"})


def follow_resource(kind: ResourceKind, obj: dict[str, Any] | None, *, deleting: bool) -> Mutation:
    """Apply what the resource (None: it is gone) says to the operation."""

    version = resource_version(obj) if obj is not None else ""

    def mutate(op: Operation) -> Change | None:
        if obj is not None and _older(version, op.observed_resource_version):
            return None  # a stale read (a cache behind the API): the operation has seen newer
        state, phase, error = operation_progress(kind, obj, deleting=deleting)
        conditions = conditions_from_resource(obj) if obj is not None and not deleting else op.conditions
        warnings = _with_condition_warnings(op.warnings, conditions)
        resource = op.resource
        if obj is not None and not deleting:
            ref = object_ref(obj)
            if ref.uid and (resource is None or resource.uid != ref.uid):
                resource = ref
        before = (op.state, op.phase, op.conditions, op.warnings, op.error, op.resource)
        after = (state, phase or op.phase, conditions, warnings, error, resource)
        if before == after:
            return None
        op.state, op.phase, op.conditions, op.warnings, op.error, op.resource = after
        if version:
            op.observed_resource_version = version
        return _explain(state, phase, conditions, error)

    return mutate


def _older(version: str, seen: str) -> bool:
    """Whether ``version`` is before ``seen``. Kubernetes resourceVersions are opaque, but
    etcd's (and the embedded cluster's) are increasing integers; anything else compares
    as "not older", so following never stalls on an unfamiliar cluster."""
    return version.isdigit() and seen.isdigit() and int(version) < int(seen)


def follow_created(kind: ResourceKind, obj: dict[str, Any]) -> Mutation:
    """The create call's answer: applied only while the operation is still PENDING, since
    the watch may already have delivered a newer version of the object."""
    follow = follow_resource(kind, obj, deleting=False)

    def mutate(op: Operation) -> Change | None:
        return follow(op) if op.state is OperationState.PENDING else None

    return mutate


def fail(error: OperationError) -> Mutation:
    def mutate(op: Operation) -> Change | None:
        op.state = OperationState.FAILED
        op.error = error
        return Change(error.reason, error.message)

    return mutate


def add_warning(warning: str) -> Mutation:
    def mutate(op: Operation) -> Change | None:
        if warning in op.warnings:
            return None
        op.warnings = [*op.warnings, warning]
        return Change("Warning", warning)

    return mutate


def _with_condition_warnings(warnings: list[str], conditions: list[Condition]) -> list[str]:
    result = list(warnings)
    for cond in conditions:
        if cond.reason in WARNING_REASONS and cond.status != "True":
            text = f"{cond.type}: {cond.reason}" + (f": {cond.message}" if cond.message else "")
            if text not in result:
                result.append(text)
    return result


def _explain(state: OperationState, phase: str, conditions: list[Condition],
             error: OperationError | None) -> Change:
    if error is not None:
        return Change(error.reason, error.message)
    # The most recent condition explains the phase best.
    timed = [c for c in conditions if c.reason]
    timed.sort(key=lambda c: (c.last_transition_time is not None, c.last_transition_time))
    if timed:
        latest = timed[-1]
        return Change(latest.reason, latest.message)
    return Change(phase or state.value)
