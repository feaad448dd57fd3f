"""VM snapshots, disk and VM restores, in-use deletes and cancellation, end to end through
BOTH doors: each scenario is written once against ``Door`` (tests/support/doors.py) and runs
over gRPC (a real channel, generated stubs) and over REST (a real aiohttp client, every
response validated against openapi.yaml), on the whole gateway over the embedded cluster
(real HTTP) and SQLite. States the scenarios need (a disk resizing, a VM re-created, an
address held by another VM, an image gone) are set up through the cluster's API, as the
embedded cluster's own tests do. Every custom resource the gateway wrote validates against
the full upstream CRD in ../shared/crds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.embedded_cluster.controllers import resources as R
from tests.embedded_cluster.test_controllers_kit import (
    GROUP_VERSION,
    Kube,
    demo_ready,
    kube,
    vm_manifest,
)
from tests.support.doors import Door, assert_valid_upstream, open_door, pace, results_by_name
from tests.support.gateway import GatewayServer

NS = "demo"
STORAGE_CLASS = "i-sds-replicated-thin-r2"   # the demo disks' storage class

# Both doors over SQLite only: the store is not what these scenarios are about.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

Obj = dict[str, Any]


@pytest.fixture(params=["grpc", "rest"])
async def door(request: pytest.FixtureRequest, gateway_server: GatewayServer) -> AsyncIterator[Door]:
    async with open_door(request.param, gateway_server) as opened:
        yield opened


@pytest.fixture
async def k(gateway_server: GatewayServer) -> AsyncIterator[Kube]:
    async with kube(gateway_server.cluster) as client:
        await demo_ready(client)
        yield client


def named(door: Door, base: str) -> str:
    """Object names differ per door (a failing run never mixes the two doors' objects)."""
    return f"{door.name}-{base}"


async def vm_snapshot_ready(door: Door, name: str, vm: str, **options: Any) -> tuple[Obj, Obj]:
    """Create a VM snapshot through the door and follow it to SUCCEEDED: (accepted, done)."""
    accepted = await door.create_vm_snapshot(name, vm, **options)
    done = await door.wait_done(accepted["id"])
    assert done["state"] == "SUCCEEDED", done
    return accepted, done


def warning_with(op: Obj, text: str) -> list[str]:
    return [w for w in op["warnings"] if text in w]


# ----------------------------------------------------------------- 1. VM snapshot


async def test_consistent_vm_snapshot_saves_the_vm_and_its_disks(door: Door, k: Kube) -> None:
    name = named(door, "stopped-snap")
    accepted, done = await vm_snapshot_ready(door, name, "stopped-vm")
    assert accepted["type"] == "CREATE_VM_SNAPSHOT" and accepted["state"] in ("PENDING", "RUNNING")
    assert (accepted["target"]["kind"], accepted["target"]["name"]) == ("VirtualMachine", "stopped-vm")
    assert accepted["target"]["uid"], "the VM's uid is recorded on the operation"
    assert (done["resource"]["kind"], done["resource"]["name"]) == ("VirtualMachineSnapshot", name)

    snap_obj = await k.get(R.VMSNAPSHOT, NS, name)
    assert snap_obj is not None and snap_obj["status"]["phase"] == "Ready"
    disk_snapshots = snap_obj["status"]["virtualDiskSnapshotNames"]
    assert len(disk_snapshots) == 1
    results = results_by_name(done)
    assert results[("VirtualMachine", "stopped-vm")]["status"] == "Saved"
    assert results[("VirtualDisk", "stopped-vm-root")]["status"] == "Saved"
    per_disk = results[("VirtualDiskSnapshot", disk_snapshots[0])]
    assert (per_disk["status"], per_disk["reason"]) == ("Saved", "DiskSnapshot")
    assert not [r for r in done["results"] if r["kind"] in ("VirtualImage", "ClusterVirtualImage")]

    # Get, List and Watch show it.
    got = await door.get_vm_snapshot(name)
    assert (got["phase"], got["virtualMachineName"], got["operationId"]) == ("Ready", "stopped-vm", accepted["id"])
    assert got["keepIPAddress"] == "Always" and got["requiredConsistency"] is True and got["consistent"] is True
    assert got["virtualDiskSnapshotNames"] == disk_snapshots
    assert {("VirtualMachine", "stopped-vm"), ("VirtualDisk", "stopped-vm-root")} <= {
        (r["kind"], r["name"]) for r in got["resources"]}
    listed = [s for s in await door.list_vm_snapshots() if s["name"] == name]
    assert len(listed) == 1 and listed[0]["phase"] == "Ready"
    events = await door.watch_vm_snapshot(name, lambda e: e["snapshot"]["phase"] == "Ready")
    assert events[-1]["type"] == "ADDED" and events[-1]["snapshot"]["name"] == name

    # The custom resource: keepIPAddress Always by default, valid for the upstream CRD.
    assert snap_obj["spec"] == {"virtualMachineName": "stopped-vm", "requiredConsistency": True,
                                "keepIPAddress": "Always"}
    assert_valid_upstream(snap_obj, "virtualmachinesnapshots.yaml")


# ----------------------------------------------------------------- 2. consistency


async def test_vm_snapshot_that_cannot_be_consistent_now(door: Door, k: Kube) -> None:
    waiting = await door.create_vm_snapshot(named(door, "no-agent"), "no-agent-vm")
    assert warning_with(waiting, "cannot be frozen"), waiting["warnings"]
    # It waits (the platform: PotentiallyInconsistent), it does not end.
    pending = await door.wait_until(waiting["id"], lambda op: any(
        c["reason"] == "PotentiallyInconsistent" for c in op["conditions"]))
    assert (pending["state"], pending["phase"], pending["done"]) == ("RUNNING", "Pending", False), pending
    assert warning_with(pending, "VirtualMachineSnapshotReady: PotentiallyInconsistent"), pending["warnings"]

    accepted, done = await vm_snapshot_ready(door, named(door, "no-agent-anyway"), "no-agent-vm",
                                             required_consistency=False)
    assert not warning_with(accepted, "cannot be frozen")
    assert not warning_with(done, "PotentiallyInconsistent")
    got = await door.get_vm_snapshot(named(door, "no-agent-anyway"))
    assert got["requiredConsistency"] is False and got["phase"] == "Ready"


# ----------------------------------------------------------------- 3. keepIPAddress


async def test_keep_ip_address_never_and_always(door: Door, k: Kube) -> None:
    vm = await k.get(R.VM, NS, "linux-vm")
    assert vm is not None
    ip_name = vm["status"]["virtualMachineIPAddressName"]
    vmip = await k.get(R.VMIP, NS, ip_name)
    assert vmip is not None and vmip["spec"]["type"] == "Auto", "the demo VM has a dynamic address"

    never = named(door, "keep-never")
    accepted, _ = await vm_snapshot_ready(door, never, "linux-vm", keep_ip_address="Never")
    assert not warning_with(accepted, "pinned as static"), accepted["warnings"]
    written = await k.get(R.VMSNAPSHOT, NS, never)
    assert written is not None and written["spec"]["keepIPAddress"] == "Never"
    assert (await door.get_vm_snapshot(never))["keepIPAddress"] == "Never"
    vmip = await k.get(R.VMIP, NS, ip_name)
    assert vmip is not None and vmip["spec"]["type"] == "Auto", "Never leaves the address dynamic"

    always = named(door, "keep-always")
    accepted, _ = await vm_snapshot_ready(door, always, "linux-vm", keep_ip_address="Always")
    pinned = warning_with(accepted, "pinned as static")
    assert len(pinned) == 1 and ip_name in pinned[0] and vmip["status"]["address"] in pinned[0]
    written = await k.get(R.VMSNAPSHOT, NS, always)
    assert written is not None and written["spec"]["keepIPAddress"] == "Always"
    vmip = await k.get(R.VMIP, NS, ip_name)
    assert vmip is not None and vmip["spec"]["type"] == "Static", "the platform pinned the address"


# ----------------------------------------------------------------- 4. images


async def test_vm_snapshot_warns_that_images_are_not_saved(door: Door, k: Kube) -> None:
    accepted, done = await vm_snapshot_ready(door, named(door, "image-snap"), "image-vm")
    images = warning_with(accepted, "images are not saved")
    assert len(images) == 1 and "VirtualImage 'tools-image'" in images[0], accepted["warnings"]
    assert warning_with(done, "images are not saved") == images
    assert ("VirtualImage", "tools-image") not in results_by_name(done)
    assert ("VirtualDisk", "image-vm-root") in results_by_name(done)


# ----------------------------------------------------------------- 5. precondition


async def test_vm_snapshot_refused_while_a_disk_is_resizing(door: Door, k: Kube) -> None:
    await k.patch(R.VD, NS, "stopped-vm-root", {"metadata": {"annotations": {R.ANN_RESIZE_HOLD: "true"}},
                                                "spec": {"persistentVolumeClaim": {"size": "20Gi"}}})
    await k.wait_phase(R.VD, NS, "stopped-vm-root", "Resizing")
    err = await door.refused(door.create_vm_snapshot(named(door, "resizing"), "stopped-vm"))
    assert (err.code, err.reason) == ("FAILED_PRECONDITION", "DISK_RESIZING"), err
    assert err.http_status in (None, 412)
    assert err.subjects == ["virtualdisks/stopped-vm-root"] and err.types == ["DISK_RESIZING"]
    assert "stopped-vm-root" in err.message
    assert await k.list(R.VMSNAPSHOT, NS) == [], "nothing is written"


# ----------------------------------------------------------------- 6. RestoreDisk


async def test_restore_disk_from_a_disk_snapshot(door: Door, k: Kube) -> None:
    snapshot = named(door, "spare-snap")
    created = await door.create_disk_snapshot(snapshot, "spare-disk")
    assert (await door.wait_done(created["id"]))["state"] == "SUCCEEDED"

    bigger = named(door, "restored-2g")
    accepted = await door.restore_disk(bigger, snapshot, size="2Gi")
    assert accepted["type"] == "RESTORE_DISK"
    assert (accepted["target"]["kind"], accepted["target"]["name"]) == ("VirtualDiskSnapshot", snapshot)
    done = await door.wait_done(accepted["id"])
    assert done["state"] == "SUCCEEDED" and done["phase"] == "Ready", done
    assert (done["resource"]["kind"], done["resource"]["name"]) == ("VirtualDisk", bigger)
    disk = await k.get(R.VD, NS, bigger)
    assert disk is not None
    assert disk["spec"]["dataSource"] == {"type": "ObjectRef",
                                          "objectRef": {"kind": "VirtualDiskSnapshot", "name": snapshot}}
    assert disk["spec"]["persistentVolumeClaim"] == {"size": "2Gi", "storageClassName": STORAGE_CLASS}
    assert disk["status"]["capacity"] == "2Gi"
    assert_valid_upstream(disk, "virtualdisks.yaml")

    same = named(door, "restored-same")
    accepted = await door.restore_disk(same, snapshot)
    assert warning_with(accepted, "size 1Gi taken from the source VirtualDisk 'spare-disk'")
    assert (await door.wait_done(accepted["id"]))["state"] == "SUCCEEDED"
    disk = await k.get(R.VD, NS, same)
    assert disk is not None
    assert disk["spec"]["persistentVolumeClaim"] == {"size": "1Gi", "storageClassName": STORAGE_CLASS}

    smaller = named(door, "restored-small")
    err = await door.refused(door.restore_disk(smaller, snapshot, size="512Mi"))
    assert err.code == "INVALID_ARGUMENT" and err.http_status in (None, 400), err
    assert list(err.fields) == ["size"] and "1Gi" in err.fields["size"]
    assert await k.get(R.VD, NS, smaller) is None, "nothing is written"


# ----------------------------------------------------------------- 7. DryRun conflicts


async def _vm_with_everything(k: Kube, vm: str, disk: str) -> Obj:
    """A stopped VM with a disk, an IP address and a MAC address (a second network)."""
    await k.create(R.VM, NS, vm_manifest(vm, [disk], run_policy="AlwaysOff", extra={
        "networks": [{"type": "Main"}, {"type": "Network", "name": "net-a"}]}))
    return await k.wait(R.VM, NS, vm, lambda o: o.get("status", {}).get("phase") == "Stopped" and any(
        n.get("macAddress") for n in o["status"].get("networks") or []))


async def _ensure_address(k: Kube, resource: str, kind: str, name: str) -> None:
    """The address object ``name`` exists (deleting its VM collected it with the VM)."""
    if await k.get(resource, NS, name) is None:
        await k.create(resource, NS, {"apiVersion": GROUP_VERSION, "kind": kind, "metadata": {"name": name},
                                      "spec": {"type": "Auto"} if kind == "VirtualMachineIPAddress" else {}})


async def _conflicted(door: Door, k: Kube) -> tuple[str, str, str, str]:
    """A VM snapshot whose restore meets every conflict kind: the snapshot's disk attached to
    another VM, its IP and MAC addresses held by that VM, and the VM deleted and re-created
    (another uid). Returns (vm, snapshot, ip name, mac name)."""
    vm, snapshot = named(door, "conflicted"), named(door, "conflicted-snap")
    await _vm_with_everything(k, vm, "spare-disk")
    await vm_snapshot_ready(door, snapshot, vm)
    snap = await k.get(R.VMSNAPSHOT, NS, snapshot)
    assert snap is not None
    saved = {r["kind"]: r["name"] for r in snap["status"]["resources"]}
    ip_name, mac_name = saved["VirtualMachineIPAddress"], saved["VirtualMachineMACAddress"]

    await k.delete(R.VM, NS, vm)
    await k.wait_gone(R.VM, NS, vm)
    await _ensure_address(k, R.VMIP, "VirtualMachineIPAddress", ip_name)
    await _ensure_address(k, R.VMMAC, "VirtualMachineMACAddress", mac_name)
    thief = named(door, "thief")
    await k.create(R.VM, NS, vm_manifest(thief, ["spare-disk"], run_policy="AlwaysOff", extra={
        "virtualMachineIPAddressName": ip_name,
        "networks": [{"type": "Main"},
                     {"type": "Network", "name": "net-a", "virtualMachineMACAddressName": mac_name}]}))
    await k.wait(R.VMIP, NS, ip_name, lambda o: o.get("status", {}).get("virtualMachineName") == thief)
    await k.wait(R.VMMAC, NS, mac_name, lambda o: o.get("status", {}).get("virtualMachineName") == thief)
    # The VM comes back under the same name: a new uid, none of the old devices.
    await k.create(R.VD, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualDisk",
                              "metadata": {"name": named(door, "fresh-disk")},
                              "spec": {"persistentVolumeClaim": {"size": "1Gi"}}})
    await k.create(R.VM, NS, vm_manifest(vm, [named(door, "fresh-disk")], run_policy="AlwaysOff"))
    await k.wait_phase(R.VM, NS, vm, "Stopped")
    return vm, snapshot, ip_name, mac_name


