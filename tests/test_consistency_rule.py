"""One consistency table, run through both sides: the gateway's pure rule (the warning it gives
before it writes a snapshot) and the embedded cluster's controllers (what the snapshot then does).

The rule, as the real controllers apply it (vdsnapshot/vmsnapshot life_cycle.go and
SnapshotService.CanFreeze in deckhouse/virtualization): a consistent snapshot of a live VM needs
the guest frozen, which needs the KubeVirt instance Running (it is also Running during a live
migration) and the guest agent connected; otherwise the snapshot stays Pending with reason
PotentiallyInconsistent. A VirtualMachineSnapshot also waits for the VM to be Running or Stopped
(WaitingForTheVirtualMachine), so during a migration it waits, then applies the same rule.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from service.cluster.consistency import consistency_warning, vm_consistency_warning
from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.server import EmbeddedCluster
from tests.embedded_cluster.test_controllers_kit import (
    GROUP_VERSION,
    Kube,
    demo_ready,
    disk_manifest,
    kube,
    phase,
    reason,
    vm_manifest,
)

NS = "demo"
READY = "Ready"
PI = "PotentiallyInconsistent"
WAITING = "WaitingForTheVirtualMachine"


@dataclass(frozen=True)
class Row:
    vm_phase: str       # Running / Stopped / Migrating
    agent: bool         # qemu-guest-agent ready in the guest
    required: bool      # spec.requiredConsistency
    warn: bool          # the gateway warns, for the disk and for the VM
    disk: str           # the VirtualDiskSnapshot: Ready, or Pending with reason PotentiallyInconsistent
    vm_now: str         # the VirtualMachineSnapshot while the VM is in vm_phase
    vm_then: str        # ... and once a migrating VM is Running again (= vm_now otherwise)

    def __str__(self) -> str:
        return f"{self.vm_phase}-{'agent' if self.agent else 'no-agent'}-{'required' if self.required else 'loose'}"


TABLE = [
    #   VM phase     agent  required  warn   disk snapshot  VM snapshot now  VM snapshot then
    Row("Running",   True,  True,     False, READY,         READY,           READY),
    Row("Running",   True,  False,    False, READY,         READY,           READY),
    Row("Running",   False, True,     True,  PI,            PI,              PI),
    Row("Running",   False, False,    False, READY,         READY,           READY),
    Row("Stopped",   True,  True,     False, READY,         READY,           READY),
    Row("Stopped",   True,  False,    False, READY,         READY,           READY),
    Row("Stopped",   False, True,     False, READY,         READY,           READY),
    Row("Stopped",   False, False,    False, READY,         READY,           READY),
    Row("Migrating", True,  True,     False, READY,         WAITING,         READY),
    Row("Migrating", True,  False,    False, READY,         WAITING,         READY),
    Row("Migrating", False, True,     True,  PI,            WAITING,         PI),
    Row("Migrating", False, False,    False, READY,         WAITING,         READY),
]


def test_the_table_covers_every_combination_once() -> None:
    combos = {(r.vm_phase, r.agent, r.required) for r in TABLE}
    assert len(TABLE) == len(combos) == 12


async def reach(k: Kube, resource: str, name: str, ctype: str, outcome: str) -> dict[str, Any]:
    """Wait for the snapshot's outcome: Ready, or Pending with ``outcome`` as the reason (and staying so)."""
    if outcome == READY:
        done = await k.wait_phase(resource, NS, name, "Ready", "Failed")
        assert phase(done) == "Ready", done["status"]
        return done
    await k.wait(resource, NS, name, lambda o: any(
        c.get("type") == ctype and c.get("reason") == outcome for c in o.get("status", {}).get("conditions") or []))
    await asyncio.sleep(0.1)      # it waits: a later pass does not move it on
    settled = await k.get(resource, NS, name)
    assert settled is not None and phase(settled) == "Pending" and reason(settled, ctype) == outcome, settled
    return settled


def check_warning(warning: str | None, row: Row) -> None:
    assert (warning is not None) == row.warn, (row, warning)
    if warning is not None:
        assert "Pending" in warning and PI in warning and "required_consistency=false" in warning


async def put_vm_in_state(k: Kube, row: Row, vm: str, disk: str) -> None:
    await k.create(R.VD, NS, disk_manifest(disk))
    await k.wait_phase(R.VD, NS, disk, "Ready")
    manifest = vm_manifest(vm, [disk], run_policy="AlwaysOff" if row.vm_phase == "Stopped" else "AlwaysOn",
                           agent=row.agent)
    if row.vm_phase == "Migrating":
        manifest["metadata"]["annotations"][R.ANN_MIGRATING] = "true"
    await k.create(R.VM, NS, manifest)
    await k.wait_phase(R.VM, NS, vm, row.vm_phase)
    # The disk reports the VM it is in use by (what the gateway reads) once the VM settled.
    mounted = row.vm_phase != "Stopped"
    await k.wait(R.VD, NS, disk, lambda o: [(a.get("name"), a.get("mounted")) for a in
                                            o.get("status", {}).get("attachedToVirtualMachines") or []]
                 == [(vm, mounted)])


@pytest.mark.parametrize("row", TABLE, ids=str)
async def test_gateway_and_embedded_cluster_agree(embedded_cluster: EmbeddedCluster, row: Row) -> None:
    vm, disk = "table-vm", "table-vm-root"
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await put_vm_in_state(k, row, vm, disk)

        # (a) The gateway's pure rule, on the very objects the cluster serves.
        vm_obj, disk_obj = await k.get(R.VM, NS, vm), await k.get(R.VD, NS, disk)
        assert vm_obj is not None and disk_obj is not None
        check_warning(consistency_warning(disk_obj, [vm_obj], row.required), row)
        check_warning(vm_consistency_warning(vm_obj, row.required), row)

        # (b) The embedded controllers: a disk snapshot, then a VM snapshot, of that VM.
        await k.create(R.VDSNAPSHOT, NS, {
            "apiVersion": GROUP_VERSION, "kind": "VirtualDiskSnapshot", "metadata": {"name": "table-disk-snap"},
            "spec": {"virtualDiskName": disk, "requiredConsistency": row.required}})
        await reach(k, R.VDSNAPSHOT, "table-disk-snap", "VirtualDiskSnapshotReady", row.disk)
        await k.create(R.VMSNAPSHOT, NS, {
            "apiVersion": GROUP_VERSION, "kind": "VirtualMachineSnapshot", "metadata": {"name": "table-vm-snap"},
            "spec": {"virtualMachineName": vm, "requiredConsistency": row.required}})
        await reach(k, R.VMSNAPSHOT, "table-vm-snap", "VirtualMachineSnapshotReady", row.vm_now)

        if row.vm_phase == "Migrating":
            # The migration ends: the VM snapshot goes on under the same consistency rule.
            await k.patch(R.VM, NS, vm, {"metadata": {"annotations": {R.ANN_MIGRATING: None}}})
            await k.wait_phase(R.VM, NS, vm, "Running")
            await reach(k, R.VMSNAPSHOT, "table-vm-snap", "VirtualMachineSnapshotReady", row.vm_then)
        assert (row.vm_then == PI) == row.warn and (row.disk == PI) == row.warn   # the table itself agrees

        # A guest frozen for a snapshot is thawed again once it is taken.
        vm_obj = await k.get(R.VM, NS, vm)
        assert vm_obj is not None
        if row.vm_then == READY:
            assert R.ANN_FROZEN_BY not in vm_obj["metadata"].get("annotations", {})
