"""An operation's timeline never steps back: an older version of its resource (a cache
behind the API, a slow GET racing the watch) is ignored once a newer one was applied."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from service.cluster.kinds import VIRTUAL_DISK_SNAPSHOT
from service.core.domain import Operation, OperationState, OperationType, ResourceRef
from service.core.progress import follow_resource

REF = ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDiskSnapshot", "s", "ns", "uid-1")
# The life of a snapshot that is then deleted, one resourceVersion per step.
LIFE = ["Pending", "InProgress", "Ready", "Terminating"]


def _obj(version: int, phase: str, *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "s", "namespace": "ns", "uid": "uid-1", "resourceVersion": str(version)}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    return {"apiVersion": REF.api_version, "kind": REF.kind, "metadata": meta, "status": {"phase": phase}}


def _op(op_type: OperationType) -> Operation:
    return Operation(id="op", type=op_type, namespace="ns", target=REF, actor="a", request_hash="h", resource=REF,
                     state=OperationState.RUNNING)


def test_a_delete_does_not_go_back_from_terminating_to_ready() -> None:
    op = _op(OperationType.DELETE_DISK_SNAPSHOT)
    assert follow_resource(VIRTUAL_DISK_SNAPSHOT, _obj(7, "Terminating", deleting=True), deleting=True)(op)
    assert op.phase == "Terminating"
    # The delete call's follow-up read came from a cache still at version 5 (Ready).
    assert follow_resource(VIRTUAL_DISK_SNAPSHOT, _obj(5, "Ready"), deleting=True)(op) is None
    assert op.phase == "Terminating" and op.observed_resource_version == "7"
    assert follow_resource(VIRTUAL_DISK_SNAPSHOT, None, deleting=True)(op) is not None
    assert op.state is OperationState.SUCCEEDED


def test_unfamiliar_resource_versions_are_applied_in_arrival_order() -> None:
    op = _op(OperationType.CREATE_DISK_SNAPSHOT)
    first = _obj(1, "InProgress")
    first["metadata"]["resourceVersion"] = "b7f2"
    follow_resource(VIRTUAL_DISK_SNAPSHOT, first, deleting=False)(op)
    follow_resource(VIRTUAL_DISK_SNAPSHOT, _obj(1, "Pending"), deleting=False)(op)
    assert op.phase == "Pending"


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(len(LIFE)))))
def test_versions_arriving_in_any_order_never_step_the_phase_back(order: list[int]) -> None:
    op = _op(OperationType.CREATE_DISK_SNAPSHOT)
    op.state = OperationState.PENDING
    applied: list[int] = []
    for step in order:
        if follow_resource(VIRTUAL_DISK_SNAPSHOT, _obj(step + 1, LIFE[step]), deleting=False)(op) is not None:
            applied.append(step)
        if op.done:
            break
    assert applied == sorted(applied)
