"""Pure translation: manifests, resources -> domain, phase -> operation state, consistency rule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from service.cluster.consistency import consistency_warning
from service.cluster.kinds import (
    ANNOTATION_ACTOR,
    DATA_EXPORT,
    LABEL_MANAGED_BY,
    LABEL_OPERATION_ID,
    MANAGED_BY_VALUE,
    VIRTUAL_DISK,
    VIRTUAL_DISK_SNAPSHOT,
    VIRTUAL_MACHINE_OPERATION,
    VIRTUAL_MACHINE_SNAPSHOT,
    VIRTUAL_MACHINE_SNAPSHOT_OPERATION,
)
from service.cluster.translate import (
    conditions_from_resource,
    disk_snapshot_from_resource,
    disk_snapshot_manifest,
    object_ref,
    operation_progress,
    parse_time,
    results_from_resource,
)
from service.core.domain import Condition, OperationState, ResourceRef, ResourceResult
from service.core.ports import ResourceKind

Obj = dict[str, Any]


def manifest(**overrides: Any) -> Obj:
    args: dict[str, Any] = {
        "namespace": "demo", "name": "", "generate_name": "", "virtual_disk_name": "linux-vm-root",
        "required_consistency": True, "labels": {}, "annotations": {}, "operation_id": "op-1", "actor": "alice",
    }
    args.update(overrides)
    return disk_snapshot_manifest(**args)


# ---------------------------------------------------------------- manifests


def test_disk_snapshot_manifest_matches_the_guide() -> None:
    obj = manifest(name="linux-vm-root-snapshot")
    assert obj["apiVersion"] == "virtualization.deckhouse.io/v1alpha2"
    assert obj["kind"] == "VirtualDiskSnapshot"
    assert obj["spec"] == {"virtualDiskName": "linux-vm-root", "requiredConsistency": True}
    assert obj["metadata"]["name"] == "linux-vm-root-snapshot"
    assert obj["metadata"]["namespace"] == "demo"
    assert "generateName" not in obj["metadata"]


def test_manifest_uses_generate_name_only_without_a_name() -> None:
    assert manifest()["metadata"]["generateName"] == "linux-vm-root-"
    assert manifest(generate_name="nightly-")["metadata"]["generateName"] == "nightly-"
    assert "name" not in manifest(generate_name="nightly-")["metadata"]


def test_manifest_carries_required_consistency_false() -> None:
    assert manifest(required_consistency=False)["spec"]["requiredConsistency"] is False


def test_gateway_labels_and_annotations_win_over_the_callers() -> None:
    obj = manifest(
        labels={"team": "db", LABEL_MANAGED_BY: "helm", LABEL_OPERATION_ID: "forged"},
        annotations={"note": "nightly", ANNOTATION_ACTOR: "mallory"},
    )
    assert obj["metadata"]["labels"] == {"team": "db", LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_OPERATION_ID: "op-1"}
    assert obj["metadata"]["annotations"] == {"note": "nightly", ANNOTATION_ACTOR: "alice"}


def test_manifest_does_not_alias_the_callers_dicts() -> None:
    labels = {"team": "db"}
    obj = manifest(labels=labels)
    obj["metadata"]["labels"]["x"] = "y"
    assert labels == {"team": "db"}


# ---------------------------------------------------------------- resources -> domain

FULL_SNAPSHOT: Obj = {
    "apiVersion": "virtualization.deckhouse.io/v1alpha2",
    "kind": "VirtualDiskSnapshot",
    "metadata": {
        "name": "snap-1", "namespace": "demo", "uid": "u-1", "resourceVersion": "42",
        "creationTimestamp": "2026-01-02T03:04:05Z", "deletionTimestamp": "2026-01-02T04:00:00+01:00",
        "labels": {LABEL_OPERATION_ID: "op-9", "team": "db"}, "annotations": {ANNOTATION_ACTOR: "alice"},
    },
    "spec": {"virtualDiskName": "linux-vm-root", "requiredConsistency": False},
    "status": {
        "phase": "Ready", "consistent": True, "volumeSnapshotName": "vs-1",
        "conditions": [
            {"type": "VirtualDiskReady", "status": "True", "reason": "VirtualDiskReady",
             "lastTransitionTime": "2026-01-02T03:04:06Z"},
            {"type": "VirtualDiskSnapshotReady", "status": "True", "reason": "VirtualDiskSnapshotReady",
             "message": "", "lastTransitionTime": "2026-01-02T03:04:09.5Z"},
        ],
    },
}


def test_disk_snapshot_from_a_full_resource() -> None:
    snap = disk_snapshot_from_resource(FULL_SNAPSHOT)
    assert (snap.namespace, snap.name, snap.uid) == ("demo", "snap-1", "u-1")
    assert snap.virtual_disk_name == "linux-vm-root"
    assert snap.required_consistency is False
    assert (snap.phase, snap.consistent, snap.volume_snapshot_name) == ("Ready", True, "vs-1")
    assert snap.operation_id == "op-9"
    assert snap.labels["team"] == "db"
    assert snap.annotations == {ANNOTATION_ACTOR: "alice"}
    assert snap.resource_version == "42"
    assert snap.create_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert snap.deletion_time == datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC)
    assert [c.type for c in snap.conditions] == ["VirtualDiskReady", "VirtualDiskSnapshotReady"]
    assert snap.conditions[1].last_transition_time == datetime(2026, 1, 2, 3, 4, 9, 500000, tzinfo=UTC)


def test_disk_snapshot_without_status_is_tolerated() -> None:
    snap = disk_snapshot_from_resource({"metadata": {"name": "s", "namespace": "demo"},
                                        "spec": {"virtualDiskName": "d"}})
    assert snap.phase == ""
    assert snap.consistent is None
    assert snap.required_consistency is True  # the CRD's default
    assert snap.conditions == []
    assert snap.operation_id == ""
    assert snap.create_time is None


def test_disk_snapshot_from_hostile_shapes() -> None:
    snap = disk_snapshot_from_resource({
        "metadata": {"name": 5, "labels": {"a": 1, "b": "ok"}, "annotations": "junk"},
        "spec": "junk",
        "status": {"conditions": "junk", "consistent": "yes", "phase": ["Ready"]},
    })
    assert snap.name == ""
    assert snap.labels == {"b": "ok"}
    assert snap.annotations == {}
    assert snap.consistent is None
    assert snap.phase == ""


def test_conditions_skip_entries_without_a_type_and_default_the_status() -> None:
    obj = {"status": {"conditions": [{"status": "True"}, "junk", {"type": "Ready", "lastTransitionTime": "never"}]}}
    assert conditions_from_resource(obj) == [Condition(type="Ready", status="Unknown")]
    assert conditions_from_resource(None) == []


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("not a time", None),
    ("", None),
    (12345, None),
])
def test_parse_time(value: Any, expected: datetime | None) -> None:
    assert parse_time(value) == expected


def test_results_from_status_resources() -> None:
    obj = {"status": {"resources": [
        {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk", "name": "d1",
         "status": "Completed", "message": ""},
        {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachine", "name": "vm",
         "status": "Failed", "message": "the VM uid does not match"},
        {"kind": "VirtualDisk"},  # no name: dropped
        "junk",
    ]}}
    assert results_from_resource(obj) == [
        ResourceResult("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", "d1", "Completed"),
        ResourceResult("virtualization.deckhouse.io/v1alpha2", "VirtualMachine", "vm", "Failed",
                       "the VM uid does not match"),
    ]
    assert results_from_resource({"status": {}}) == []
    assert results_from_resource(None) == []


def test_object_ref() -> None:
    assert object_ref(FULL_SNAPSHOT) == ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDiskSnapshot",
                                                    "snap-1", "demo", "u-1")


# ---------------------------------------------------------------- phase -> operation state

R, S, F, C = OperationState.RUNNING, OperationState.SUCCEEDED, OperationState.FAILED, OperationState.CANCELLED


def with_phase(phase: str, conditions: list[Obj] | None = None) -> Obj:
    return {"metadata": {"name": "x", "namespace": "demo"}, "status": {"phase": phase, "conditions": conditions or []}}


@pytest.mark.parametrize(("kind", "phase", "state"), [
    (VIRTUAL_DISK_SNAPSHOT, "", R),
    (VIRTUAL_DISK_SNAPSHOT, "Pending", R),
    (VIRTUAL_DISK_SNAPSHOT, "InProgress", R),
    (VIRTUAL_DISK_SNAPSHOT, "Terminating", R),
    (VIRTUAL_DISK_SNAPSHOT, "Ready", S),
    (VIRTUAL_DISK_SNAPSHOT, "Failed", F),
    (VIRTUAL_MACHINE_SNAPSHOT, "InProgress", R),
    (VIRTUAL_MACHINE_SNAPSHOT, "Ready", S),
    (VIRTUAL_MACHINE_SNAPSHOT, "Failed", F),
    (VIRTUAL_MACHINE_OPERATION, "Pending", R),
    (VIRTUAL_MACHINE_OPERATION, "InProgress", R),
    (VIRTUAL_MACHINE_OPERATION, "Completed", S),
    (VIRTUAL_MACHINE_OPERATION, "Failed", F),
    (VIRTUAL_MACHINE_OPERATION, "Terminating", C),
    (VIRTUAL_MACHINE_OPERATION, "Superseded", F),
    (VIRTUAL_MACHINE_SNAPSHOT_OPERATION, "InProgress", R),
    (VIRTUAL_MACHINE_SNAPSHOT_OPERATION, "Completed", S),
    (VIRTUAL_MACHINE_SNAPSHOT_OPERATION, "Failed", F),
    (VIRTUAL_MACHINE_SNAPSHOT_OPERATION, "Terminating", C),
    (VIRTUAL_DISK, "Provisioning", R),
    (VIRTUAL_DISK, "Ready", S),
    (VIRTUAL_DISK, "WaitForFirstConsumer", S),
    (VIRTUAL_DISK, "Failed", F),
    (VIRTUAL_DISK, "PVCLost", F),
])
def test_phase_to_state_table(kind: ResourceKind, phase: str, state: OperationState) -> None:
    got_state, got_phase, error = operation_progress(kind, with_phase(phase), deleting=False)
    assert got_state is state
    assert got_phase == (phase or "Pending")
    assert (error is not None) == (state is F)


def test_failed_snapshot_takes_reason_and_message_from_the_failing_condition() -> None:
    obj = with_phase("Failed", [
        {"type": "VirtualDiskReady", "status": "True", "reason": "VirtualDiskReady"},
        {"type": "VirtualDiskSnapshotReady", "status": "False", "reason": "VirtualDiskSnapshotFailed",
         "message": "the volume snapshot failed"},
    ])
    state, phase, error = operation_progress(VIRTUAL_DISK_SNAPSHOT, obj, deleting=False)
    assert (state, phase) == (F, "Failed")
    assert error is not None
    assert (error.code, error.reason, error.message) == (
        "FAILED_PRECONDITION", "VirtualDiskSnapshotFailed", "the volume snapshot failed")


def test_failed_vmop_uses_the_completed_condition() -> None:
    obj = with_phase("Failed", [{"type": "Completed", "status": "False", "reason": "OperationFailed",
                                 "message": "the VM must be stopped"}])
    _, _, error = operation_progress(VIRTUAL_MACHINE_OPERATION, obj, deleting=False)
    assert error is not None and error.reason == "OperationFailed" and error.message == "the VM must be stopped"


def test_failed_without_conditions_still_explains_itself() -> None:
    _, _, error = operation_progress(VIRTUAL_MACHINE_SNAPSHOT, with_phase("Failed"), deleting=False)
    assert error is not None
    assert error.reason == "VirtualMachineSnapshotFailed"


def test_superseded_vmop_is_failed_with_a_reason() -> None:
    _, _, error = operation_progress(VIRTUAL_MACHINE_OPERATION, with_phase("Superseded"), deleting=False)
    assert error is not None and error.reason == "Superseded" and error.code == "ABORTED"


def test_delete_operation_succeeds_when_the_object_is_gone() -> None:
    assert operation_progress(VIRTUAL_DISK_SNAPSHOT, None, deleting=True) == (S, "Deleted", None)
    assert operation_progress(VIRTUAL_DISK_SNAPSHOT, with_phase("Terminating"), deleting=True) == (
        R, "Terminating", None)
    assert operation_progress(VIRTUAL_DISK_SNAPSHOT, with_phase(""), deleting=True) == (R, "Terminating", None)


def test_create_operation_fails_when_its_resource_vanished() -> None:
    state, _, error = operation_progress(VIRTUAL_DISK_SNAPSHOT, None, deleting=False)
    assert state is F
    assert error is not None and error.reason == "RESOURCE_DELETED"


@pytest.mark.parametrize(("conditions", "state", "phase"), [
    ([], R, "Pending"),
    ([{"type": "Ready", "status": "False", "reason": "Publishing"}], R, "Publishing"),
    ([{"type": "Ready", "status": "True", "reason": "Ready"}], S, "Ready"),
    ([{"type": "Ready", "status": "False", "reason": "Expired", "message": "ttl 2m passed"}], F, "Expired"),
])
def test_data_export_progress(conditions: list[Obj], state: OperationState, phase: str) -> None:
    obj = {"metadata": {"name": "e"}, "status": {"conditions": conditions}}
    got_state, got_phase, error = operation_progress(DATA_EXPORT, obj, deleting=False)
    assert (got_state, got_phase) == (state, phase)
    if state is F:
        assert error is not None and error.reason == "Expired" and error.message == "ttl 2m passed"


# ---------------------------------------------------------------- the guide's consistency rule


def disk(*attached: tuple[str, bool | None]) -> Obj:
    entries: list[Obj] = []
    for name, mounted in attached:
        entry: Obj = {"name": name}
        if mounted is not None:
            entry["mounted"] = mounted
        entries.append(entry)
    return {"metadata": {"name": "linux-vm-root", "namespace": "demo"},
            "status": {"attachedToVirtualMachines": entries}}


def vm(name: str, phase: str, agent: str | None) -> Obj:
    conditions = [] if agent is None else [{"type": "AgentReady", "status": agent}]
    return {"metadata": {"name": name, "namespace": "demo"}, "status": {"phase": phase, "conditions": conditions}}


def test_running_vm_without_agent_warns() -> None:
    warning = consistency_warning(disk(("linux-vm", True)), [vm("linux-vm", "Running", None)], True)
    assert warning is not None
    assert "linux-vm" in warning and "Pending" in warning and "PotentiallyInconsistent" in warning
    assert "required_consistency=false" in warning


def test_running_vm_with_agent_not_ready_warns() -> None:
    assert consistency_warning(disk(("linux-vm", None)), [vm("linux-vm", "Running", "False")], True) is not None


@pytest.mark.parametrize(("the_disk", "vms", "required"), [
    (disk(("linux-vm", True)), [vm("linux-vm", "Running", None)], False),     # consistency not required
    (disk(("linux-vm", True)), [vm("linux-vm", "Running", "True")], True),    # the agent can freeze
    (disk(("linux-vm", True)), [vm("linux-vm", "Stopped", None)], True),      # VM is off
    (disk(), [vm("linux-vm", "Running", None)], True),                        # disk is detached
    (disk(("linux-vm", False)), [vm("linux-vm", "Running", None)], True),     # attached but not mounted
    (disk(("linux-vm", True)), [], True),                                     # VM unknown: nothing to say
    ({"metadata": {"name": "d"}}, [vm("linux-vm", "Running", None)], True),   # no status yet
])
def test_no_warning(the_disk: Obj, vms: list[Obj], required: bool) -> None:
    assert consistency_warning(the_disk, vms, required) is None


def test_warning_names_the_running_vm_among_several() -> None:
    warning = consistency_warning(
        disk(("stopped-vm", True), ("busy-vm", True)),
        [vm("stopped-vm", "Stopped", None), vm("busy-vm", "Running", None)], True)
    assert warning is not None and "busy-vm" in warning and "stopped-vm" not in warning
