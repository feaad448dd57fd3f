"""VirtualDiskSnapshot: the consistency rules (detached / stopped VM / fsfreeze via the guest agent)."""

from __future__ import annotations

from typing import Any

from service.embedded_cluster.contracts import Obj

from .kube import (
    annotation,
    condition_true,
    generation_of,
    meta,
    name_of,
    namespace_of,
    parse_quantity,
    phase,
    set_condition,
    spec,
    status,
)
from .queries import can_freeze, disk_names, frozen_by, vm_is_live, vm_of_disk
from .resources import (
    ANN_CONTENT_SEED,
    ANN_FROZEN_BY,
    ANN_FSFREEZE,
    ANN_SOURCE_SIZE,
    VD,
    VDSNAPSHOT,
    VDSNAPSHOT_FINALIZER,
    VM,
)
from .runtime import Mapper, Reconciler

READY = "VirtualDiskSnapshotReady"


async def set_frozen_by(reconciler: Reconciler, vm: Obj, holder: str) -> None:
    """Freeze (holder set) or thaw (holder empty) the guest's filesystems."""
    annotations = meta(vm).setdefault("annotations", {})
    if holder:
        annotations[ANN_FROZEN_BY] = holder
    else:
        annotations.pop(ANN_FROZEN_BY, None)
    await reconciler.write(VM, vm)


async def start_terminating(reconciler: Reconciler, resource: str, snap: Obj, st: dict[str, Any], vm: Obj | None,
                            holder: str, ready_condition: str) -> bool:
    """A snapshot's first steps on deletion, shared by disk and VM snapshots: thaw the guest
    if this snapshot froze it, then show Terminating. True when that status was written
    (the caller re-queues and finishes the clean-up on the next pass)."""
    if vm is not None and frozen_by(vm) == holder:
        await set_frozen_by(reconciler, vm, "")
    if phase(snap) == "Terminating":
        return False
    st["phase"] = "Terminating"
    set_condition(st, ready_condition, "Unknown", "Unknown", "", generation_of(snap))
    await reconciler.write_status(resource, snap, st)
    return True


async def remove_finalizer(reconciler: Reconciler, resource: str, obj: Obj, finalizer: str) -> None:
    finalizers = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
    obj["metadata"]["finalizers"] = finalizers
    # On an object being deleted, the API server removes it once its last finalizer is gone.
    await reconciler.write(resource, obj)


async def ensure_finalizer(reconciler: Reconciler, resource: str, obj: Obj, finalizer: str) -> Obj:
    finalizers = list(obj["metadata"].get("finalizers") or [])
    if finalizer in finalizers:
        return obj
    obj["metadata"]["finalizers"] = [*finalizers, finalizer]
    return await reconciler.write(resource, obj)


