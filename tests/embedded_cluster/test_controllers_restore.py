"""VirtualMachineOperation type Restore: DryRun report, Strict conflicts, uid check, BestEffort images."""

from __future__ import annotations

from typing import Any

from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig

from .test_controllers_kit import GROUP_VERSION, Kube, Recorder, demo_ready, kube, phase, reason, vm_manifest

NS = "demo"


async def snapshot(k: Kube, name: str, vm: str) -> dict[str, Any]:
    await k.create(R.VMSNAPSHOT, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineSnapshot",
                                      "metadata": {"name": name}, "spec": {"virtualMachineName": vm}})
    return await k.wait_phase(R.VMSNAPSHOT, NS, name, "Ready")


async def restore(k: Kube, name: str, vm: str, snap: str, mode: str) -> dict[str, Any]:
    await k.create(R.VMOP, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineOperation",
                                "metadata": {"name": name},
                                "spec": {"type": "Restore", "virtualMachineName": vm,
                                         "restore": {"mode": mode, "virtualMachineSnapshotName": snap}}})
    return await k.wait_phase(R.VMOP, NS, name, "Completed", "Failed")


def statuses(op: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(r["kind"], r["name"]): r["status"] for r in op["status"]["resources"]}


def messages(op: dict[str, Any]) -> str:
    return " ".join(r["message"] for r in op["status"]["resources"])