async def test_dry_run_restore_lists_every_conflict(door: Door, k: Kube) -> None:
    vm, snapshot, ip_name, mac_name = await _conflicted(door, k)
    expected = {("VirtualMachine", vm): "UidMismatch", ("VirtualDisk", "spare-disk"): "AttachedToAnotherVM",
                ("VirtualMachineIPAddress", ip_name): "IPAddressInUse",
                ("VirtualMachineMACAddress", mac_name): "MACAddressInUse"}

    accepted = await door.restore_vm(vm, snapshot, "DryRun")
    assert accepted["type"] == "RESTORE_VM" and warning_with(accepted, "DryRun: nothing is changed")
    results = results_by_name(accepted)
    for key, reason in expected.items():
        assert key in results, (key, accepted["results"])
        assert (results[key]["status"], results[key]["reason"]) == ("Conflict", reason), results[key]
        assert results[key]["message"]
    assert named(door, "thief") in results[("VirtualDisk", "spare-disk")]["message"]

    # Followed to its end: the platform's dry run fails on the conflicts; every one stays listed.
    done = await door.wait_done(accepted["id"])
    assert done["state"] == "FAILED" and done["phase"] == "Failed", done
    results = results_by_name(done)
    for key, reason in expected.items():
        assert results[key]["reason"] == reason and results[key]["status"] in ("Conflict", "Failed"), results[key]
    vmop = await k.get(R.VMOP, NS, done["resource"]["name"])
    assert vmop is not None and vmop["spec"]["restore"] == {"mode": "DryRun", "virtualMachineSnapshotName": snapshot}
    assert_valid_upstream(vmop, "virtualmachineoperations.yaml")
    disk = await k.get(R.VD, NS, "spare-disk")
    assert disk is not None and "dataSource" not in disk["spec"], "a dry run changes nothing"

    # Strict is refused with every blocking conflict, and nothing is written.
    before = {o["metadata"]["name"] for o in await k.list(R.VMOP, NS)}
    err = await door.refused(door.restore_vm(vm, snapshot, "Strict"))
    assert err.code == "FAILED_PRECONDITION" and err.http_status in (None, 412), err
    assert sorted(err.types) == sorted(expected.values())
    assert sorted(err.subjects) == sorted(f"{kind}/{name}" for kind, name in expected)
    assert {o["metadata"]["name"] for o in await k.list(R.VMOP, NS)} == before, "nothing is written"


