"""VirtualMachineSnapshotOperation type CreateVirtualMachine: a new VM and disks from a VM snapshot."""

from __future__ import annotations

from typing import Any

from .kube import generation_of, phase, spec, status
from .operations import clone_disks_ready, clone_plan, complete_entries, create_clone, renamer, set_outcome
from .resources import KIND_VM, VD, VM, VMSNAPSHOT, VMSOP
from .runtime import Mapper, Reconciler
from .vm_operations import TERMINAL, saved_of


class SnapshotOperationReconciler(Reconciler):
    resource = VMSOP

    def watches(self) -> dict[str, Mapper]:
        same = self.same_namespace()
        return {VM: same, VD: same, VMSNAPSHOT: same}

    async def reconcile(self, namespace: str, name: str) -> float | None:
        op = self.store.get(VMSOP, namespace, name)
        if op is None or op["metadata"].get("deletionTimestamp") or phase(op) in TERMINAL:
            return None
        st = dict(status(op))
        generation = st["observedGeneration"] = generation_of(op)
        params: dict[str, Any] = spec(op).get("createVirtualMachine") or {}
        mode = str(params.get("mode") or "Strict")
        rename = renamer(params)
        snapshot_name = str(spec(op).get("virtualMachineSnapshotName") or "")
        snapshot = self.store.get(VMSNAPSHOT, namespace, snapshot_name)
        saved = saved_of(self, snapshot)
        if phase(op) in ("", "Pending"):
            if snapshot is None:
                set_outcome(st, "Failed", "VirtualMachineSnapshotNotFound",
                            f"The virtual machine snapshot {snapshot_name!r} is not found.", generation)
            elif phase(snapshot) != "Ready" or saved is None:
                set_outcome(st, "Pending", "VirtualMachineSnapshotNotReady",
                            f"Waiting for the virtual machine snapshot {snapshot_name!r} to be ready.", generation)
            else:
                entries, conflict, _ = clone_plan(self.store, namespace, saved, rename, mode)
                st["resources"] = complete_entries(entries) if mode == "DryRun" else entries
                if mode == "DryRun":
                    failed = sum(1 for e in entries if e["status"] == "Failed")
                    set_outcome(st, "Completed", "OperationCompleted",
                                f"The dry run found {failed} conflict(s).", generation)
                elif conflict:
                    set_outcome(st, "Failed", "OperationFailed", "The operation has conflicts: see status.resources.",
                                generation)
                else:
                    set_outcome(st, "InProgress", "CreateVirtualMachineInProgress",
                                "The virtual machine is being created from the snapshot.", generation)
            await self.write_status(VMSOP, op, st)
            return None
        if saved is None:
            set_outcome(st, "Failed", "VirtualMachineSnapshotNotFound",
                        f"The virtual machine snapshot {snapshot_name!r} is lost.", generation)
        elif self.store.get(VM, namespace, rename(KIND_VM, saved.name)) is None:
            _, _, vm_spec = clone_plan(self.store, namespace, saved, rename, mode)
            await create_clone(self.create, namespace, saved, rename, vm_spec)
        elif clone_disks_ready(self.store, namespace, saved, rename):
            st["resources"] = complete_entries(st.get("resources") or [])
            set_outcome(st, "Completed", "OperationCompleted", "", generation)
        await self.write_status(VMSOP, op, st)
        return None
