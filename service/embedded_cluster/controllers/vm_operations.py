"""VirtualMachineOperation: Restore, Clone, Start and Stop."""

from __future__ import annotations

from typing import Any

from service.embedded_cluster.contracts import Obj

from .disk_snapshots import ensure_finalizer, remove_finalizer
from .kube import annotation, generation_of, meta, name_of, owner_reference, phase, set_condition, spec, status, uid_of
from .operations import (
    Renamer,
    clone_disks_ready,
    clone_plan,
    complete_entries,
    create_clone,
    entry,
    renamer,
    set_outcome,
    vm_name_of,
)
from .queries import block_device_refs
from .resources import (
    ANN_MAINTENANCE,
    ANN_POWER,
    API_VERSION,
    KIND_VD,
    KIND_VM,
    KIND_VMSNAPSHOT,
    SECRET,
    VD,
    VDSNAPSHOT,
    VM,
    VMOP,
    VMSNAPSHOT,
)
from .restore import apply_restore, hold_stopped, restore_params, restore_plan, uid_mismatch
from .runtime import Mapper, Reconciler
from .saved import SavedDisk, SavedMachine, capture

TERMINAL = frozenset({"Completed", "Failed", "Superseded"})
RESTORABLE_VM_PHASES = frozenset({"Stopped", "Running", "Pending"})
VMOP_FINALIZER = "virtualization.deckhouse.io/vmop-cleanup"


def saved_of(reconciler: Reconciler, snapshot: Obj | None) -> SavedMachine | None:
    if snapshot is None:
        return None
    secret = reconciler.store.get(SECRET, snapshot["metadata"]["namespace"],
                                  str(status(snapshot).get("virtualMachineSnapshotSecretName") or ""))
    return SavedMachine.from_secret(secret) if secret is not None else None