# ----------------------------------------------------------------- 8. missing image


async def test_restore_with_a_missing_image_strict_and_best_effort(door: Door, k: Kube) -> None:
    snapshot = named(door, "with-image")
    await vm_snapshot_ready(door, snapshot, "image-vm")
    await k.delete(R.VI, NS, "tools-image")
    await k.wait_gone(R.VI, NS, "tools-image")

    strict = await door.restore_vm("image-vm", snapshot, "Strict")
    image = results_by_name(strict)[("VirtualImage", "tools-image")]
    assert (image["status"], image["reason"]) == ("Pending", "ImageNotFound"), image
    assert warning_with(strict, "stays Pending")
    done = await door.wait_done(strict["id"])
    assert done["state"] == "SUCCEEDED", done
    image = results_by_name(done)[("VirtualImage", "tools-image")]
    assert (image["status"], image["reason"]) == ("Pending", "ImageNotFound"), image
    vmop = await k.get(R.VMOP, NS, done["resource"]["name"])
    assert vmop is not None
    assert vmop["spec"] == {"type": "Restore", "virtualMachineName": "image-vm",
                            "restore": {"mode": "Strict", "virtualMachineSnapshotName": snapshot}}
    assert_valid_upstream(vmop, "virtualmachineoperations.yaml")
    # The guide: the restored VM waits, Pending, for the image.
    vm = await k.wait_phase(R.VM, NS, "image-vm", "Pending")
    assert {"kind": "VirtualImage", "name": "tools-image"} in vm["spec"]["blockDeviceRefs"]

    best = await door.restore_vm("image-vm", snapshot, "BestEffort")
    image = results_by_name(best)[("VirtualImage", "tools-image")]
    assert (image["status"], image["reason"]) == ("Dropped", "ImageNotFound"), image
    done = await door.wait_done(best["id"])
    assert done["state"] == "SUCCEEDED", done
    image = results_by_name(done)[("VirtualImage", "tools-image")]
    assert (image["status"], image["reason"]) == ("Dropped", "ImageNotFound"), image
    vm = await k.wait_phase(R.VM, NS, "image-vm", "Running")
    assert [ref["kind"] for ref in vm["spec"]["blockDeviceRefs"]] == ["VirtualDisk"]


