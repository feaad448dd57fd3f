"""VirtualMachineSnapshot: block-device checks, freeze, one VirtualDiskSnapshot per disk, a config Secret."""

from __future__ import annotations

from typing import Any

from service.embedded_cluster.contracts import Obj

from .disk_snapshots import ensure_finalizer, remove_finalizer, set_frozen_by, start_terminating
from .kube import (
    annotation,
    condition_true,
    generation_of,
    name_of,
    owner_reference,
    phase,
    set_condition,
    spec,
    status,
)
from .machines import ip_address_name
from .queries import block_device_refs, can_freeze, disk_names, frozen_by, vm_is_live
from .resources import (
    ANN_FSFREEZE,
    API_VERSION,
    KIND_VD,
    KIND_VDSNAPSHOT,
    SECRET,
    VD,
    VDSNAPSHOT,
    VM,
    VMIP,
    VMMAC,
    VMSNAPSHOT,
    VMSNAPSHOT_FINALIZER,
)
from .runtime import Mapper, Reconciler
from .saved import SavedMachine, capture, provisioning_secret_names, saved_resources, vd_snapshot_name
from .saved import vm_snapshot_secret_name as secret_name

READY = "VirtualMachineSnapshotReady"
# The only VM phases in which the real controller marks the VM ready for snapshotting.
SNAPSHOT_VM_PHASES = frozenset({"Running", "Stopped"})


