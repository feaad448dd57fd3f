"""VirtualMachineOperation type Clone and VirtualMachineSnapshotOperation type CreateVirtualMachine."""

from __future__ import annotations

from typing import Any

from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.server import EmbeddedCluster

from .test_controllers_kit import GROUP_VERSION, Kube, condition, demo_ready, kube, phase, reason

NS = "demo"


async def clone(k: Kube, name: str, vm: str, params: dict[str, Any]) -> dict[str, Any]:
    await k.create(R.VMOP, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineOperation",
                                "metadata": {"name": name},
                                "spec": {"type": "Clone", "virtualMachineName": vm, "clone": params}})
    return await k.wait_phase(R.VMOP, NS, name, "Completed", "Failed")


def resource_names(op: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for item in op["status"]["resources"]:
        found.setdefault(item["kind"], set()).add(item["name"])
    return found


async def test_running_vm_is_refused(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        op = await clone(k, "clone-running", "linux-vm", {"mode": "Strict", "customization": {"nameSuffix": "-c"}})
        assert phase(op) == "Failed" and reason(op, "Completed") == "NotReadyToBeExecuted"
        assert "stopped" in condition(op, "Completed")["message"]
        assert await k.get(R.VM, NS, "linux-vm-c") is None


async def test_prefix_and_suffix_name_the_clone_and_temporary_snapshots_go_away(
        embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        op = await clone(k, "clone-stopped", "stopped-vm",
                         {"mode": "Strict", "customization": {"namePrefix": "copy-", "nameSuffix": "-2"}})
        assert phase(op) == "Completed", op["status"]
        assert reason(op, "Completed") == "OperationCompleted"
        assert reason(op, "SnapshotReady") == "SnapshotCleanedUp"
        assert resource_names(op) == {"VirtualMachine": {"copy-stopped-vm-2"},
                                      "VirtualDisk": {"copy-stopped-vm-root-2"}}
        assert {r["status"] for r in op["status"]["resources"]} == {"Completed"}
        copy = await k.wait_phase(R.VM, NS, "copy-stopped-vm-2", "Stopped")
        original = await k.get(R.VM, NS, "stopped-vm")
        assert original is not None
        assert copy["spec"]["blockDeviceRefs"] == [{"kind": "VirtualDisk", "name": "copy-stopped-vm-root-2"}]
        assert copy["status"]["ipAddress"] and copy["status"]["ipAddress"] != original["status"]["ipAddress"]
        disk = await k.wait_phase(R.VD, NS, "copy-stopped-vm-root-2", "Ready")
        ref = disk["spec"]["dataSource"]["objectRef"]
        assert ref["kind"] == "VirtualDiskSnapshot"
        await k.wait_gone(R.VDSNAPSHOT, NS, ref["name"])         # the temporary snapshots are removed ...
        assert await k.list(R.VMSNAPSHOT, NS) == []
        source = await k.get(R.VD, NS, "stopped-vm-root")        # ... and the data came along
        assert source is not None
        assert (disk["metadata"]["annotations"][R.ANN_CONTENT_SEED]
                == source["metadata"]["annotations"][R.ANN_CONTENT_SEED])


async def test_name_replacement(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        op = await clone(k, "clone-renamed", "stopped-vm", {"mode": "BestEffort", "nameReplacement": [
            {"from": {"kind": "VirtualMachine", "name": "stopped-vm"}, "to": "web-2"},
            {"from": {"kind": "VirtualDisk", "name": "stopped-vm-root"}, "to": "web-2-root"}],
            "customization": {"namePrefix": "prod-"}})
        assert phase(op) == "Completed", op["status"]
        await k.wait_phase(R.VM, NS, "prod-web-2", "Stopped")
        await k.wait_phase(R.VD, NS, "prod-web-2-root", "Ready")


async def test_dry_run_reports_taken_names_and_creates_nothing(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        op = await clone(k, "clone-dry", "stopped-vm", {"mode": "DryRun", "nameReplacement": [
            {"from": {"kind": "VirtualDisk", "name": "stopped-vm-root"}, "to": "spare-disk"}],
            "customization": {"nameSuffix": "-dry"}})
        assert phase(op) == "Completed"
        by_name = {r["name"]: r for r in op["status"]["resources"]}
        assert by_name["stopped-vm-dry"]["status"] == "Completed"
        assert by_name["spare-disk-dry"]["status"] == "Completed"
        assert await k.get(R.VM, NS, "stopped-vm-dry") is None
        taken = await clone(k, "clone-dry-taken", "stopped-vm", {"mode": "DryRun", "nameReplacement": [
            {"from": {"kind": "VirtualMachine", "name": "stopped-vm"}, "to": "linux-vm"}]})
        assert {r["name"]: r["status"] for r in taken["status"]["resources"]}["linux-vm"] == "Failed"
        strict = await clone(k, "clone-strict-taken", "stopped-vm", {"mode": "Strict", "nameReplacement": [
            {"from": {"kind": "VirtualMachine", "name": "stopped-vm"}, "to": "linux-vm"}]})
        assert phase(strict) == "Failed" and reason(strict, "Completed") == "OperationFailed"


async def test_create_virtual_machine_from_a_snapshot(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await k.create(R.VMSNAPSHOT, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineSnapshot",
                                          "metadata": {"name": "linux-vm-snapshot"},
                                          "spec": {"virtualMachineName": "linux-vm", "keepIPAddress": "Never"}})
        snap = await k.wait_phase(R.VMSNAPSHOT, NS, "linux-vm-snapshot", "Ready")
        await k.create(R.VMSOP, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineSnapshotOperation",
                                     "metadata": {"name": "from-snap"},
                                     "spec": {"type": "CreateVirtualMachine",
                                              "virtualMachineSnapshotName": "linux-vm-snapshot",
                                              "createVirtualMachine": {"mode": "Strict",
                                                                       "customization": {"namePrefix": "new-"}}}})
        op = await k.wait_phase(R.VMSOP, NS, "from-snap", "Completed", "Failed")
        assert phase(op) == "Completed", op["status"]
        assert reason(op, "Completed") == "OperationCompleted"
        assert resource_names(op) == {"VirtualMachine": {"new-linux-vm"}, "VirtualDisk": {"new-linux-vm-root"}}
        vm = await k.wait_phase(R.VM, NS, "new-linux-vm", "Running")
        original = await k.get(R.VM, NS, "linux-vm")
        assert original is not None and vm["status"]["ipAddress"] != original["status"]["ipAddress"]
        disk = await k.get(R.VD, NS, "new-linux-vm-root")
        assert disk is not None
        assert disk["spec"]["dataSource"]["objectRef"] == {
            "kind": "VirtualDiskSnapshot", "name": snap["status"]["virtualDiskSnapshotNames"][0]}
        assert await k.get(R.VMSNAPSHOT, NS, "linux-vm-snapshot") is not None   # the user's snapshot stays


async def test_create_virtual_machine_from_a_missing_snapshot(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await k.create(R.VMSOP, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineSnapshotOperation",
                                     "metadata": {"name": "from-nothing"},
                                     "spec": {"type": "CreateVirtualMachine", "virtualMachineSnapshotName": "nothing",
                                              "createVirtualMachine": {"mode": "Strict",
                                                                       "customization": {"nameSuffix": "-x"}}}})
        op = await k.wait_phase(R.VMSOP, NS, "from-nothing", "Failed")
        assert reason(op, "Completed") == "VirtualMachineSnapshotNotFound"