# ----------------------------------------------------------------- 9. in-use delete


async def test_disk_snapshot_in_use_is_not_deleted(door: Door, k: Kube, gateway_server: GatewayServer) -> None:
    vm_snapshot = named(door, "holder")
    await vm_snapshot_ready(door, vm_snapshot, "stopped-vm")
    held = (await door.get_vm_snapshot(vm_snapshot))["virtualDiskSnapshotNames"][0]
    err = await door.refused(door.delete_disk_snapshot(held))
    assert (err.code, err.reason) == ("FAILED_PRECONDITION", "IN_USE") and err.http_status in (None, 412), err
    assert err.subjects == [f"virtualmachinesnapshots/{vm_snapshot}"] and vm_snapshot in err.message
    assert await k.get(R.VDSNAPSHOT, NS, held) is not None

    # A disk still being provisioned from a snapshot holds it too (the disk controller paced
    # so that the new disk stays Pending).
    source = named(door, "source")
    created = await door.create_disk_snapshot(source, "spare-disk")
    assert (await door.wait_done(created["id"]))["state"] == "SUCCEEDED"
    pace(gateway_server.cluster, R.VD, 60.0)
    provisioning = named(door, "provisioning")
    await k.create(R.VD, NS, {"apiVersion": GROUP_VERSION, "kind": "VirtualDisk", "metadata": {"name": provisioning},
                              "spec": {"persistentVolumeClaim": {"size": "1Gi"}, "dataSource": {
                                  "type": "ObjectRef", "objectRef": {"kind": "VirtualDiskSnapshot", "name": source}}}})
    await k.wait_phase(R.VD, NS, provisioning, "Pending")
    err = await door.refused(door.delete_disk_snapshot(source))
    assert (err.code, err.reason) == ("FAILED_PRECONDITION", "IN_USE"), err
    assert err.subjects == [f"virtualdisks/{provisioning}"] and provisioning in err.message
    assert await k.get(R.VDSNAPSHOT, NS, source) is not None


