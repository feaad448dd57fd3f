"""The guide's clone scenarios, end to end through BOTH doors (``Door``: gRPC over a real
channel, REST over a real client with every response checked against openapi.yaml), on the
whole gateway over the embedded cluster and SQLite. Each custom resource the gateway wrote
validates against the full upstream CRD, and its clone options are read back after the
server's pruning."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.embedded_cluster.controllers import resources as R
from tests.embedded_cluster.test_controllers_kit import Kube, demo_ready, kube
from tests.support.doors import Door, assert_valid_upstream, open_door, results_by_name
from tests.support.gateway import GatewayServer

NS = "demo"
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


def warned(op: Obj, text: str) -> bool:
    return any(text in w for w in op["warnings"])


async def clone_done(door: Door, k: Kube, accepted: Obj) -> tuple[Obj, Obj]:
    """Follow a clone to SUCCEEDED; return it with its custom resource (read back, pruned)."""
    done = await door.wait_done(accepted["id"])
    assert done["state"] == "SUCCEEDED", done
    resource = done["resource"]
    plural = R.VMOP if resource["kind"] == "VirtualMachineOperation" else R.VMSOP
    written = await k.get(plural, NS, resource["name"])
    assert written is not None
    crd = "virtualmachineoperations.yaml" if plural == R.VMOP else "virtualmachinesnapshotoperations.yaml"
    assert_valid_upstream(written, crd)
    return done, written


async def assert_cloned(k: Kube, vm: str, disk: str) -> None:
    clone = await k.get(R.VM, NS, vm)
    assert clone is not None, f"VirtualMachine {vm!r} was not created"
    assert {"kind": "VirtualDisk", "name": disk} in clone["spec"]["blockDeviceRefs"]
    assert await k.get(R.VD, NS, disk) is not None, f"VirtualDisk {disk!r} was not created"


# ----------------------------------------------------------------- naming: prefix, suffix, replacements


async def test_clone_with_a_prefix_only(door: Door, k: Kube) -> None:
    prefix = f"{door.name}-"
    accepted = await door.clone_vm("stopped-vm", mode="Strict", prefix=prefix)
    assert accepted["type"] == "CLONE_VM" and accepted["target"]["name"] == "stopped-vm"
    planned = results_by_name(accepted)
    assert planned[("VirtualMachine", f"{prefix}stopped-vm")]["sourceName"] == "stopped-vm"
    assert planned[("VirtualDisk", f"{prefix}stopped-vm-root")]["sourceName"] == "stopped-vm-root"
    assert warned(accepted, "machine-id") and warned(accepted, "new IP address")
    assert not warned(accepted, "inherits runPolicy")  # stopped-vm is AlwaysOff already
    done, written = await clone_done(door, k, accepted)
    assert written["spec"]["clone"] == {"mode": "Strict", "customization": {"namePrefix": prefix}}
    await assert_cloned(k, f"{prefix}stopped-vm", f"{prefix}stopped-vm-root")
    created = results_by_name(done)
    assert created[("VirtualMachine", f"{prefix}stopped-vm")]["status"] == "Completed"
    assert created[("VirtualDisk", f"{prefix}stopped-vm-root")]["sourceName"] == "stopped-vm-root"
    assert [r for r in done["results"] if r["status"] == "Planned"] == [], "every planned object was created"
    # The platform's temporary snapshot is gone and is not reported as a leftover.
    assert not any(r["kind"] == "VirtualMachineSnapshot" for r in done["results"])
    assert await k.list(R.VMSNAPSHOT, NS) == []


async def test_clone_with_a_suffix_only(door: Door, k: Kube) -> None:
    suffix = f"-{door.name}"
    accepted = await door.clone_vm("stopped-vm", mode="BestEffort", suffix=suffix)
    _, written = await clone_done(door, k, accepted)
    assert written["spec"]["clone"]["customization"] == {"nameSuffix": suffix}
    await assert_cloned(k, f"stopped-vm{suffix}", f"stopped-vm-root{suffix}")


async def test_clone_with_replacements_only(door: Door, k: Kube) -> None:
    vm, disk = f"{door.name}-web", f"{door.name}-web-root"
    accepted = await door.clone_vm("stopped-vm", mode="Strict",
                                   replacements=[("stopped-vm", vm, "VirtualMachine"), ("stopped-vm-root", disk)])
    _, written = await clone_done(door, k, accepted)
    # The CRD's spelling survives the server's pruning: nameReplacement, to: <string>.
    assert written["spec"]["clone"]["nameReplacement"] == [
        {"from": {"kind": "VirtualMachine", "name": "stopped-vm"}, "to": vm},
        {"from": {"name": "stopped-vm-root"}, "to": disk}]
    assert "customization" not in written["spec"]["clone"]
    await assert_cloned(k, vm, disk)


async def test_clone_with_a_replacement_and_customization(door: Door, k: Kube) -> None:
    accepted = await door.clone_vm("stopped-vm", mode="Strict", replacements=[("stopped-vm", "db")],
                                   prefix=f"{door.name}-", suffix="-2")
    _, written = await clone_done(door, k, accepted)
    assert written["spec"]["clone"]["customization"] == {"namePrefix": f"{door.name}-", "nameSuffix": "-2"}
    await assert_cloned(k, f"{door.name}-db-2", f"{door.name}-stopped-vm-root-2")


# ----------------------------------------------------------------- refused up front, nothing written


async def test_collisions_are_refused_up_front_listing_every_taken_name(door: Door, k: Kube) -> None:
    onto_taken = [("stopped-vm", "linux-vm"), ("stopped-vm-root", "spare-disk")]
    err = await door.refused(door.clone_vm("stopped-vm", mode="Strict", replacements=onto_taken))
    assert (err.code, err.reason) == ("ALREADY_EXISTS", "NAMES_TAKEN"), err
    assert err.http_status in (None, 409)
    assert sorted(err.subjects) == ["VirtualDisk/spare-disk", "VirtualMachine/linux-vm"]
    assert await k.list(R.VMOP, NS) == [], "nothing is written"


async def test_a_second_identical_clone_is_refused_while_the_first_is_in_flight(door: Door, k: Kube) -> None:
    prefix = f"{door.name}-twin-"
    first = await door.clone_vm("stopped-vm", mode="Strict", prefix=prefix)
    err = await door.refused(door.clone_vm("stopped-vm", mode="Strict", prefix=prefix))
    assert (err.code, err.reason) == ("ALREADY_EXISTS", "NAMES_TAKEN"), err
    assert f"VirtualMachine/{prefix}stopped-vm" in err.subjects
    assert len(await k.list(R.VMOP, NS)) == 1
    await clone_done(door, k, first)
    # ... and once it is done, the names are taken by real objects.
    again = await door.refused(door.clone_vm("stopped-vm", mode="Strict", prefix=prefix))
    assert again.reason == "NAMES_TAKEN" and f"VirtualDisk/{prefix}stopped-vm-root" in again.subjects


async def test_names_too_long_after_the_prefix_are_field_violations(door: Door, k: Kube) -> None:
    err = await door.refused(door.clone_vm("stopped-vm", mode="Strict", prefix="p" * 59))
    assert err.code == "INVALID_ARGUMENT", err
    assert list(err.fields) == ["customization"], err.fields
    assert "would be named" in err.fields["customization"]
    too_long = await door.refused(door.clone_vm("stopped-vm", mode="Strict", prefix="p" * 60))
    prefix_field = "customization.name_prefix" if door.name == "grpc" else "customization.namePrefix"
    assert prefix_field in too_long.fields, too_long.fields
    nothing = await door.refused(door.clone_vm("stopped-vm", mode="Strict"))
    assert list(nothing.fields) == ["customization"], nothing.fields
    assert await k.list(R.VMOP, NS) == []


async def test_a_running_vm_is_refused(door: Door, k: Kube) -> None:
    err = await door.refused(door.clone_vm("linux-vm", mode="Strict", prefix=f"{door.name}-"))
    assert (err.code, err.reason) == ("FAILED_PRECONDITION", "VM_NOT_STOPPED"), err
    assert err.subjects == ["virtualmachines/linux-vm"] and "stopped" in err.message
    assert await k.list(R.VMOP, NS) == []


# ----------------------------------------------------------------- DryRun, BestEffort, from a snapshot


async def test_dry_run_reports_the_name_map_and_conflicts_creating_nothing(door: Door, k: Kube) -> None:
    # An empty prefix is set, and invalid: a field violation even in a dry run.
    err = await door.refused(door.clone_vm("stopped-vm", mode="DryRun", prefix=""))
    assert err.code == "INVALID_ARGUMENT"
    accepted = await door.clone_vm("stopped-vm", mode="DryRun", replacements=[("stopped-vm-root", "spare-disk")],
                                   suffix=f"-{door.name}")
    results = results_by_name(accepted)
    vm = results[("VirtualMachine", f"stopped-vm-{door.name}")]
    assert (vm["sourceName"], vm["status"], vm["reason"]) == ("stopped-vm", "Planned", "Renamed")
    disk = results[("VirtualDisk", f"spare-disk-{door.name}")]
    assert disk["sourceName"] == "stopped-vm-root"
    assert warned(accepted, "DryRun")
    # A replacement onto a taken name: the conflict is a typed result, not a refusal.
    taken = await door.clone_vm("stopped-vm", mode="DryRun", replacements=[("stopped-vm-root", "spare-disk"),
                                                                           ("stopped-vm", "no-agent-vm")])
    conflicts = {(r["kind"], r["name"]): r for r in taken["results"] if r["status"] == "Conflict"}
    assert set(conflicts) == {("VirtualDisk", "spare-disk"), ("VirtualMachine", "no-agent-vm")}
    assert {r["reason"] for r in conflicts.values()} == {"NameTaken"}
    for op in (accepted, taken):
        await door.wait_done(op["id"])
    assert await k.get(R.VM, NS, f"stopped-vm-{door.name}") is None, "a dry run creates nothing"
    assert await k.get(R.VD, NS, f"spare-disk-{door.name}") is None


async def test_clone_from_a_snapshot_and_best_effort_dropping_a_missing_image(door: Door, k: Kube) -> None:
    snapshot = f"{door.name}-image-snap"
    taken = await door.create_vm_snapshot(snapshot, "image-vm")
    assert (await door.wait_done(taken["id"]))["state"] == "SUCCEEDED"
    await k.delete(R.VI, NS, "tools-image")
    await k.wait_gone(R.VI, NS, "tools-image")

    strict = await door.refused(door.create_vm_from_snapshot(snapshot, mode="Strict", prefix=f"{door.name}-s-"))
    assert (strict.code, strict.reason) == ("FAILED_PRECONDITION", "IMAGE_NOT_FOUND"), strict
    assert strict.subjects == ["VirtualImage/tools-image"]

    prefix = f"{door.name}-b-"
    accepted = await door.create_vm_from_snapshot(snapshot, mode="BestEffort", prefix=prefix)
    assert accepted["type"] == "CREATE_VM_FROM_SNAPSHOT"
    dropped = results_by_name(accepted)[("VirtualImage", "tools-image")]
    assert (dropped["status"], dropped["reason"]) == ("Dropped", "ImageNotFound")
    assert warned(accepted, "BestEffort drops it")
    assert warned(accepted, "inherits runPolicy AlwaysOn")
    done, written = await clone_done(door, k, accepted)
    assert written["spec"] == {"type": "CreateVirtualMachine", "virtualMachineSnapshotName": snapshot,
                               "createVirtualMachine": {"mode": "BestEffort",
                                                        "customization": {"namePrefix": prefix}}}
    clone = await k.get(R.VM, NS, f"{prefix}image-vm")
    assert clone is not None
    assert clone["spec"]["blockDeviceRefs"] == [{"kind": "VirtualDisk", "name": f"{prefix}image-vm-root"}]
    assert results_by_name(done)[("VirtualImage", "tools-image")]["status"] == "Dropped"
