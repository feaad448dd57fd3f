"""VirtualDisk: provisioning (blank, from an image or from a disk snapshot), resizing, attachment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.embedded_cluster.contracts import Obj, StoreEvent

from .images import IMAGE_SIZE
from .kube import (
    annotation,
    format_quantity,
    generation_of,
    meta,
    name_of,
    namespace_of,
    parse_quantity,
    phase,
    set_condition,
    spec,
    status,
    uid_of,
)
from .queries import image_for_ref, vm_is_live, vms_using_disk
from .resources import (
    ANN_CONTENT_SEED,
    ANN_RESIZE_HOLD,
    ANN_SOURCE_SIZE,
    CVI,
    KIND_VDSNAPSHOT,
    VD,
    VDSNAPSHOT,
    VI,
    VM,
)
from .runtime import Mapper, Reconciler

DEFAULT_DISK_SIZE = 10 << 30
DEFAULT_STORAGE_CLASS = "local-thin"


@dataclass(frozen=True)
class Source:
    """What a disk's data comes from, once the data source is ready."""

    seed: str = ""
    size: int = 0            # the minimal (and default) size
    waiting_reason: str = ""
    message: str = ""


class DiskReconciler(Reconciler):
    resource = VD

    def watches(self) -> dict[str, Mapper]:
        same = self.same_namespace()
        return {VM: same, VDSNAPSHOT: self._disks_touched_by_snapshot, VI: same, CVI: lambda e: self._all_keys()}

    def _disks_touched_by_snapshot(self, event: StoreEvent) -> list[tuple[str, str]]:
        """The snapshot's own disk (its Snapshotting condition) and disks restoring from it."""
        namespace, snapshot = namespace_of(event.object), name_of(event.object)
        keys = {(namespace, str(spec(event.object).get("virtualDiskName") or ""))}
        for disk in self.safe_list(VD, namespace, read_only=True):
            ref = (spec(disk).get("dataSource") or {}).get("objectRef") or {}
            if ref.get("kind") == "VirtualDiskSnapshot" and ref.get("name") == snapshot:
                keys.add((namespace, name_of(disk)))
        return [key for key in keys if key[1]]

    def _all_keys(self) -> list[tuple[str, str]]:
        return [(o["metadata"].get("namespace", ""), name_of(o)) for o in self.safe_list(VD, read_only=True)]

    async def reconcile(self, namespace: str, name: str) -> float | None:
        disk = self.store.get(VD, namespace, name)
        if disk is None:
            return None
        st = dict(status(disk))
        st["attachedToVirtualMachines"] = [
            {"name": name_of(vm), "mounted": vm_is_live(vm)} for vm in vms_using_disk(self.store, namespace, name)]
        generation = generation_of(disk)
        if disk["metadata"].get("deletionTimestamp"):
            st["phase"] = "Terminating"
        elif not annotation(disk, ANN_CONTENT_SEED):
            return await self._provision_source(disk, st)
        else:
            self._advance(disk, st)
            self._snapshotting(disk, st)
        st["observedGeneration"] = generation
        await self.write_status(VD, disk, st)
        return None

    def _source(self, disk: Obj) -> Source:
        data_source = spec(disk).get("dataSource") or {}
        ref = data_source.get("objectRef") or {}
        if data_source.get("type") != "ObjectRef" or not ref:
            return Source(seed=f"{data_source.get('type', 'Blank')}:{uid_of(disk)}", size=0)
        kind, ref_name = str(ref.get("kind")), str(ref.get("name"))
        if kind == KIND_VDSNAPSHOT:
            snapshot = self.store.get(VDSNAPSHOT, disk["metadata"]["namespace"], ref_name)
            if snapshot is None or phase(snapshot) != "Ready" or not annotation(snapshot, ANN_CONTENT_SEED):
                return Source(waiting_reason="VirtualDiskSnapshotNotReady",
                              message=f"Waiting for the virtual disk snapshot {ref_name!r} to be ready.")
            return Source(seed=annotation(snapshot, ANN_CONTENT_SEED),
                          size=parse_quantity(annotation(snapshot, ANN_SOURCE_SIZE)) or 0)
        image = image_for_ref(self.store, disk["metadata"]["namespace"], kind, ref_name)
        if image is None or phase(image) != "Ready":
            reason = "ClusterImageNotReady" if kind == "ClusterVirtualImage" else "ImageNotReady"
            return Source(waiting_reason=reason, message=f"Waiting for the {kind} {ref_name!r} to be ready.")
        return Source(seed=f"{kind}:{ref_name}:{uid_of(image)}", size=IMAGE_SIZE)

    async def _provision_source(self, disk: Obj, st: dict[str, Any]) -> float | None:
        generation = generation_of(disk)
        source = self._source(disk)
        st["observedGeneration"] = generation
        if not source.seed:
            st["phase"] = "Pending"
            set_condition(st, "DatasourceReady", "False", source.waiting_reason, source.message, generation)
            set_condition(st, "Ready", "False", "ProvisioningNotStarted", "Waiting for the data source to be ready.",
                          generation)
            await self.write_status(VD, disk, st)
            return None
        requested = parse_quantity((spec(disk).get("persistentVolumeClaim") or {}).get("size"))
        size = requested if requested is not None else (source.size or DEFAULT_DISK_SIZE)
        if size < source.size:
            st["phase"] = "Failed"
            set_condition(st, "DatasourceReady", "True", "DatasourceReady", "", generation)
            set_condition(
                st, "Ready", "False", "ProvisioningFailed",
                f"The requested size {format_quantity(size)} is smaller than the size of the data source "
                f"{format_quantity(source.size)}: the size must be the same or larger.", generation)
            await self.write_status(VD, disk, st)
            return None
        if phase(disk) == "":
            st["phase"] = "Pending"
            set_condition(st, "DatasourceReady", "True", "DatasourceReady", "", generation)
            set_condition(st, "Ready", "False", "Provisioning", "Waiting for the disk to be provisioned.",
                          generation)
            await self.write_status(VD, disk, st)
            return None
        annotations = meta(disk).setdefault("annotations", {})
        annotations[ANN_CONTENT_SEED] = source.seed
        annotations[ANN_SOURCE_SIZE] = str(size)
        disk = await self.write(VD, disk)
        st["phase"] = "Provisioning"
        st["progress"] = "0%"
        set_condition(st, "DatasourceReady", "True", "DatasourceReady", "", generation)
        set_condition(st, "Ready", "False", "Provisioning", "The disk is being provisioned.", generation)
        await self.write_status(VD, disk, st)
        return None

    def _snapshotting(self, disk: Obj, st: dict[str, Any]) -> None:
        """The disk's Snapshotting condition mirrors its snapshots in progress."""
        taking = [name_of(s) for s in self.safe_list(VDSNAPSHOT, disk["metadata"]["namespace"], read_only=True)
                  if spec(s).get("virtualDiskName") == name_of(disk) and phase(s) == "InProgress"]
        if taking:
            set_condition(st, "Snapshotting", "True", "Snapshotting",
                          f"The virtual disk is being snapshotted ({', '.join(taking)}).", generation_of(disk))
        elif phase(disk) in ("Ready", "Resizing", "Provisioning"):
            set_condition(st, "Snapshotting", "False", "NotRequested", "", generation_of(disk))

    def _advance(self, disk: Obj, st: dict[str, Any]) -> None:
        generation = generation_of(disk)
        pvc = spec(disk).get("persistentVolumeClaim") or {}
        requested = parse_quantity(pvc.get("size"))
        current = phase(disk)
        capacity = parse_quantity(st.get("capacity")) or 0
        if current in ("", "Pending", "Provisioning"):
            size = parse_quantity(annotation(disk, ANN_SOURCE_SIZE)) or DEFAULT_DISK_SIZE
            st.update({
                "phase": "Ready", "progress": "100%", "capacity": format_quantity(size),
                "storageClassName": pvc.get("storageClassName") or DEFAULT_STORAGE_CLASS,
                "target": {"persistentVolumeClaimName": f"vd-{name_of(disk)}-{uid_of(disk)}"},
            })
            set_condition(st, "Ready", "True", "Ready", "", generation)
            set_condition(st, "Resized", "False", "NotRequested", "", generation)
        elif current == "Ready" and requested is not None and requested > capacity:
            st["phase"] = "Resizing"
            set_condition(st, "Resized", "False", "InProgress", "The virtual disk is in the process of resizing.",
                          generation)
        elif current == "Ready" and requested is not None and requested < capacity:
            set_condition(st, "Resized", "False", "TooSmallDiskSize",
                          "The virtual disk size cannot be reduced.", generation)
        elif current == "Resizing" and annotation(disk, ANN_RESIZE_HOLD) != "true":
            size = max(requested or 0, capacity)
            st["phase"] = "Ready"
            st["capacity"] = format_quantity(size)
            set_condition(st, "Resized", "True", "Resized", "", generation)
        elif current == "Failed" and st.get("observedGeneration") != generation:
            st["phase"] = "Pending"
