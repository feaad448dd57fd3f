"""VirtualDiskSnapshot consistency rules, end to end over HTTP against the embedded cluster."""

from __future__ import annotations

from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.server import EmbeddedCluster

from .test_controllers_kit import GROUP_VERSION, Kube, Recorder, condition, demo_ready, kube, phase, reason

NS = "demo"


def vdsnapshot(name: str, disk: str, required: bool | None = None) -> dict[str, object]:
    spec: dict[str, object] = {"virtualDiskName": disk}
    if required is not None:
        spec["requiredConsistency"] = required
    return {"apiVersion": GROUP_VERSION, "kind": "VirtualDiskSnapshot", "metadata": {"name": name}, "spec": spec}


async def take(k: Kube, name: str, disk: str, required: bool | None = None) -> None:
    await k.create(R.VDSNAPSHOT, NS, vdsnapshot(name, disk, required))


async def test_detached_disk_gives_a_consistent_snapshot(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await take(k, "spare-snap", "spare-disk")
        snap = await k.wait_phase(R.VDSNAPSHOT, NS, "spare-snap", "Ready")
        assert snap["status"]["consistent"] is True
        assert snap["status"]["volumeSnapshotName"]
        assert reason(snap, "VirtualDiskSnapshotReady") == "VirtualDiskSnapshotReady"
        assert condition(snap, "VirtualDiskReady")["status"] == "True"
        assert snap["spec"]["requiredConsistency"] is True      # the CRD's default
        assert R.VDSNAPSHOT_FINALIZER in snap["metadata"]["finalizers"]


async def test_stopped_vm_gives_a_consistent_snapshot(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await take(k, "stopped-snap", "stopped-vm-root")
        snap = await k.wait_phase(R.VDSNAPSHOT, NS, "stopped-snap", "Ready", "Failed")
        assert phase(snap) == "Ready"
        assert snap["status"]["consistent"] is True


async def test_running_vm_with_agent_is_frozen_then_thawed(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        recorder = Recorder(embedded_cluster, R.VDSNAPSHOT, "frozen-snap", "VirtualDiskSnapshotReady")
        vm_recorder = Recorder(embedded_cluster, R.VM, "linux-vm", "FilesystemFrozen")
        disk_recorder = Recorder(embedded_cluster, R.VD, "linux-vm-root", "Snapshotting")
        try:
            await take(k, "frozen-snap", "linux-vm-root")
            snap = await k.wait_phase(R.VDSNAPSHOT, NS, "frozen-snap", "Ready", "Failed")
        finally:
            await recorder.close()
            await vm_recorder.close()
            await disk_recorder.close()
        assert phase(snap) == "Ready" and snap["status"]["consistent"] is True
        reasons = recorder.reasons()
        for expected in ("Snapshotting", "FileSystemFreezing", "FileSystemUnfreezing", "VirtualDiskSnapshotReady"):
            assert expected in reasons, reasons
        assert reasons.index("FileSystemFreezing") < reasons.index("FileSystemUnfreezing")
        assert recorder.phases()[-2:] == ["InProgress", "Ready"]
        assert "Frozen" in vm_recorder.reasons()            # the VM showed FilesystemFrozen while frozen
        assert "Snapshotting" in disk_recorder.reasons()    # and the disk its Snapshotting condition
        vm = await k.get(R.VM, NS, "linux-vm")
        assert vm is not None and R.ANN_FROZEN_BY not in vm["metadata"].get("annotations", {})
        assert all(c["type"] != "FilesystemFrozen" for c in vm["status"]["conditions"])


async def test_running_vm_without_agent_waits_when_consistency_is_required(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await take(k, "no-agent-snap", "no-agent-vm-root", required=True)
        snap = await k.wait(R.VDSNAPSHOT, NS, "no-agent-snap",
                            lambda o: reason(o, "VirtualDiskSnapshotReady") == "PotentiallyInconsistent"
                            if o.get("status", {}).get("conditions") else False)
        assert phase(snap) == "Pending"
        message = condition(snap, "VirtualDiskSnapshotReady")["message"]
        assert "agent is not ready" in message and "no-agent-vm" in message
        # Stopping the VM lets the snapshot go on, consistently.
        await k.patch(R.VM, NS, "no-agent-vm", {"spec": {"runPolicy": "AlwaysOff"}})
        snap = await k.wait_phase(R.VDSNAPSHOT, NS, "no-agent-snap", "Ready")
        assert snap["status"]["consistent"] is True


async def test_running_vm_without_agent_and_consistency_not_required(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await take(k, "loose-snap", "no-agent-vm-root", required=False)
        snap = await k.wait_phase(R.VDSNAPSHOT, NS, "loose-snap", "Ready", "Failed")
        assert phase(snap) == "Ready"
        assert snap["status"].get("consistent") in (None, False)


async def test_failing_fsfreeze_fails_the_snapshot(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await k.patch(R.VM, NS, "linux-vm", {"metadata": {"annotations": {R.ANN_FSFREEZE: "fail"}}})
        await take(k, "freeze-fails", "linux-vm-root")
        snap = await k.wait_phase(R.VDSNAPSHOT, NS, "freeze-fails", "Failed")
        assert reason(snap, "VirtualDiskSnapshotReady") == "VirtualDiskSnapshotFailed"
        assert "freeze" in condition(snap, "VirtualDiskSnapshotReady")["message"]


async def test_missing_disk_keeps_the_snapshot_pending(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await take(k, "orphan-snap", "no-such-disk")
        snap = await k.wait(R.VDSNAPSHOT, NS, "orphan-snap", lambda o: bool(o.get("status", {}).get("conditions")))
        assert phase(snap) == "Pending"
        assert reason(snap, "VirtualDiskReady") == "WaitingForTheVirtualDisk"
        assert condition(snap, "VirtualDiskReady")["status"] == "False"


async def test_deletion_goes_through_terminating(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await take(k, "short-lived", "spare-disk")
        await k.wait_phase(R.VDSNAPSHOT, NS, "short-lived", "Ready")
        recorder = Recorder(embedded_cluster, R.VDSNAPSHOT, "short-lived", "VirtualDiskSnapshotReady")
        try:
            await k.delete(R.VDSNAPSHOT, NS, "short-lived")
            await k.wait_gone(R.VDSNAPSHOT, NS, "short-lived")
        finally:
            await recorder.close()
        assert "Terminating" in recorder.phases()