class MachineOperationReconciler(Reconciler):
    resource = VMOP

    def watches(self) -> dict[str, Mapper]:
        same = self.same_namespace()
        return {VM: same, VD: same, VMSNAPSHOT: same, VDSNAPSHOT: same}

    async def reconcile(self, namespace: str, name: str) -> float | None:
        op = self.store.get(VMOP, namespace, name)
        if op is None:
            return None
        if op["metadata"].get("deletionTimestamp"):
            await self._terminate(op)
            return None
        if phase(op) in TERMINAL:
            if VMOP_FINALIZER in (op["metadata"].get("finalizers") or []):
                await remove_finalizer(self, VMOP, op, VMOP_FINALIZER)
            return None
        if phase(op) == "InProgress":
            # While it works on the VM, deleting the operation shows Terminating and releases the VM.
            op = await ensure_finalizer(self, VMOP, op, VMOP_FINALIZER)
        st = dict(status(op))
        st["observedGeneration"] = generation_of(op)
        if phase(op) == "":
            set_outcome(st, "Pending", "NotReadyToBeExecuted", "The operation is waiting to be executed.",
                        generation_of(op))
            await self.write_status(VMOP, op, st)
            return None
        handler = {"Restore": self._restore, "Clone": self._clone, "Start": self._power,
                   "Stop": self._power, "Restart": self._restart}.get(str(spec(op).get("type")))
        if handler is None:
            set_outcome(st, "Failed", "OperationFailed",
                        f"The operation type {spec(op).get('type')} is not simulated by the embedded cluster.",
                        generation_of(op))
        else:
            await handler(op, st)
        await self.write_status(VMOP, op, st)
        return None

    async def _terminate(self, op: Obj) -> None:
        if phase(op) != "Terminating":
            st = dict(status(op))
            st["phase"] = "Terminating"
            await self.write_status(VMOP, op, st)
            return
        vm = self.store.get(VM, op["metadata"]["namespace"], vm_name_of(op))
        if vm is not None and annotation(vm, ANN_MAINTENANCE) == name_of(op):
            await hold_stopped(self, vm, "")
        if VMOP_FINALIZER in (op["metadata"].get("finalizers") or []):
            await remove_finalizer(self, VMOP, op, VMOP_FINALIZER)

    async def _power(self, op: Obj, st: dict[str, Any]) -> None:
        generation = generation_of(op)
        vm = self.store.get(VM, op["metadata"]["namespace"], vm_name_of(op))
        if vm is None:
            set_outcome(st, "Failed", "VirtualMachineNotFound",
                        f"The virtual machine {vm_name_of(op)!r} is not found.", generation)
            return
        start = spec(op).get("type") == "Start"
        wanted = "on" if start else "off"
        annotations = meta(vm).setdefault("annotations", {})
        if annotations.get(ANN_POWER) != wanted:
            annotations[ANN_POWER] = wanted
            await self.write(VM, vm)
        if phase(vm) == ("Running" if start else "Stopped"):
            set_outcome(st, "Completed", "OperationCompleted", "", generation)
        else:
            set_outcome(st, "InProgress", "StartInProgress" if start else "StopInProgress",
                        f"Waiting for the virtual machine to be {'Running' if start else 'Stopped'}.", generation)

    async def _restart(self, op: Obj, st: dict[str, Any]) -> None:
        """Hold the VM stopped until it is Stopped (the signal is then sent), release it, wait for Running."""
        generation = generation_of(op)
        vm = self.store.get(VM, op["metadata"]["namespace"], vm_name_of(op))
        if vm is None:
            set_outcome(st, "Failed", "VirtualMachineNotFound",
                        f"The virtual machine {vm_name_of(op)!r} is not found.", generation)
            return
        stopped_once = any(c.get("type") == "SignalSent" and c.get("status") == "True"
                           for c in st.get("conditions") or [])
        if not stopped_once:
            set_outcome(st, "InProgress", "RestartInProgress", "The virtual machine is being restarted.", generation)
            if await hold_stopped(self, vm, name_of(op)):
                await hold_stopped(self, vm, "")
                set_condition(st, "SignalSent", "True", "SignalSentSuccess", "", generation)
            return
        if phase(vm) == "Running":
            set_outcome(st, "Completed", "OperationCompleted", "", generation)

    async def _restore(self, op: Obj, st: dict[str, Any]) -> None:
        namespace, generation = op["metadata"]["namespace"], generation_of(op)
        snapshot_name, mode = restore_params(op)
        snapshot = self.store.get(VMSNAPSHOT, namespace, snapshot_name)
        if snapshot is None:
            set_outcome(st, "Failed", "OperationFailed",
                        f"The virtual machine snapshot {snapshot_name!r} is not found.", generation)
            return
        if phase(snapshot) != "Ready":
            set_outcome(st, "Pending", "NotReadyToBeExecuted",
                        f"Waiting for the virtual machine snapshot {snapshot_name!r} to be ready.", generation)
            return
        saved = saved_of(self, snapshot)
        vm = self.store.get(VM, namespace, vm_name_of(op))
        if saved is None:
            set_outcome(st, "Failed", "OperationFailed",
                        f"The configuration of the virtual machine snapshot {snapshot_name!r} is lost.", generation)
            return
        if phase(op) == "Pending":
            if vm is not None and phase(vm) not in RESTORABLE_VM_PHASES:
                # The real RestoreOperation.IsApplicableForVMPhase; any runPolicy (AlwaysOn too) is accepted.
                set_outcome(st, "Failed", "NotApplicableForVirtualMachinePhase",
                            f"Operation type Restore is not applicable for VirtualMachine in phase {phase(vm)}",
                            generation)
                return
            mismatch = uid_mismatch(vm, saved) if vm_name_of(op) == saved.name else (
                f"The virtual machine snapshot {snapshot_name!r} was taken of the virtual machine {saved.name!r}, "
                f"not {vm_name_of(op)!r}.")
            if mismatch or vm is None:
                st["resources"] = [entry(KIND_VM, vm_name_of(op), "Failed", mismatch)]
                set_outcome(st, "Failed", "OperationFailed", mismatch, generation)
                return
            entries, conflict = restore_plan(self.store, namespace, vm, saved, mode)
            if mode == "DryRun":
                # Changes nothing; as the real one, a dry run with conflicts fails (see status.resources).
                st["resources"] = [{**e, "message": e.get("message") or f"{e['name']} is valid for restore"}
                                   for e in complete_entries(entries)]
                if conflict:
                    set_outcome(st, "Failed", "OperationFailed",
                                "Restore is failed: fail to validate the resources: check the status", generation)
                else:
                    set_outcome(st, "Completed", "OperationCompleted", "", generation)
            elif conflict:
                st["resources"] = entries
                set_outcome(st, "Failed", "OperationFailed",
                            "The restore has conflicts: see status.resources.", generation)
            else:
                st["resources"] = entries
                set_outcome(st, "InProgress", "RestoreInProgress",
                            f"The virtual machine is being restored from the snapshot {snapshot_name!r}.", generation)
            return
        assert vm is not None
        applied = all(e.get("status") != "InProgress" for e in st.get("resources") or [])
        if not applied:
            set_condition(st, "MaintenanceMode", "True", "MaintenanceModeEnabled",
                          "The virtual machine is held stopped while it is restored.", generation)
            if await hold_stopped(self, vm, name_of(op)):
                await apply_restore(self, namespace, vm, saved, mode)
                st["resources"] = complete_entries(st.get("resources") or [])
            return
        await hold_stopped(self, vm, "")
        set_condition(st, "MaintenanceMode", "False", "MaintenanceModeDisabled", "", generation)
        set_outcome(st, "Completed", "OperationCompleted", "", generation)

    async def _clone(self, op: Obj, st: dict[str, Any]) -> None:
        namespace, generation = op["metadata"]["namespace"], generation_of(op)
        params: dict[str, Any] = spec(op).get("clone") or {}
        mode = str(params.get("mode") or "Strict")
        rename = renamer(params)
        vm = self.store.get(VM, namespace, vm_name_of(op))
        if phase(op) == "Pending":
            if vm is None:
                set_outcome(st, "Failed", "VirtualMachineNotFound",
                            f"The virtual machine {vm_name_of(op)!r} is not found.", generation)
                return
            if phase(vm) != "Stopped":
                set_outcome(st, "Failed", "NotReadyToBeExecuted",
                            f"The virtual machine {name_of(vm)!r} must be stopped to be cloned (it is {phase(vm)}).",
                            generation)
                return
            entries, conflict, _ = clone_plan(self.store, namespace, self._live_config(vm), rename, mode)
            st["resources"] = entries
            if mode == "DryRun":
                st["resources"] = complete_entries(entries)
                failed = sum(1 for e in entries if e["status"] == "Failed")
                set_outcome(st, "Completed", "OperationCompleted",
                            f"The dry run of the clone found {failed} conflict(s).", generation)
            elif conflict:
                set_outcome(st, "Failed", "OperationFailed", "The clone has conflicts: see status.resources.",
                            generation)
            else:
                set_outcome(st, "InProgress", "CloneInProgress", "The virtual machine is being cloned.", generation)
            return
        await self._clone_step(op, st, rename, mode)

    def _live_config(self, vm: Obj) -> SavedMachine:
        namespace = vm["metadata"]["namespace"]
        saved = capture(vm, None, {}, [], {}, keep_ip=False)
        saved.disks = [SavedDisk(str(r.get("name")), "", {}) for r in block_device_refs(vm) if r.get("kind") == KIND_VD
                       and self.store.get(VD, namespace, str(r.get("name"))) is not None]
        return saved

    async def _clone_step(self, op: Obj, st: dict[str, Any], rename: Renamer, mode: str) -> None:
        namespace, generation = op["metadata"]["namespace"], generation_of(op)
        temp_name = f"{name_of(op)}-{uid_of(op)[:8]}"
        temp = self.store.get(VMSNAPSHOT, namespace, temp_name)
        clone_vm = self.store.get(VM, namespace, rename(KIND_VM, vm_name_of(op)))
        if clone_vm is None:
            if temp is None:
                await self.create(VMSNAPSHOT, {
                    "apiVersion": API_VERSION, "kind": KIND_VMSNAPSHOT,
                    "metadata": {"name": temp_name, "namespace": namespace, "ownerReferences": [owner_reference(op)]},
                    "spec": {"virtualMachineName": vm_name_of(op), "requiredConsistency": True,
                             "keepIPAddress": "Never"}})
                set_condition(st, "SnapshotReady", "False", "SnapshotInProgress",
                              f"Waiting for the temporary snapshot {temp_name!r}.", generation)
                return
            if phase(temp) == "Failed":
                set_condition(st, "SnapshotReady", "False", "SnapshotFailed", "", generation)
                set_outcome(st, "Failed", "OperationFailed",
                            f"The temporary snapshot {temp_name!r} of the virtual machine failed.", generation)
                return
            saved = saved_of(self, temp)
            if phase(temp) != "Ready" or saved is None:
                return
            set_condition(st, "SnapshotReady", "True", "SnapshotReady", "", generation)
            entries, conflict, vm_spec = clone_plan(self.store, namespace, saved, rename, mode)
            if conflict:
                st["resources"] = entries
                set_outcome(st, "Failed", "OperationFailed", "The clone has conflicts: see status.resources.",
                            generation)
                return
            await create_clone(self.create, namespace, saved, rename, vm_spec)
            return
        saved = saved_of(self, temp)
        if saved is not None and not clone_disks_ready(self.store, namespace, saved, rename):
            return
        if temp is not None:
            await self.delete(VMSNAPSHOT, namespace, temp_name)
        set_condition(st, "SnapshotReady", "False", "SnapshotCleanedUp",
                      f"The temporary snapshot {temp_name!r} is removed.", generation)
        st["resources"] = complete_entries(st.get("resources") or [])
        set_outcome(st, "Completed", "OperationCompleted", "", generation)

