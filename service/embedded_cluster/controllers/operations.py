"""Pieces shared by the operation controllers (VMOP Restore/Clone, VMSOP CreateVirtualMachine)."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from service.embedded_cluster.contracts import Obj, ObjectStore

from .kube import set_condition, spec
from .queries import image_for_ref
from .resources import API_VERSION, KIND_CVI, KIND_VD, KIND_VDSNAPSHOT, KIND_VI, KIND_VM, VD, VM
from .saved import SavedDisk, SavedMachine

COMPLETED = "Completed"
Renamer = Callable[[str, str], str]


def entry(kind: str, name: str, state: str, message: str = "", api_version: str = API_VERSION) -> Obj:
    return {"apiVersion": api_version, "kind": kind, "name": name, "status": state, "message": message}


def set_outcome(st: dict[str, Any], op_phase: str, reason: str, message: str, generation: int) -> None:
    st["phase"] = op_phase
    set_condition(st, COMPLETED, "True" if op_phase == "Completed" else "False", reason, message, generation)


def renamer(params: Obj) -> Renamer:
    """prefix + (replacement or original name) + suffix, as clone.customization / nameReplacement say."""
    customization = params.get("customization") or {}
    prefix, suffix = str(customization.get("namePrefix") or ""), str(customization.get("nameSuffix") or "")
    replacements: dict[tuple[str, str], str] = {}
    for item in params.get("nameReplacement") or []:
        source = item.get("from") or {}
        replacements[(str(source.get("kind") or ""), str(source.get("name")))] = str(item.get("to"))

    def rename(kind: str, name: str) -> str:
        base = replacements.get((kind, name)) or replacements.get(("", name)) or name
        return f"{prefix}{base}{suffix}"
    return rename


def missing_images(store: ObjectStore, namespace: str, vm_spec: Obj) -> list[tuple[str, str]]:
    return [(str(r.get("kind")), str(r.get("name"))) for r in vm_spec.get("blockDeviceRefs") or []
            if r.get("kind") in (KIND_VI, KIND_CVI)
            and image_for_ref(store, namespace, str(r.get("kind")), str(r.get("name"))) is None]


def drop_images(vm_spec: Obj, images: list[tuple[str, str]]) -> Obj:
    trimmed = copy.deepcopy(vm_spec)
    trimmed["blockDeviceRefs"] = [r for r in vm_spec.get("blockDeviceRefs") or []
                                  if (str(r.get("kind")), str(r.get("name"))) not in images]
    return trimmed


def disk_from_snapshot(namespace: str, name: str, disk: SavedDisk, labels: dict[str, str] | None = None) -> Obj:
    """A VirtualDisk whose data comes from a VirtualDiskSnapshot (the dataSource stays after that is gone)."""
    ref = {"kind": KIND_VDSNAPSHOT, "name": disk.snapshot}
    disk_spec: Obj = {"dataSource": {"type": "ObjectRef", "objectRef": ref}}
    pvc = {k: v for k, v in (disk.spec.get("persistentVolumeClaim") or {}).items() if k in ("size", "storageClassName")}
    if pvc:
        disk_spec["persistentVolumeClaim"] = pvc
    metadata: Obj = {"name": name, "namespace": namespace}
    if labels or disk.labels:
        metadata["labels"] = {**disk.labels, **(labels or {})}
    return {"apiVersion": API_VERSION, "kind": KIND_VD, "metadata": metadata, "spec": disk_spec}


def clone_plan(store: ObjectStore, namespace: str, saved: SavedMachine, rename: Renamer,
               mode: str) -> tuple[list[Obj], bool, Obj]:
    """Resources a clone creates, whether any conflicts, and the new VM's spec."""
    entries: list[Obj] = []
    conflict = False
    vm_name = rename(KIND_VM, saved.name)
    if store.get(VM, namespace, vm_name) is not None:
        entries.append(entry(KIND_VM, vm_name, "Failed", f"The virtual machine {vm_name!r} already exists."))
        conflict = True
    else:
        entries.append(entry(KIND_VM, vm_name, "InProgress"))
    renamed: dict[str, str] = {}
    for disk in saved.disks:
        new_name = renamed[disk.name] = rename(KIND_VD, disk.name)
        if store.get(VD, namespace, new_name) is not None:
            entries.append(entry(KIND_VD, new_name, "Failed", f"The virtual disk {new_name!r} already exists."))
            conflict = True
        else:
            entries.append(entry(KIND_VD, new_name, "InProgress"))
    vm_spec = copy.deepcopy(saved.spec)
    vm_spec.pop("virtualMachineIPAddressName", None)      # a clone gets a new IP address ...
    for net in vm_spec.get("networks") or []:
        net.pop("virtualMachineMACAddressName", None)      # ... and new MAC addresses
    for ref in vm_spec.get("blockDeviceRefs") or []:
        if ref.get("kind") == KIND_VD:
            ref["name"] = renamed.get(str(ref.get("name")), ref.get("name"))
    images = missing_images(store, namespace, vm_spec)
    for kind, image in images:
        if mode == "BestEffort":
            entries.append(entry(kind, image, "Completed", f"The {kind} {image!r} is not found: removed from the "
                                                           "virtual machine's block devices."))
        else:
            entries.append(entry(kind, image, "Failed", f"The {kind} {image!r} is not found."))
            conflict = conflict or mode == "Strict"
    if mode == "BestEffort":
        vm_spec = drop_images(vm_spec, images)
    return entries, conflict, vm_spec


async def create_clone(create: Callable[[str, Obj], Awaitable[Obj]], namespace: str, saved: SavedMachine,
                       rename: Renamer, vm_spec: Obj) -> None:
    for disk in saved.disks:
        await create(VD, disk_from_snapshot(namespace, rename(KIND_VD, disk.name), disk))
    await create(VM, {"apiVersion": API_VERSION, "kind": KIND_VM,
                      "metadata": {"name": rename(KIND_VM, saved.name), "namespace": namespace,
                                   "labels": dict(saved.labels), "annotations": dict(saved.annotations)},
                      "spec": vm_spec})


def complete_entries(entries: list[Obj]) -> list[Obj]:
    return [{**e, "status": "Completed"} if e.get("status") == "InProgress" else e for e in entries]


def clone_disks_ready(store: ObjectStore, namespace: str, saved: SavedMachine, rename: Renamer) -> bool:
    disks = [store.get(VD, namespace, rename(KIND_VD, d.name)) for d in saved.disks]
    return all(d is not None and d.get("status", {}).get("phase") == "Ready" for d in disks)


def vm_name_of(op: Obj) -> str:
    return str(spec(op).get("virtualMachineName") or "")