class MachineSnapshotReconciler(Reconciler):
    resource = VMSNAPSHOT

    def watches(self) -> dict[str, Mapper]:
        same = self.same_namespace()
        return {VM: same, VD: same, VDSNAPSHOT: same}

    async def reconcile(self, namespace: str, name: str) -> float | None:
        snap = self.store.get(VMSNAPSHOT, namespace, name)
        if snap is None:
            return None
        vm = self.store.get(VM, namespace, str(spec(snap).get("virtualMachineName", "")))
        holder = f"{VMSNAPSHOT}/{name}"
        st = dict(status(snap))
        generation = generation_of(snap)
        st["observedGeneration"] = generation
        if snap["metadata"].get("deletionTimestamp"):
            return await self._terminate(snap, st, vm, holder)
        snap = await ensure_finalizer(self, VMSNAPSHOT, snap, VMSNAPSHOT_FINALIZER)
        current = phase(snap)
        if current == "Failed":
            return None
        if current == "Ready":
            await self._check_not_lost(snap, st)
            return None
        st["phase"] = current or "Pending"
        if vm is None:
            st["phase"] = "Pending"
            vm_name = spec(snap).get("virtualMachineName")
            message = f"Waiting for the virtual machine {vm_name!r} to be ready for snapshotting."
            set_condition(st, "VirtualMachineReady", "False", "WaitingForTheVirtualMachine", message, generation)
            set_condition(st, READY, "False", "WaitingForTheVirtualMachine", message, generation)
            await self.write_status(VMSNAPSHOT, snap, st)
            return None
        if phase(vm) not in SNAPSHOT_VM_PHASES:
            # The real controller snapshots only a Running or Stopped VM (e.g. it waits out a migration).
            st["phase"] = "Pending"
            set_condition(st, "VirtualMachineReady", "False", "VirtualMachineNotReadyForSnapshotting",
                          f"The virtual machine {name_of(vm)!r} is in the {phase(vm)!r} phase: waiting for it to "
                          "reach the Running or Stopped phase.", generation)
            set_condition(st, READY, "False", "WaitingForTheVirtualMachine",
                          f"Waiting for the virtual machine {name_of(vm)!r} to be ready for snapshotting.", generation)
            await self.write_status(VMSNAPSHOT, snap, st)
            return None
        set_condition(st, "VirtualMachineReady", "True", "VirtualMachineReady", "", generation)
        problem = self._block_device_problem(vm)
        if problem:
            # The guide: the snapshot fails (it does not wait) when a block device is not ready or resizing.
            st["phase"] = "Failed"
            set_condition(st, READY, "False", "BlockDevicesNotReady", problem, generation)
            await self.write_status(VMSNAPSHOT, snap, st)
            return None
        await self._step(snap, st, vm, holder)
        return None

    def _block_device_problem(self, vm: Obj) -> str:
        """The real ensureBlockDeviceConsistency: the VM's BlockDevicesReady, then each of its disks."""
        if not condition_true(vm, "BlockDevicesReady"):
            return (f"Block devices not ready: waiting for the block devices of the virtual machine {name_of(vm)!r} "
                    "to be ready.")
        namespace = vm["metadata"]["namespace"]
        for ref_name in disk_names(vm):
            disk = self.store.get(VD, namespace, ref_name)
            # The simulated disk is Resizing for the whole resize (the real one shows its Resizing condition).
            if phase(disk) == "Resizing":
                return (f"Virtual disk is in the process of resizing: waiting for the virtual disk {ref_name!r} "
                        "to be resized.")
            if phase(disk) != "Ready":
                return f"Virtual disk not ready: waiting for the virtual disk {ref_name!r} to be Ready."
        return ""

    async def _terminate(self, snap: Obj, st: dict[str, Any], vm: Obj | None, holder: str) -> float | None:
        if await start_terminating(self, VMSNAPSHOT, snap, st, vm, holder, READY):
            return 0.0
        await self.delete(SECRET, snap["metadata"]["namespace"], secret_name(snap))
        if VMSNAPSHOT_FINALIZER in (snap["metadata"].get("finalizers") or []):
            await remove_finalizer(self, VMSNAPSHOT, snap, VMSNAPSHOT_FINALIZER)
        return None

    async def _check_not_lost(self, snap: Obj, st: dict[str, Any]) -> None:
        namespace = snap["metadata"]["namespace"]
        lost = [n for n in st.get("virtualDiskSnapshotNames") or [] if self.store.get(VDSNAPSHOT, namespace, n) is None]
        if not lost:
            return
        st["phase"] = "Failed"
        message = (f"The underlying virtual disk snapshot ({lost[0]}) is lost." if len(lost) == 1
                   else f"The underlying virtual disk snapshots ({', '.join(lost)}) are lost.")
        set_condition(st, READY, "False", "VirtualDiskSnapshotLost", message, generation_of(snap))
        await self.write_status(VMSNAPSHOT, snap, st)

    async def _fail(self, snap: Obj, st: dict[str, Any], message: str) -> None:
        st["phase"] = "Failed"
        set_condition(st, READY, "False", "VirtualMachineSnapshotFailed", message, generation_of(snap))
        await self.write_status(VMSNAPSHOT, snap, st)

    async def _step(self, snap: Obj, st: dict[str, Any], vm: Obj, holder: str) -> None:
        generation = generation_of(snap)
        required = bool(spec(snap).get("requiredConsistency", True))
        frozen = bool(frozen_by(vm))
        need_freeze = required and vm_is_live(vm) and not frozen and not st.get("virtualDiskSnapshotNames")
        if need_freeze and not can_freeze(vm):
            st["phase"] = "Pending"
            if condition_true(vm, "AgentReady"):
                message = (f"The snapshotting of virtual machine {name_of(vm)!r} might result in an inconsistent "
                           "snapshot: waiting for the virtual machine to be Stopped")
            else:
                message = (f"The snapshotting of virtual machine {name_of(vm)!r} might result in an inconsistent "
                           "snapshot: virtual machine agent is not ready and virtual machine cannot be frozen: "
                           "waiting for virtual machine agent to be ready or virtual machine will stop")
            set_condition(st, READY, "False", "PotentiallyInconsistent", message, generation)
            await self.write_status(VMSNAPSHOT, snap, st)
            return
        if st["phase"] == "Pending":
            st["phase"] = "InProgress"
            set_condition(st, READY, "False", "FileSystemFreezing", "The snapshotting process has started.", generation)
            await self.write_status(VMSNAPSHOT, snap, st)
            return
        if need_freeze:
            if annotation(vm, ANN_FSFREEZE) == "fail":
                await self._fail(snap, st, f"Failed to freeze the filesystem of the virtual machine {name_of(vm)!r}.")
                return
            await set_frozen_by(self, vm, holder)
            set_condition(st, READY, "False", "FileSystemFreezing",
                          f"The virtual machine {name_of(vm)!r} is in the process of being frozen for taking a "
                          "snapshot.", generation)
            await self.write_status(VMSNAPSHOT, snap, st)
            return
        saved = await self._ensure_secret(snap, vm)
        st["virtualMachineSnapshotSecretName"] = secret_name(snap)
        st["virtualDiskSnapshotNames"] = [d.snapshot for d in saved.disks]
        disk_snapshots = await self._ensure_disk_snapshots(snap, saved, required)
        failed = [d for d in disk_snapshots if phase(d) == "Failed"]
        if failed:
            await self._fail(snap, st,
                             f"The virtual disk snapshot {name_of(failed[0])!r} is failed: cannot take snapshot.")
            return
        ready = [d for d in disk_snapshots if phase(d) == "Ready"]
        if len(ready) != len(disk_snapshots):
            set_condition(st, READY, "False", "Snapshotting",
                          "Waiting for the virtual disk snapshots to be taken for the block devices of the virtual "
                          f"machine {name_of(vm)!r} ({len(ready)}/{len(disk_snapshots)}).", generation)
            await self.write_status(VMSNAPSHOT, snap, st)
            return
        if frozen_by(vm) == holder:
            await set_frozen_by(self, vm, "")
        if all(status(d).get("consistent") is True for d in disk_snapshots):
            st["consistent"] = True
        else:
            st.pop("consistent", None)
        st["resources"] = saved_resources(saved)
        st["phase"] = "Ready"
        set_condition(st, READY, "True", "VirtualMachineSnapshotReady", "", generation)
        await self.write_status(VMSNAPSHOT, snap, st)

    async def _ensure_secret(self, snap: Obj, vm: Obj) -> SavedMachine:
        namespace = snap["metadata"]["namespace"]
        existing = self.store.get(SECRET, namespace, secret_name(snap))
        if existing is not None:
            saved = SavedMachine.from_secret(existing)
            if saved is not None:
                return saved
        keep_ip = spec(snap).get("keepIPAddress", "Always") == "Always"
        vmip = self.store.get(VMIP, namespace, ip_address_name(vm))
        if keep_ip and vmip is not None and spec(vmip).get("type") != "Static" and status(vmip).get("address"):
            # A dynamic address becomes static so that a restore gets the very same address back.
            vmip["spec"] = {"type": "Static", "staticIP": status(vmip)["address"]}
            vmip = await self.write(VMIP, vmip)
        macs: dict[str, str] = {}
        for net in status(vm).get("networks") or []:
            mac_name = str(net.get("virtualMachineMACAddressName") or "")
            if mac_name:
                mac = self.store.get(VMMAC, namespace, mac_name)
                macs[mac_name] = str(status(mac).get("address") or net.get("macAddress") or "")
        disks = [(d, vd_snapshot_name(name_of(d), snap)) for ref in block_device_refs(vm) if ref.get("kind") == KIND_VD
                 if (d := self.store.get(VD, namespace, str(ref.get("name")))) is not None]
        secrets: dict[str, Obj] = {}
        for secret in provisioning_secret_names(spec(vm)):
            found = self.store.get(SECRET, namespace, secret)
            if found is not None:
                secrets[secret] = {"data": found.get("data") or {}, "type": found.get("type", "Opaque")}
        saved = capture(vm, vmip, macs, disks, secrets, keep_ip=keep_ip)
        await self.create(SECRET, {
            "apiVersion": "v1", "kind": "Secret", "type": "virtualmachinesnapshot.virtualization.deckhouse.io/v1",
            "metadata": {"name": secret_name(snap), "namespace": namespace,
                         "ownerReferences": [owner_reference(snap)]},
            "data": saved.to_secret_data()})
        return saved

    async def _ensure_disk_snapshots(self, snap: Obj, saved: SavedMachine, required: bool) -> list[Obj]:
        namespace = snap["metadata"]["namespace"]
        found = []
        for disk in saved.disks:
            existing = self.store.get(VDSNAPSHOT, namespace, disk.snapshot)
            if existing is None:
                existing = await self.create(VDSNAPSHOT, {
                    "apiVersion": API_VERSION, "kind": KIND_VDSNAPSHOT,
                    "metadata": {"name": disk.snapshot, "namespace": namespace,
                                 "ownerReferences": [owner_reference(snap)]},
                    "spec": {"virtualDiskName": disk.name, "requiredConsistency": required}})
            found.append(existing)
        return found
