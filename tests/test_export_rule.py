"""The guide's export rule, one table through both sides: a disk in use by a running VM
cannot be exported. The gateway refuses it before writing anything (``export_blocker``,
FAILED_PRECONDITION naming the VM); the embedded cluster's DataExport reports it
(Ready=False, reason VirtualDiskInUse) — as the platform's does. The two must agree on
which VM states block."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from service.cluster.consistency import export_blocker
from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.server import EmbeddedCluster
from tests.embedded_cluster.test_controllers_kit import Kube, demo_ready, disk_manifest, kube, vm_manifest

NS = "demo"


@dataclass(frozen=True)
class Row:
    vm_phase: str     # "" for a disk no VM uses
    blocked: bool

    def __str__(self) -> str:
        return self.vm_phase or "unattached"


TABLE = [Row("Running", True), Row("Migrating", True), Row("Stopped", False), Row("", False)]


async def put_disk_in_state(k: Kube, row: Row, disk: str, vm: str) -> None:
    await k.create(R.VD, NS, disk_manifest(disk))
    await k.wait_phase(R.VD, NS, disk, "Ready")
    if not row.vm_phase:
        return
    manifest = vm_manifest(vm, [disk], run_policy="AlwaysOff" if row.vm_phase == "Stopped" else "AlwaysOn",
                           agent=True)
    if row.vm_phase == "Migrating":
        manifest["metadata"]["annotations"][R.ANN_MIGRATING] = "true"
    await k.create(R.VM, NS, manifest)
    await k.wait_phase(R.VM, NS, vm, row.vm_phase)
    await k.wait(R.VD, NS, disk, lambda o: [a.get("name") for a in
                                            o.get("status", {}).get("attachedToVirtualMachines") or []] == [vm])


@pytest.mark.parametrize("row", TABLE, ids=str)
async def test_gateway_and_embedded_cluster_agree_on_exporting_a_disk(embedded_cluster: EmbeddedCluster,
                                                                      row: Row) -> None:
    disk, vm = "rule-disk", "rule-vm"
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await put_disk_in_state(k, row, disk, vm)

        # (a) The gateway's rule, on the objects the cluster serves.
        disk_obj = await k.get(R.VD, NS, disk)
        vm_obj = await k.get(R.VM, NS, vm) if row.vm_phase else None
        assert disk_obj is not None
        assert export_blocker(disk_obj, [vm_obj] if vm_obj else []) == (vm if row.blocked else None)

        # (b) The embedded cluster's DataExport of the same disk.
        await k.create(R.DATAEXPORT, NS, {
            "apiVersion": R.DATAEXPORT_API_VERSION, "kind": "DataExport", "metadata": {"name": "rule-export"},
            "spec": {"ttl": "2m", "publish": False, "targetRef": {"kind": "VirtualDisk", "name": disk}}})
        settled = await k.wait(R.DATAEXPORT, NS, "rule-export", lambda o: any(
            c.get("type") == "Ready" and c.get("reason") in ("Ready", "VirtualDiskInUse")
            for c in o.get("status", {}).get("conditions") or []))
        ready = next(c for c in settled["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["reason"] == "VirtualDiskInUse") == row.blocked, ready
        if row.blocked:
            assert vm in ready["message"]