class DiskSnapshotReconciler(Reconciler):
    resource = VDSNAPSHOT

    def watches(self) -> dict[str, Mapper]:
        # Only the snapshots of the disk that changed (or of the VM's disks): re-queueing a
        # whole namespace per event made every create cost O(snapshots in the namespace).
        return {VD: lambda e: self._snapshots_of(namespace_of(e.object), {name_of(e.object)}),
                VM: lambda e: self._snapshots_of(namespace_of(e.object), set(disk_names(e.object)))}

    def _snapshots_of(self, namespace: str, disks: set[str]) -> list[tuple[str, str]]:
        if not disks:
            return []
        # A Ready or Failed snapshot no longer depends on its disk or VM.
        return [(namespace, name_of(s)) for s in self.safe_list(VDSNAPSHOT, namespace, read_only=True)
                if spec(s).get("virtualDiskName") in disks and phase(s) not in ("Ready", "Failed")]

    async def reconcile(self, namespace: str, name: str) -> float | None:
        snap = self.store.get(VDSNAPSHOT, namespace, name)
        if snap is None:
            return None
        holder = f"{VDSNAPSHOT}/{name}"
        disk_name = str(spec(snap).get("virtualDiskName", ""))
        disk = self.store.get(VD, namespace, disk_name)
        vm = vm_of_disk(self.store, namespace, disk_name) if disk is not None else None
        st = dict(status(snap))
        generation = generation_of(snap)
        st["observedGeneration"] = generation
        if snap["metadata"].get("deletionTimestamp"):
            return await self._terminate(snap, st, vm, holder)
        snap = await ensure_finalizer(self, VDSNAPSHOT, snap, VDSNAPSHOT_FINALIZER)
        current = phase(snap)
        if current in ("Ready", "Failed"):
            return None
        if current == "":
            st["phase"] = "Pending"
        if disk is None or phase(disk) != "Ready":
            st["phase"] = "Pending"
            message = f"Waiting for the virtual disk {disk_name!r} to be ready for snapshotting."
            set_condition(st, "VirtualDiskReady", "False", "WaitingForTheVirtualDisk", message, generation)
            set_condition(st, READY, "False", "WaitingForTheVirtualDisk", message, generation)
            await self.write_status(VDSNAPSHOT, snap, st)
            return None
        set_condition(st, "VirtualDiskReady", "True", "VirtualDiskReady", "", generation)
        await self._step(snap, st, disk, vm, holder)
        return None

    async def _terminate(self, snap: Obj, st: dict[str, Any], vm: Obj | None, holder: str) -> float | None:
        if await start_terminating(self, VDSNAPSHOT, snap, st, vm, holder, READY):
            return 0.0
        if VDSNAPSHOT_FINALIZER in (snap["metadata"].get("finalizers") or []):
            await remove_finalizer(self, VDSNAPSHOT, snap, VDSNAPSHOT_FINALIZER)
        return None

    async def _step(self, snap: Obj, st: dict[str, Any], disk: Obj, vm: Obj | None, holder: str) -> None:
        generation = generation_of(snap)
        disk_name = name_of(disk)
        frozen = vm is not None and bool(frozen_by(vm))
        frozen_here = vm is not None and frozen_by(vm) == holder
        # A guest frozen by someone else (a VM snapshot) is consistent too; only its holder thaws it.
        if not st.get("volumeSnapshotName") and vm_is_live(vm) and not frozen:
            assert vm is not None
            if can_freeze(vm):
                if st["phase"] == "Pending":
                    st["phase"] = "InProgress"
                    set_condition(st, READY, "False", "Snapshotting", "The snapshotting process has started.",
                                  generation)
                    await self.write_status(VDSNAPSHOT, snap, st)
                    return
                await self._freeze(snap, st, vm, holder)
                return
            if spec(snap).get("requiredConsistency", True):
                st["phase"] = "Pending"
                set_condition(st, READY, "False", "PotentiallyInconsistent",
                              self._inconsistent_message(vm, disk_name), generation)
                await self.write_status(VDSNAPSHOT, snap, st)
                return
        if st["phase"] == "Pending":
            st["phase"] = "InProgress"
            set_condition(st, READY, "False", "Snapshotting", "The snapshotting process has started.", generation)
            await self.write_status(VDSNAPSHOT, snap, st)
            return
        if not st.get("volumeSnapshotName"):
            await self._take(snap, st, disk, consistent=frozen or not vm_is_live(vm))
            return
        await self._finish(snap, st, vm, frozen_here)

    def _inconsistent_message(self, vm: Obj, disk_name: str) -> str:
        if not condition_true(vm, "AgentReady"):
            return (f"The virtual machine {name_of(vm)!r} with an attached virtual disk {disk_name!r} is {phase(vm)}: "
                    "the snapshotting of virtual disk might result in an inconsistent snapshot: virtual machine agent "
                    "is not ready and virtual machine cannot be frozen: waiting for virtual machine agent to be "
                    "ready, or virtual machine will stop")
        return (f"The virtual machine {name_of(vm)!r} with an attached virtual disk {disk_name!r} is {phase(vm)}: "
                "the snapshotting of virtual disk might result in an inconsistent snapshot: waiting for the virtual "
                "machine to be Stopped or the disk to be detached")

    async def _freeze(self, snap: Obj, st: dict[str, Any], vm: Obj, holder: str) -> None:
        generation = generation_of(snap)
        if annotation(vm, ANN_FSFREEZE) == "fail":
            st["phase"] = "Failed"
            set_condition(st, READY, "False", "VirtualDiskSnapshotFailed",
                          f"Failed to freeze the filesystem of the virtual machine {name_of(vm)!r}: "
                          "the guest agent reported an fsfreeze error.", generation)
            await self.write_status(VDSNAPSHOT, snap, st)
            return
        await set_frozen_by(self, vm, holder)
        st["phase"] = "InProgress"
        set_condition(st, READY, "False", "FileSystemFreezing",
                      f"The virtual machine {name_of(vm)!r} with an attached virtual disk "
                      f"{spec(snap).get('virtualDiskName')!r} is in the process of being frozen for taking a snapshot.",
                      generation)
        await self.write_status(VDSNAPSHOT, snap, st)

    async def _take(self, snap: Obj, st: dict[str, Any], disk: Obj, *, consistent: bool) -> None:
        """The VolumeSnapshot of the simulation: the disk's content seed and size, frozen in time."""
        annotations = meta(snap).setdefault("annotations", {})
        annotations[ANN_CONTENT_SEED] = annotation(disk, ANN_CONTENT_SEED)
        annotations[ANN_SOURCE_SIZE] = str(parse_quantity(status(disk).get("capacity")) or 0)
        snap = await self.write(VDSNAPSHOT, snap)
        st["phase"] = "InProgress"
        st["volumeSnapshotName"] = name_of(snap)
        if consistent:
            st["consistent"] = True
        set_condition(st, READY, "False", "Snapshotting",
                      f"The snapshotting process for virtual disk {name_of(disk)!r} has started.", generation_of(snap))
        await self.write_status(VDSNAPSHOT, snap, st)

    async def _finish(self, snap: Obj, st: dict[str, Any], vm: Obj | None, frozen_here: bool) -> None:
        generation = generation_of(snap)
        if frozen_here:
            assert vm is not None
            await set_frozen_by(self, vm, "")
            set_condition(st, READY, "False", "FileSystemUnfreezing",
                          f"The virtual machine {name_of(vm)!r} is in the process of being unfrozen.", generation)
            await self.write_status(VDSNAPSHOT, snap, st)
            return
        st["phase"] = "Ready"
        set_condition(st, READY, "True", "VirtualDiskSnapshotReady", "", generation)
        await self.write_status(VDSNAPSHOT, snap, st)
