"""VirtualDisk: provisioning from a disk snapshot (size rule), resizing, attachment to VMs."""

from __future__ import annotations

from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.server import EmbeddedCluster

from .test_controllers_kit import (
    GROUP_VERSION,
    Kube,
    condition,
    demo_ready,
    disk_manifest,
    kube,
    phase,
    reason,
    snapshot_ref,
    vm_manifest,
)

NS = "demo"


async def snapshot_spare_disk(k: Kube) -> None:
    await k.create(R.VDSNAPSHOT, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualDiskSnapshot",
                                      "metadata": {"name": "spare-snap"}, "spec": {"virtualDiskName": "spare-disk"}})
    await k.wait_phase(R.VDSNAPSHOT, NS, "spare-snap", "Ready")


async def test_disk_from_snapshot_keeps_the_data_and_allows_a_larger_size(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await snapshot_spare_disk(k)
        await k.create(R.VD, NS, disk_manifest("restored", "2Gi", snapshot_ref("spare-snap")))
        disk = await k.wait_phase(R.VD, NS, "restored", "Ready", "Failed")
        assert phase(disk) == "Ready"
        assert disk["status"]["capacity"] == "2Gi"
        assert disk["status"]["target"]["persistentVolumeClaimName"]
        assert reason(disk, "DatasourceReady") == "DatasourceReady"
        source = await k.get(R.VD, NS, "spare-disk")
        assert source is not None
        seed = disk["metadata"]["annotations"][R.ANN_CONTENT_SEED]
        assert seed == source["metadata"]["annotations"][R.ANN_CONTENT_SEED]


async def test_disk_from_snapshot_must_not_be_smaller(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await snapshot_spare_disk(k)
        await k.create(R.VD, NS, disk_manifest("too-small", "512Mi", snapshot_ref("spare-snap")))
        disk = await k.wait_phase(R.VD, NS, "too-small", "Failed")
        ready = condition(disk, "Ready")
        assert ready["status"] == "False" and ready["reason"] == "ProvisioningFailed"
        assert "same or larger" in ready["message"]
        # Asking for enough space recovers the disk.
        await k.patch(R.VD, NS, "too-small", {"spec": {"persistentVolumeClaim": {"size": "1Gi"}}})
        disk = await k.wait_phase(R.VD, NS, "too-small", "Ready")
        assert disk["status"]["capacity"] == "1Gi"


async def test_disk_waits_for_its_snapshot(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await k.create(R.VD, NS, disk_manifest("waiting", "1Gi", snapshot_ref("later-snap")))
        disk = await k.wait(R.VD, NS, "waiting", lambda o: bool(o.get("status", {}).get("conditions")))
        assert phase(disk) == "Pending"
        assert reason(disk, "DatasourceReady") == "VirtualDiskSnapshotNotReady"
        await k.create(R.VDSNAPSHOT, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualDiskSnapshot",
                                          "metadata": {"name": "later-snap"},
                                          "spec": {"virtualDiskName": "spare-disk"}})
        await k.wait_phase(R.VD, NS, "waiting", "Ready")


async def test_growing_a_disk_goes_through_resizing(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await k.patch(R.VD, NS, "spare-disk", {"metadata": {"annotations": {R.ANN_RESIZE_HOLD: "true"}},
                                               "spec": {"persistentVolumeClaim": {"size": "3Gi"}}})
        disk = await k.wait_phase(R.VD, NS, "spare-disk", "Resizing")
        assert reason(disk, "Resized") == "InProgress"
        assert disk["status"]["capacity"] == "1Gi"
        await k.patch(R.VD, NS, "spare-disk", {"metadata": {"annotations": {R.ANN_RESIZE_HOLD: None}}})
        disk = await k.wait(R.VD, NS, "spare-disk", lambda o: o["status"].get("capacity") == "3Gi")
        assert phase(disk) == "Ready"
        assert condition(disk, "Resized")["status"] == "True"


async def test_attached_to_virtual_machines_follows_the_vms(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        disk = await k.get(R.VD, NS, "linux-vm-root")
        assert disk is not None
        assert disk["status"]["attachedToVirtualMachines"] == [{"name": "linux-vm", "mounted": True}]
        await k.create(R.VM, NS, vm_manifest("spare-user", ["spare-disk"], run_policy="AlwaysOff"))
        disk = await k.wait(R.VD, NS, "spare-disk", lambda o: bool(o["status"].get("attachedToVirtualMachines")))
        assert disk["status"]["attachedToVirtualMachines"] == [{"name": "spare-user", "mounted": False}]
        await k.delete(R.VM, NS, "spare-user")
        await k.wait(R.VD, NS, "spare-disk", lambda o: not o["status"].get("attachedToVirtualMachines"))