# ----------------------------------------------------------------- 10. cancel


async def test_cancel_a_vm_restore_in_progress(door: Door, k: Kube, gateway_server: GatewayServer) -> None:
    snapshot = named(door, "to-cancel")
    created, _ = await vm_snapshot_ready(door, snapshot, "linux-vm")

    # A done operation cannot be called off.
    err = await door.refused(door.cancel_operation(created["id"]))
    assert (err.code, err.reason) == ("FAILED_PRECONDITION", "OPERATION_DONE") and err.http_status in (None, 412)

    # The restore holds the running VM stopped while it works: pace the VM controller so the
    # VM stays Stopping, and the restore InProgress, for as long as the test needs.
    pace(gateway_server.cluster, R.VM, 60.0)
    restore = await door.restore_vm("linux-vm", snapshot, "Strict")
    working = await door.wait_until(restore["id"], lambda op: op["phase"] == "InProgress")
    assert working["state"] == "RUNNING"
    assert any(c["type"] == "Completed" and c["reason"] == "RestoreInProgress" for c in working["conditions"])

    err = await door.refused(door.cancel_operation(restore["id"]))
    assert (err.code, err.reason) == ("FAILED_PRECONDITION", "RESTORE_IN_PROGRESS") and err.http_status in (None, 412)
    assert err.subjects == [f"operations/{restore['id']}"]
    assert (await door.get_operation(restore["id"]))["state"] == "RUNNING", "a refused cancel changes nothing"

    cancelled = await door.cancel_operation(restore["id"], force=True)
    assert (cancelled["state"], cancelled["done"]) == ("CANCELLED", True), cancelled
    assert (await door.wait_done(restore["id"]))["state"] == "CANCELLED"
    await k.wait_gone(R.VMOP, NS, restore["resource"]["name"])

    events = [e for e in await door.audit_events("CancelOperation") if e["operationId"] == restore["id"]]
    assert sorted((e["outcome"], e["reason"], e["details"].get("forced")) for e in events) == [
        ("ERROR", "RESTORE_IN_PROGRESS", False), ("SUCCESS", "", True)], events
