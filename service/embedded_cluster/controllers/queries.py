"""Read-only questions several controllers ask of the store."""

from __future__ import annotations

import copy

from service.embedded_cluster.contracts import Obj, ObjectStore, StatusError

from .kube import annotation, condition_true, phase, spec
from .resources import ANN_FROZEN_BY, CVI, KIND_CVI, KIND_VD, KIND_VI, VI, VM

# VM phases in which a guest is (or is becoming) alive: its disks are in use.
LIVE_VM_PHASES = frozenset({"Starting", "Running", "Degraded", "Stopping", "Migrating", "Pause"})
# VM phases whose KubeVirt instance is in phase Running with a guest that answers its agent: the real
# SnapshotService.CanFreeze checks the instance's phase (Running, also during a live migration) and
# its AgentConnected condition, not the VirtualMachine's phase.
FREEZABLE_VM_PHASES = frozenset({"Running", "Migrating"})


def safe_list(store: ObjectStore, resource: str, namespace: str | None = None, *,
              read_only: bool = False) -> list[Obj]:
    """``read_only=True`` for scans that never change what they read: no copies (hot path)."""
    try:
        return store.list(resource, namespace, read_only=read_only)
    except StatusError:
        return []


def block_device_refs(vm: Obj) -> list[Obj]:
    return [r for r in spec(vm).get("blockDeviceRefs") or [] if isinstance(r, dict)]


def disk_names(vm: Obj) -> list[str]:
    return [str(r.get("name")) for r in block_device_refs(vm) if r.get("kind") == KIND_VD]


def vms_using_disk(store: ObjectStore, namespace: str, disk: str) -> list[Obj]:
    # Scan without copying; the few matches are copied because callers may edit them.
    return [copy.deepcopy(vm) for vm in safe_list(store, VM, namespace, read_only=True) if disk in disk_names(vm)]


def vm_is_live(vm: Obj | None) -> bool:
    return vm is not None and phase(vm) in LIVE_VM_PHASES


def vm_of_disk(store: ObjectStore, namespace: str, disk: str) -> Obj | None:
    """The VM a disk is attached to (a disk is attached to at most one VM here)."""
    vms = vms_using_disk(store, namespace, disk)
    return vms[0] if vms else None


def can_freeze(vm: Obj) -> bool:
    return phase(vm) in FREEZABLE_VM_PHASES and condition_true(vm, "AgentReady")


def frozen_by(vm: Obj) -> str:
    return annotation(vm, ANN_FROZEN_BY)


def image_for_ref(store: ObjectStore, namespace: str, kind: str, name: str) -> Obj | None:
    if kind == KIND_VI:
        return store.get(VI, namespace, name)
    if kind == KIND_CVI:
        return store.get(CVI, None, name)
    return None