async def test_dry_run_reports_and_changes_nothing(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await snapshot(k, "linux-vm-snapshot", "linux-vm")
        disk_before = await k.get(R.VD, NS, "linux-vm-root")
        op = await restore(k, "dry", "linux-vm", "linux-vm-snapshot", "DryRun")
        assert phase(op) == "Completed" and reason(op, "Completed") == "OperationCompleted"
        report = statuses(op)
        assert {r["message"] for r in op["status"]["resources"] if r["name"] == "linux-vm-root"} == {
            "linux-vm-root is valid for restore"}
        assert report[("VirtualMachine", "linux-vm")] == "Completed"
        assert report[("VirtualDisk", "linux-vm-root")] == "Completed"
        assert report[("Secret", "cloud-init")] == "Completed"
        disk_after = await k.get(R.VD, NS, "linux-vm-root")
        assert disk_before is not None and disk_after is not None
        assert disk_after["metadata"]["uid"] == disk_before["metadata"]["uid"]
        assert "dataSource" not in disk_after["spec"] or disk_after["spec"]["dataSource"]["objectRef"]["kind"] != (
            "VirtualDiskSnapshot")


async def test_strict_restore_brings_back_the_spec_and_the_disks(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        snap = await snapshot(k, "before-change", "linux-vm")
        await k.patch(R.VM, NS, "linux-vm", {"spec": {"cpu": {"cores": 8}}})
        op = await restore(k, "strict", "linux-vm", "before-change", "Strict")
        assert phase(op) == "Completed", op["status"]
        assert set(statuses(op).values()) == {"Completed"}
        assert reason(op, "MaintenanceMode") == "MaintenanceModeDisabled"
        vm = await k.wait_phase(R.VM, NS, "linux-vm", "Running")
        assert vm["spec"]["cpu"]["cores"] == 1
        assert R.ANN_MAINTENANCE not in vm["metadata"].get("annotations", {})
        disk = await k.wait_phase(R.VD, NS, "linux-vm-root", "Ready")
        assert disk["spec"]["dataSource"] == {"type": "ObjectRef", "objectRef": {
            "kind": "VirtualDiskSnapshot", "name": snap["status"]["virtualDiskSnapshotNames"][0]}}


async def test_restore_stops_a_running_vm_and_starts_it_again(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await snapshot(k, "cycle", "linux-vm")
        recorder = Recorder(embedded_cluster, R.VM, "linux-vm", "Running")
        try:
            await restore(k, "cycle-restore", "linux-vm", "cycle", "Strict")
            await k.wait_phase(R.VM, NS, "linux-vm", "Running")
        finally:
            await recorder.close()
        phases = recorder.phases()
        assert "Stopped" in phases and phases[-1] == "Running", phases


async def test_an_always_on_vm_is_restored_and_comes_back_running(embedded_cluster: EmbeddedCluster) -> None:
    # The current platform accepts any runPolicy for a restore: maintenance mode holds even an
    # AlwaysOn VM stopped while it is restored, then the VM runs again.
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        vm = await k.get(R.VM, NS, "linux-vm")
        assert vm is not None and vm["spec"]["runPolicy"] == "AlwaysOn"
        await snapshot(k, "always-on", "linux-vm")
        recorder = Recorder(embedded_cluster, R.VMOP, "always-on-restore", "MaintenanceMode")
        try:
            op = await restore(k, "always-on-restore", "linux-vm", "always-on", "Strict")
        finally:
            await recorder.close()
        assert phase(op) == "Completed" and reason(op, "Completed") == "OperationCompleted", op["status"]
        assert "MaintenanceModeEnabled" in recorder.reasons()
        vm = await k.wait_phase(R.VM, NS, "linux-vm", "Running")
        assert vm["spec"]["runPolicy"] == "AlwaysOn"


async def test_restore_of_a_migrating_vm_is_not_applicable(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await snapshot(k, "before-migration", "linux-vm")
        await k.patch(R.VM, NS, "linux-vm", {"metadata": {"annotations": {R.ANN_MIGRATING: "true"}}})
        await k.wait_phase(R.VM, NS, "linux-vm", "Migrating")
        op = await restore(k, "mid-migration", "linux-vm", "before-migration", "Strict")
        assert phase(op) == "Failed" and reason(op, "Completed") == "NotApplicableForVirtualMachinePhase"
        message = next(c["message"] for c in op["status"]["conditions"] if c["type"] == "Completed")
        assert message == "Operation type Restore is not applicable for VirtualMachine in phase Migrating"
        vm = await k.get(R.VM, NS, "linux-vm")
        assert vm is not None and R.ANN_MAINTENANCE not in vm["metadata"].get("annotations", {})


async def test_strict_conflict_when_a_disk_is_attached_elsewhere(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await snapshot(k, "stopped-snap", "stopped-vm")
        await k.create(R.VM, NS, vm_manifest("disk-thief", ["stopped-vm-root"], run_policy="AlwaysOff"))
        op = await restore(k, "conflict-disk", "stopped-vm", "stopped-snap", "Strict")
        assert phase(op) == "Failed" and reason(op, "Completed") == "OperationFailed"
        assert statuses(op)[("VirtualDisk", "stopped-vm-root")] == "Failed"
        assert "disk-thief" in messages(op)
        # A dry run reports the same conflict per resource and, as the real controller does, fails.
        disk_before = await k.get(R.VD, NS, "stopped-vm-root")
        dry = await restore(k, "conflict-dry", "stopped-vm", "stopped-snap", "DryRun")
        assert phase(dry) == "Failed" and reason(dry, "Completed") == "OperationFailed"
        assert statuses(dry)[("VirtualDisk", "stopped-vm-root")] == "Failed"
        assert statuses(dry)[("VirtualMachine", "stopped-vm")] == "Completed"
        disk_after = await k.get(R.VD, NS, "stopped-vm-root")
        assert disk_before is not None and disk_after is not None
        assert disk_after["metadata"]["uid"] == disk_before["metadata"]["uid"]


async def test_strict_conflict_when_the_ip_address_is_taken(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        snap = await snapshot(k, "ip-snap", "stopped-vm")
        ip_name = next(r["name"] for r in snap["status"]["resources"] if r["kind"] == "VirtualMachineIPAddress")
        await k.create(R.VMIP, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineIPAddress",
                                    "metadata": {"name": "other-ip"}, "spec": {"type": "Auto"}})
        await k.patch(R.VM, NS, "stopped-vm", {"spec": {"virtualMachineIPAddressName": "other-ip"}})
        await k.create(R.VM, NS, vm_manifest("ip-thief", ["spare-disk"], run_policy="AlwaysOff",
                                             extra={"virtualMachineIPAddressName": ip_name}))
        await k.wait(R.VMIP, NS, ip_name, lambda o: o["status"].get("virtualMachineName") == "ip-thief")
        op = await restore(k, "conflict-ip", "stopped-vm", "ip-snap", "Strict")
        assert phase(op) == "Failed"
        assert statuses(op)[("VirtualMachineIPAddress", ip_name)] == "Failed"
        assert "ip-thief" in messages(op)


async def test_strict_conflict_when_a_mac_address_is_in_use(embedded_cluster: EmbeddedCluster) -> None:
    networks = {"networks": [{"type": "Main"}, {"type": "Network", "name": "net-a"}]}
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await k.create(R.VM, NS, vm_manifest("mac-vm", ["spare-disk"], run_policy="AlwaysOff", extra=networks))
        vm = await k.wait(R.VM, NS, "mac-vm", lambda o: any(n.get("macAddress") for n in
                                                             o.get("status", {}).get("networks") or []))
        mac_name = next(n["virtualMachineMACAddressName"] for n in vm["status"]["networks"] if n["type"] == "Network")
        snap = await snapshot(k, "mac-snap", "mac-vm")
        assert ("VirtualMachineMACAddress", mac_name) in [(r["kind"], r["name"]) for r in snap["status"]["resources"]]
        await k.patch(R.VM, NS, "mac-vm", {"spec": {"networks": [{"type": "Main"}]}})
        thief_networks = {"networks": [{"type": "Main"}, {"type": "Network", "name": "net-a",
                                                          "virtualMachineMACAddressName": mac_name}]}
        await k.create(R.VM, NS, vm_manifest("mac-thief", ["spare-disk"], run_policy="AlwaysOff", extra=thief_networks))
        await k.wait(R.VMMAC, NS, mac_name, lambda o: o["status"].get("virtualMachineName") == "mac-thief")
        op = await restore(k, "conflict-mac", "mac-vm", "mac-snap", "Strict")
        assert phase(op) == "Failed"
        assert statuses(op)[("VirtualMachineMACAddress", mac_name)] == "Failed"


async def test_uid_mismatch_fails(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await snapshot(k, "old-uid", "stopped-vm")
        original = await k.get(R.VM, NS, "stopped-vm")
        assert original is not None
        await k.delete(R.VM, NS, "stopped-vm")
        await k.wait_gone(R.VM, NS, "stopped-vm")
        await k.create(R.VM, NS, vm_manifest("stopped-vm", ["stopped-vm-root"], run_policy="AlwaysOff"))
        op = await restore(k, "wrong-uid", "stopped-vm", "old-uid", "Strict")
        assert phase(op) == "Failed" and reason(op, "Completed") == "OperationFailed"
        assert statuses(op)[("VirtualMachine", "stopped-vm")] == "Failed"
        assert "uid" in messages(op)


async def test_missing_image_strict_keeps_it_best_effort_drops_it(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await snapshot(k, "with-image", "image-vm")
        await k.delete(R.VI, NS, "tools-image")
        await k.wait_gone(R.VI, NS, "tools-image")
        strict = await restore(k, "image-strict", "image-vm", "with-image", "Strict")
        assert phase(strict) == "Completed", strict["status"]
        vm = await k.wait_phase(R.VM, NS, "image-vm", "Pending")
        assert {"kind": "VirtualImage", "name": "tools-image"} in vm["spec"]["blockDeviceRefs"]
        assert reason(vm, "BlockDevicesReady") == "BlockDevicesNotReady"
        best = await restore(k, "image-best", "image-vm", "with-image", "BestEffort")
        assert phase(best) == "Completed", best["status"]
        assert ("VirtualImage", "tools-image") in statuses(best)
        vm = await k.wait_phase(R.VM, NS, "image-vm", "Running")
        assert all(ref["kind"] != "VirtualImage" for ref in vm["spec"]["blockDeviceRefs"])


async def test_a_vm_held_by_a_vanished_restore_is_released(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await k.patch(R.VM, NS, "linux-vm", {"metadata": {"annotations": {R.ANN_MAINTENANCE: "deleted-restore"}}})
        vm = await k.wait(R.VM, NS, "linux-vm",
                          lambda o: R.ANN_MAINTENANCE not in o["metadata"].get("annotations", {}))
        assert phase(vm) == "Running"


async def test_start_and_stop_operations_drive_a_manual_vm(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await k.create(R.VM, NS, vm_manifest("manual-vm", ["spare-disk"], run_policy="Manual"))
        await k.wait_phase(R.VM, NS, "manual-vm", "Stopped")
        for op_name, op_type, wanted in (("start-it", "Start", "Running"), ("stop-it", "Stop", "Stopped")):
            await k.create(R.VMOP, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineOperation",
                                        "metadata": {"name": op_name},
                                        "spec": {"type": op_type, "virtualMachineName": "manual-vm"}})
            op = await k.wait_phase(R.VMOP, NS, op_name, "Completed", "Failed")
            assert phase(op) == "Completed" and reason(op, "Completed") == "OperationCompleted"
            assert phase(await k.get(R.VM, NS, "manual-vm")) == wanted


async def test_restart_operation_stops_and_starts_the_vm(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        recorder = Recorder(embedded_cluster, R.VM, "no-agent-vm", "Running")
        try:
            await k.create(R.VMOP, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineOperation",
                                        "metadata": {"name": "restart-it"},
                                        "spec": {"type": "Restart", "virtualMachineName": "no-agent-vm"}})
            op = await k.wait_phase(R.VMOP, NS, "restart-it", "Completed", "Failed")
        finally:
            await recorder.close()
        assert phase(op) == "Completed" and reason(op, "SignalSent") == "SignalSentSuccess"
        assert recorder.phases()[-3:] == ["Stopped", "Starting", "Running"], recorder.phases()


async def test_deleting_a_restore_in_progress_terminates_it_and_releases_the_vm() -> None:
    # Paced steps keep the restore InProgress long enough to delete it mid-way.
    cluster = EmbeddedCluster(EmbeddedClusterConfig(step_delay=0.1, seed_demo=True))
    async with cluster, kube(cluster) as k:
        await k.wait_phase(R.VM, NS, "linux-vm", "Running")
        await snapshot(k, "paced", "linux-vm")
        await k.create(R.VMOP, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineOperation",
                                    "metadata": {"name": "abandoned"},
                                    "spec": {"type": "Restore", "virtualMachineName": "linux-vm",
                                             "restore": {"mode": "Strict", "virtualMachineSnapshotName": "paced"}}})
        await k.wait(R.VMOP, NS, "abandoned", lambda o: phase(o) == "InProgress" and bool(o["metadata"].get(
            "finalizers")))
        recorder = Recorder(cluster, R.VMOP, "abandoned", "Completed")
        try:
            await k.delete(R.VMOP, NS, "abandoned")
            await k.wait_gone(R.VMOP, NS, "abandoned")
        finally:
            await recorder.close()
        assert "Terminating" in recorder.phases()
        vm = await k.wait_phase(R.VM, NS, "linux-vm", "Running")
        assert R.ANN_MAINTENANCE not in vm["metadata"].get("annotations", {})
