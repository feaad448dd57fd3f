"""VirtualMachineOperation type Restore: uid check, per-resource conflicts, DryRun/Strict/BestEffort."""

from __future__ import annotations

import copy
from typing import Any

from service.embedded_cluster.contracts import Obj, ObjectStore

from .kube import annotation, meta, name_of, phase, spec, status, uid_of
from .operations import disk_from_snapshot, drop_images, entry, missing_images
from .queries import disk_names, safe_list
from .resources import (
    ANN_MAINTENANCE,
    API_VERSION,
    KIND_SECRET,
    KIND_VD,
    KIND_VM,
    KIND_VMIP,
    KIND_VMMAC,
    SECRET,
    VD,
    VM,
    VMIP,
    VMMAC,
)
from .runtime import Reconciler
from .saved import SavedMachine


def restore_plan(store: ObjectStore, namespace: str, vm: Obj, saved: SavedMachine, mode: str) -> tuple[list[Obj], bool]:
    """Per-resource report of a restore, and whether it has conflicts."""
    entries: list[Obj] = [entry(KIND_VM, saved.name, "InProgress")]
    conflict = False
    vms = [v for v in safe_list(store, VM, namespace, read_only=True) if name_of(v) != saved.name]
    for disk in saved.disks:
        users = [name_of(v) for v in vms if disk.name in disk_names(v)]
        if users:
            entries.append(entry(KIND_VD, disk.name, "Failed",
                                 f"The virtual disk {disk.name!r} is attached to another virtual machine "
                                 f"{users[0]!r}."))
            conflict = True
        else:
            entries.append(entry(KIND_VD, disk.name, "InProgress"))
    if saved.ip_name:
        holder = _address_holder(store, VMIP, saved.ip_name, saved.ip_address, saved.name)
        if holder:
            entries.append(entry(KIND_VMIP, saved.ip_name, "Failed",
                                 f"The IP address {saved.ip_address} is in use by the virtual machine {holder!r}."))
            conflict = True
        else:
            entries.append(entry(KIND_VMIP, saved.ip_name, "InProgress"))
    for mac_name, address in sorted(saved.macs.items()):
        holder = _address_holder(store, VMMAC, mac_name, address, saved.name)
        if holder:
            entries.append(entry(KIND_VMMAC, mac_name, "Failed",
                                 f"The MAC address {address} is in use by the virtual machine {holder!r}."))
            conflict = True
        else:
            entries.append(entry(KIND_VMMAC, mac_name, "InProgress"))
    for secret in sorted(saved.secrets):
        entries.append(entry(KIND_SECRET, secret, "InProgress", api_version="v1"))
    for kind, image in missing_images(store, namespace, saved.spec):
        message = (f"The {kind} {image!r} is not found: removed from the virtual machine's block devices."
                   if mode == "BestEffort" else
                   f"The {kind} {image!r} is not found: the virtual machine will stay Pending until it exists.")
        entries.append(entry(kind, image, "Completed", message))
    return entries, conflict


def _address_holder(store: ObjectStore, resource: str, name: str, address: str, vm_name: str) -> str:
    """The other VM that holds ``address`` (or the address object ``name``), if any."""
    for obj in safe_list(store, resource, read_only=True):
        holder = str(status(obj).get("virtualMachineName") or "")
        same = name_of(obj) == name or (address and status(obj).get("address") == address)
        if same and holder and holder != vm_name:
            return holder
    return ""


async def apply_restore(reconciler: Reconciler, namespace: str, vm: Obj, saved: SavedMachine, mode: str) -> None:
    """Bring back the snapshot's VM (spec), disks (from their snapshots), addresses and secrets."""
    store = reconciler.store
    for secret_name, secret in saved.secrets.items():
        if store.get(SECRET, namespace, secret_name) is None:
            await reconciler.create(SECRET, {"apiVersion": "v1", "kind": "Secret", "type": secret.get("type", "Opaque"),
                                             "metadata": {"name": secret_name, "namespace": namespace},
                                             "data": secret.get("data") or {}})
    if saved.ip_name and store.get(VMIP, namespace, saved.ip_name) is None:
        static = saved.ip_type == "Static" and saved.ip_address
        ip_spec: Obj = {"type": "Static", "staticIP": saved.ip_address} if static else {"type": "Auto"}
        await reconciler.create(VMIP, {"apiVersion": API_VERSION, "kind": KIND_VMIP,
                                       "metadata": {"name": saved.ip_name, "namespace": namespace}, "spec": ip_spec})
    for mac_name, address in saved.macs.items():
        if store.get(VMMAC, namespace, mac_name) is None:
            await reconciler.create(VMMAC, {"apiVersion": API_VERSION, "kind": KIND_VMMAC,
                                            "metadata": {"name": mac_name, "namespace": namespace},
                                            "spec": {"address": address} if address else {}})
    for disk in saved.disks:
        await reconciler.delete(VD, namespace, disk.name)
        await reconciler.create(VD, disk_from_snapshot(namespace, disk.name, disk))
    vm_spec = copy.deepcopy(saved.spec)
    if mode == "BestEffort":
        vm_spec = drop_images(vm_spec, missing_images(store, namespace, vm_spec))
    vm["spec"] = vm_spec
    metadata = meta(vm)
    metadata["labels"] = dict(saved.labels)
    metadata["annotations"] = {**saved.annotations, ANN_MAINTENANCE: annotation(vm, ANN_MAINTENANCE)}
    await reconciler.write(VM, vm)


async def hold_stopped(reconciler: Reconciler, vm: Obj, holder: str) -> bool:
    """Keep the VM stopped while the operation ``holder`` restores it (empty holder: release it);
    True once it is Stopped (or released)."""
    hold = bool(holder)
    annotations = meta(vm).setdefault("annotations", {})
    if hold and ANN_MAINTENANCE not in annotations:
        annotations[ANN_MAINTENANCE] = holder
        await reconciler.write(VM, vm)
        return False
    if not hold and ANN_MAINTENANCE in annotations:
        annotations.pop(ANN_MAINTENANCE)
        await reconciler.write(VM, vm)
        return True
    return not hold or phase(vm) == "Stopped"


def uid_mismatch(vm: Obj | None, saved: SavedMachine) -> str:
    if vm is None:
        return f"The virtual machine {saved.name!r} does not exist: it must exist to be restored."
    if uid_of(vm) != saved.uid:
        return (f"The virtual machine {saved.name!r} has uid {uid_of(vm)}, but the snapshot was taken of uid "
                f"{saved.uid}.")
    return ""


def restore_params(op: Obj) -> tuple[str, str]:
    params: dict[str, Any] = spec(op).get("restore") or {}
    return str(params.get("virtualMachineSnapshotName") or ""), str(params.get("mode") or "Strict")
