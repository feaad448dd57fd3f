"""dvpctl (a real process) against a real gateway: restores, clones, the export download."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.ctl.support import table
from tests.ctl.test_snapshots_e2e import cli_for
from tests.support.gateway import GatewayServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_restores_and_clones(gateway_server: GatewayServer, tmp_path: Path) -> None:
    cli = cli_for(gateway_server, tmp_path)
    for args in (("create", "vds", "root-snap", "--disk", "linux-vm-root", "--wait"),
                 ("create", "vms", "vm-snap", "--vm", "linux-vm", "--wait")):
        done = await cli(*args)
        assert done.code == 0, done

    # A disk from a disk snapshot, followed to its end.
    disk = await cli("restore", "disk", "restored-root", "--snapshot", "root-snap", "--wait", "-o", "json")
    assert disk.code == 0, disk
    assert (disk.json()["type"], disk.json()["state"]) == ("RESTORE_DISK", "SUCCEEDED")
    assert disk.json()["resource"]["name"] == "restored-root"

    # A VM restore DryRun: what it would do, per resource, as a table (the gateway's
    # conflicts come at once; the platform's verdict per resource once it is done).
    dry = await cli("restore", "vm", "linux-vm", "--snapshot", "vm-snap", "--mode", "DryRun", "--wait")
    assert dry.code == 0, dry
    assert "\n\n" in dry.out, dry
    operation_part, results_part = dry.out.split("\n\n")
    assert table(operation_part)[0]["TYPE"] == "RESTORE_VM"
    results = table(results_part)
    assert results_part.splitlines()[0].split() == ["KIND", "NAME", "STATUS", "REASON", "MESSAGE"]
    assert ("VirtualMachine", "linux-vm") in {(r["KIND"], r["NAME"]) for r in results}, dry
    assert any(line.startswith("warning: DryRun") for line in dry.err_lines), dry

    # A clone DryRun answers the name map: source -> new name.
    plan = await cli("clone", "vm", "stopped-vm", "--dry-run", "--name-prefix", "copy-",
                     "--rename", "VirtualDisk/stopped-vm-root=data")
    assert plan.code == 0, plan
    name_map = {(r["KIND"], r["SOURCE"]): r["NAME"] for r in table(plan.out.split("\n\n")[1])}
    assert name_map[("VirtualMachine", "stopped-vm")] == "copy-stopped-vm", plan
    assert name_map[("VirtualDisk", "stopped-vm-root")] == "copy-data", plan

    # A running VM cannot be cloned: a precondition violation, one line each.
    refused = await cli("clone", "vm", "linux-vm", "--name-suffix=-2")
    assert refused.code == 1, refused
    assert refused.err_lines[0].startswith("error: ") and "412 FAILED_PRECONDITION VM_NOT_STOPPED" in refused.err
    assert refused.err_lines[1].startswith("  VM_NOT_STOPPED virtualmachines/linux-vm: "), refused

    # A new VM from the VM snapshot.
    made = await cli("clone", "vm-snapshot", "vm-snap", "--name-suffix=-copy", "--wait")
    assert made.code == 0, made
    made_map = {(r["KIND"], r["SOURCE"]): r["NAME"] for r in table(made.out.split("\n\n")[1])}
    assert made_map[("VirtualMachine", "linux-vm")] == "linux-vm-copy", made


async def test_export_downloads_a_verified_sparse_file(gateway_server: GatewayServer, tmp_path: Path) -> None:
    cli = cli_for(gateway_server, tmp_path)
    image = tmp_path / "spare.img"
    done = await cli("export", "disk", "spare-disk", "-o", str(image))
    assert done.code == 0, done
    assert image.stat().st_size == 1 << 30
    digest = hashlib.sha256()
    with image.open("rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    # The gateway's digest (recorded on the export's operation) is the file's.
    ops = await cli("get", "operations", "--type", "EXPORT_DISK", "-o", "json")
    [op] = ops.json()["items"]
    assert op["transfer"]["sha256"] == digest.hexdigest()
    assert f"sha256 {digest.hexdigest()} verified" in done.err, done
    assert image.stat().st_blocks * 512 < 64 << 20, "zero regions stay holes"

    # A running VM's disk is refused, as by `dvp-gateway download`: one line, exit 1.
    refused = await cli("export", "disk", "linux-vm-root", "-o", str(tmp_path / "root.img"))
    assert refused.code == 1 and len(refused.err_lines) == 1 and "linux-vm" in refused.err, refused
    assert not (tmp_path / "root.img").exists()
