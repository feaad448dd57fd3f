"""VirtualMachineSnapshot: readiness rules, IP address policy, saved resources, the configuration Secret."""

from __future__ import annotations

import base64
import json
from typing import Any

from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.server import EmbeddedCluster

from .test_controllers_kit import GROUP_VERSION, Kube, condition, demo_ready, kube, phase, reason, vm_manifest

NS = "demo"


async def take(k: Kube, name: str, vm: str, *, keep_ip: str | None = None, required: bool | None = None) -> None:
    spec: dict[str, object] = {"virtualMachineName": vm}
    if keep_ip is not None:
        spec["keepIPAddress"] = keep_ip
    if required is not None:
        spec["requiredConsistency"] = required
    await k.create(R.VMSNAPSHOT, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineSnapshot",
                                      "metadata": {"name": name}, "spec": spec})


async def ip_of(k: Kube, vm: str) -> dict[str, Any]:
    machine = await k.get(R.VM, NS, vm)
    assert machine is not None
    vmip = await k.get(R.VMIP, NS, machine["status"]["virtualMachineIPAddressName"])
    assert vmip is not None
    return vmip


async def test_snapshot_of_the_guide_vm(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await take(k, "linux-vm-snapshot", "linux-vm")
        snap = await k.wait_phase(R.VMSNAPSHOT, NS, "linux-vm-snapshot", "Ready", "Failed")
        assert phase(snap) == "Ready", snap["status"]
        assert reason(snap, "VirtualMachineSnapshotReady") == "VirtualMachineSnapshotReady"
        assert condition(snap, "VirtualMachineReady")["status"] == "True"
        assert snap["status"]["consistent"] is True
        kinds = [(r["kind"], r["name"]) for r in snap["status"]["resources"]]
        assert ("VirtualMachine", "linux-vm") in kinds
        assert ("Secret", "cloud-init") in kinds
        assert ("VirtualDisk", "linux-vm-root") in kinds
        names = snap["status"]["virtualDiskSnapshotNames"]
        assert len(names) == 1
        disk_snap = await k.get(R.VDSNAPSHOT, NS, names[0])
        assert disk_snap is not None and phase(disk_snap) == "Ready"
        assert disk_snap["metadata"]["ownerReferences"][0]["uid"] == snap["metadata"]["uid"]
        secret = await k.get(R.SECRET, NS, snap["status"]["virtualMachineSnapshotSecretName"])
        assert secret is not None
        saved = json.loads(base64.b64decode(next(iter(secret["data"].values()))))
        vm = await k.get(R.VM, NS, "linux-vm")
        assert vm is not None and saved["uid"] == vm["metadata"]["uid"]


async def test_dynamic_ip_becomes_static_by_default(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        before = await ip_of(k, "stopped-vm")
        assert before["spec"]["type"] == "Auto"
        await take(k, "keep-ip", "stopped-vm")
        snap = await k.wait_phase(R.VMSNAPSHOT, NS, "keep-ip", "Ready")
        after = await ip_of(k, "stopped-vm")
        assert after["spec"] == {"type": "Static", "staticIP": before["status"]["address"]}
        assert after["status"]["address"] == before["status"]["address"]
        assert ("VirtualMachineIPAddress", after["metadata"]["name"]) in [
            (r["kind"], r["name"]) for r in snap["status"]["resources"]]


async def test_keep_ip_address_never_leaves_the_ip_dynamic(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await take(k, "no-keep-ip", "stopped-vm", keep_ip="Never")
        snap = await k.wait_phase(R.VMSNAPSHOT, NS, "no-keep-ip", "Ready")
        assert (await ip_of(k, "stopped-vm"))["spec"]["type"] == "Auto"
        assert "VirtualMachineIPAddress" not in [r["kind"] for r in snap["status"]["resources"]]


async def test_images_are_not_saved(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await take(k, "image-vm-snap", "image-vm")
        snap = await k.wait_phase(R.VMSNAPSHOT, NS, "image-vm-snap", "Ready")
        kinds = {r["kind"] for r in snap["status"]["resources"]}
        assert "VirtualImage" not in kinds and "ClusterVirtualImage" not in kinds
        assert "VirtualDisk" in kinds
        assert len(snap["status"]["virtualDiskSnapshotNames"]) == 1


async def test_block_devices_not_ready_fails_the_snapshot(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        # A stopped VM whose disk is missing: ready for snapshotting, its block devices are not.
        await k.create(R.VM, NS, vm_manifest("broken-vm", ["missing-disk"], run_policy="AlwaysOff"))
        await k.wait_phase(R.VM, NS, "broken-vm", "Stopped")
        await take(k, "broken-snap", "broken-vm")
        snap = await k.wait_phase(R.VMSNAPSHOT, NS, "broken-snap", "Failed")
        assert reason(snap, "VirtualMachineSnapshotReady") == "BlockDevicesNotReady"
        assert condition(snap, "VirtualMachineSnapshotReady")["message"] == (
            "Block devices not ready: waiting for the block devices of the virtual machine 'broken-vm' to be ready.")
        vm = await k.get(R.VM, NS, "broken-vm")
        assert vm is not None and reason(vm, "BlockDevicesReady") == "BlockDevicesNotReady"


async def test_vm_neither_running_nor_stopped_makes_the_snapshot_wait(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        # A VM that wants to run but whose disk is missing stays Pending: the snapshot waits for the VM.
        await k.create(R.VM, NS, vm_manifest("pending-vm", ["missing-disk"]))
        await k.wait_phase(R.VM, NS, "pending-vm", "Pending")
        await take(k, "pending-snap", "pending-vm")
        snap = await k.wait(R.VMSNAPSHOT, NS, "pending-snap",
                            lambda o: any(c["reason"] == "WaitingForTheVirtualMachine"
                                          for c in o.get("status", {}).get("conditions") or []))
        assert phase(snap) == "Pending"
        assert reason(snap, "VirtualMachineReady") == "VirtualMachineNotReadyForSnapshotting"
        assert "'Pending' phase" in condition(snap, "VirtualMachineReady")["message"]


async def test_resizing_disk_fails_the_snapshot(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await k.patch(R.VD, NS, "stopped-vm-root", {"metadata": {"annotations": {R.ANN_RESIZE_HOLD: "true"}},
                                                    "spec": {"persistentVolumeClaim": {"size": "20Gi"}}})
        await k.wait_phase(R.VD, NS, "stopped-vm-root", "Resizing")
        await take(k, "resizing-snap", "stopped-vm")
        snap = await k.wait_phase(R.VMSNAPSHOT, NS, "resizing-snap", "Failed")
        assert reason(snap, "VirtualMachineSnapshotReady") == "BlockDevicesNotReady"
        assert condition(snap, "VirtualMachineSnapshotReady")["message"] == (
            "Virtual disk is in the process of resizing: waiting for the virtual disk 'stopped-vm-root' to be resized.")
        # A failed snapshot stays failed once the resize is over; a new one succeeds.
        await k.patch(R.VD, NS, "stopped-vm-root", {"metadata": {"annotations": {R.ANN_RESIZE_HOLD: None}}})
        await k.wait_phase(R.VD, NS, "stopped-vm-root", "Ready")
        await take(k, "after-resize", "stopped-vm")
        await k.wait_phase(R.VMSNAPSHOT, NS, "after-resize", "Ready")
        assert phase(await k.get(R.VMSNAPSHOT, NS, "resizing-snap")) == "Failed"


async def test_vm_without_agent_is_potentially_inconsistent(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await take(k, "no-agent", "no-agent-vm")
        snap = await k.wait(R.VMSNAPSHOT, NS, "no-agent",
                            lambda o: any(c["reason"] == "PotentiallyInconsistent" for c in o["status"]["conditions"])
                            if o.get("status", {}).get("conditions") else False)
        assert phase(snap) == "Pending"
        await take(k, "no-agent-loose", "no-agent-vm", required=False)
        loose = await k.wait_phase(R.VMSNAPSHOT, NS, "no-agent-loose", "Ready")
        assert loose["status"].get("consistent") in (None, False)


async def test_pending_restart_changes_are_captured(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await k.patch(R.VM, NS, "linux-vm", {"spec": {"cpu": {"cores": 4}}})
        await take(k, "pending-change", "linux-vm")
        snap = await k.wait_phase(R.VMSNAPSHOT, NS, "pending-change", "Ready")
        secret = await k.get(R.SECRET, NS, snap["status"]["virtualMachineSnapshotSecretName"])
        assert secret is not None
        saved = json.loads(base64.b64decode(next(iter(secret["data"].values()))))
        assert saved["spec"]["cpu"]["cores"] == 4


async def test_missing_vm_waits_and_deletion_cleans_up(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await take(k, "ghost", "no-such-vm")
        snap = await k.wait(R.VMSNAPSHOT, NS, "ghost", lambda o: bool(o.get("status", {}).get("conditions")))
        assert reason(snap, "VirtualMachineReady") == "WaitingForTheVirtualMachine"
        await take(k, "to-delete", "stopped-vm")
        snap = await k.wait_phase(R.VMSNAPSHOT, NS, "to-delete", "Ready")
        await k.delete(R.VMSNAPSHOT, NS, "to-delete")
        await k.wait_gone(R.VMSNAPSHOT, NS, "to-delete")
        await k.wait_gone(R.VDSNAPSHOT, NS, snap["status"]["virtualDiskSnapshotNames"][0])
        assert await k.get(R.SECRET, NS, snap["status"]["virtualMachineSnapshotSecretName"]) is None
