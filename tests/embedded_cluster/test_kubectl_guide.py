"""The real kubectl against the embedded cluster, with the guide's manifests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
import yaml

from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig
from tests.support.cluster import run_kubectl

GV = "virtualization.deckhouse.io/v1alpha2"

DISK_SNAPSHOT = f"""
apiVersion: {GV}
kind: VirtualDiskSnapshot
metadata:
  name: linux-vm-root-snapshot
spec:
  requiredConsistency: true
  virtualDiskName: linux-vm-root
"""
VM_SNAPSHOT = f"""
apiVersion: {GV}
kind: VirtualMachineSnapshot
metadata:
  name: linux-vm-snapshot
spec:
  virtualMachineName: linux-vm
  requiredConsistency: true
  keepIPAddress: Never
"""
DISK_RESTORE = f"""
apiVersion: {GV}
kind: VirtualDisk
metadata:
  name: linux-vm-root-restored
spec:
  persistentVolumeClaim:
    size: 10Gi
    storageClassName: i-sds-replicated-thin-r2
  dataSource:
    type: ObjectRef
    objectRef:
      kind: VirtualDiskSnapshot
      name: linux-vm-root-snapshot
"""
VM_RESTORE = f"""
apiVersion: {GV}
kind: VirtualMachineOperation
metadata:
  name: linux-vm-restore
spec:
  type: Restore
  virtualMachineName: linux-vm
  restore:
    mode: DryRun
    virtualMachineSnapshotName: linux-vm-snapshot
"""
# The CRD's spelling: nameReplacement (singular), to: <string>.
VM_CLONE = f"""
apiVersion: {GV}
kind: VirtualMachineOperation
metadata:
  name: stopped-vm-clone
spec:
  type: Clone
  virtualMachineName: stopped-vm
  clone:
    mode: DryRun
    nameReplacement:
      - from:
          kind: VirtualMachine
          name: stopped-vm
        to: stopped-vm-copy
    customization:
      nameSuffix: -copy
"""
SNAPSHOT_CLONE = f"""
apiVersion: {GV}
kind: VirtualMachineSnapshotOperation
metadata:
  name: linux-vm-from-snapshot
spec:
  type: CreateVirtualMachine
  virtualMachineSnapshotName: linux-vm-snapshot
  createVirtualMachine:
    mode: DryRun
    customization:
      namePrefix: copy-
"""
# The guide's spelling: pruned by the schema, so the CEL rule "at least one of ..." rejects it.
GUIDE_CLONE_SPELLING = f"""
apiVersion: {GV}
kind: VirtualMachineOperation
metadata:
  name: guide-spelling-clone
spec:
  type: Clone
  virtualMachineName: stopped-vm
  clone:
    mode: DryRun
    nameReplacements:
      - from:
          kind: VirtualMachine
          name: stopped-vm
        to:
          name: stopped-vm-copy
"""


@pytest_asyncio.fixture
async def slow_cluster() -> AsyncIterator[EmbeddedCluster]:
    """Controller steps slow enough that a watcher sees the phases go by."""
    async with EmbeddedCluster(EmbeddedClusterConfig(tls=True, step_delay=0.3)) as cluster:
        yield cluster


async def kubectl_ok(cluster: EmbeddedCluster, *args: str, stdin: str | None = None) -> str:
    result = await run_kubectl(cluster, *args, input=stdin)
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
    return result.stdout


async def get_json(cluster: EmbeddedCluster, resource: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(await kubectl_ok(cluster, "-n", "demo", "get", resource, name, "-o", "json"))
    return found


async def wait_for(cluster: EmbeddedCluster, resource: str, name: str, path: tuple[str, ...],
                   limit: float = 15.0) -> Any:
    async with asyncio.timeout(limit):
        while True:
            node: Any = await get_json(cluster, resource, name)
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            if node:
                return node
            await asyncio.sleep(0.2)


async def test_disk_snapshot_apply_get_delete(embedded_cluster_tls: EmbeddedCluster) -> None:
    cluster = embedded_cluster_tls
    out = await kubectl_ok(cluster, "-n", "demo", "apply", "-f", "-", stdin=DISK_SNAPSHOT)
    assert "virtualdisksnapshot.virtualization.deckhouse.io/linux-vm-root-snapshot created" in out
    out = await kubectl_ok(cluster, "-n", "demo", "apply", "-f", "-", stdin=DISK_SNAPSHOT)
    assert "unchanged" in out
    table = await kubectl_ok(cluster, "-n", "demo", "get", "vdsnapshot")
    header, *rows = table.splitlines()
    assert header.split() == ["NAME", "PHASE", "CONSISTENT", "AGE"]
    assert rows[0].split()[0] == "linux-vm-root-snapshot"
    assert await wait_for(cluster, "vdsnapshot", "linux-vm-root-snapshot", ("status", "phase")) in (
        "Pending", "InProgress", "Ready", "Failed")
    out = await kubectl_ok(cluster, "-n", "demo", "delete", "vdsnapshot", "linux-vm-root-snapshot", "--wait=true",
                           "--timeout=20s")
    assert 'virtualdisksnapshot.virtualization.deckhouse.io "linux-vm-root-snapshot" deleted' in out
    gone = await run_kubectl(cluster, "-n", "demo", "get", "vdsnapshot", "linux-vm-root-snapshot")
    assert gone.returncode != 0 and "NotFound" in gone.stderr


async def test_guide_manifests(embedded_cluster_tls: EmbeddedCluster) -> None:
    cluster = embedded_cluster_tls
    for manifest in (DISK_SNAPSHOT, VM_SNAPSHOT, DISK_RESTORE):
        await kubectl_ok(cluster, "-n", "demo", "apply", "-f", "-", stdin=manifest)
    phase = await wait_for(cluster, "vmsnapshot", "linux-vm-snapshot", ("status", "phase"))
    async with asyncio.timeout(15):
        while phase != "Ready":
            await asyncio.sleep(0.2)
            phase = (await get_json(cluster, "vmsnapshot", "linux-vm-snapshot"))["status"]["phase"]
    for manifest in (VM_RESTORE, VM_CLONE, SNAPSHOT_CLONE):
        await kubectl_ok(cluster, "-n", "demo", "apply", "-f", "-", stdin=manifest)
    resources = await wait_for(cluster, "vmop", "linux-vm-restore", ("status", "resources"))
    assert all({"apiVersion", "kind", "name", "status"} <= set(entry) for entry in resources)
    clone = await get_json(cluster, "vmop", "stopped-vm-clone")
    assert clone["spec"]["clone"]["nameReplacement"] == [
        {"from": {"kind": "VirtualMachine", "name": "stopped-vm"}, "to": "stopped-vm-copy"}]
    vmsop = await get_json(cluster, "vmsop", "linux-vm-from-snapshot")
    assert vmsop["spec"]["createVirtualMachine"]["customization"] == {"namePrefix": "copy-"}
    listed = await kubectl_ok(cluster, "-n", "demo", "get", "vmop")
    assert listed.splitlines()[0].split() == ["NAME", "PHASE", "PROGRESS", "TYPE", "VIRTUALMACHINE", "AGE"]
    everything = "---\n".join((VM_RESTORE, VM_CLONE, SNAPSHOT_CLONE, DISK_RESTORE))
    out = await kubectl_ok(cluster, "-n", "demo", "delete", "-f", "-", "--wait=false", stdin=everything)
    assert out.count("deleted") == 4


async def test_guide_clone_spelling_is_rejected(embedded_cluster_tls: EmbeddedCluster) -> None:
    result = await run_kubectl(embedded_cluster_tls, "-n", "demo", "apply", "-f", "-", input=GUIDE_CLONE_SPELLING)
    assert result.returncode != 0
    assert "is invalid" in result.stderr and "nameReplacement must be set" in result.stderr
    missing = await run_kubectl(embedded_cluster_tls, "-n", "demo", "get", "vmop", "guide-spelling-clone")
    assert missing.returncode != 0


async def test_get_watch_sees_phase_change(slow_cluster: EmbeddedCluster) -> None:
    watcher = asyncio.create_task(run_kubectl(slow_cluster, "-n", "demo", "get", "vdsnapshot", "-w",
                                              "--request-timeout=4s"))
    await asyncio.sleep(1.0)
    await kubectl_ok(slow_cluster, "-n", "demo", "apply", "-f", "-", stdin=DISK_SNAPSHOT)
    result = await watcher
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("linux-vm-root-snapshot")]
    phases = [row[1] for row in rows if len(row) >= 3]
    assert len(set(phases)) >= 2, result.stdout
    assert phases[-1] in ("Ready", "Failed"), result.stdout


async def test_kubectl_crud_on_core_types(embedded_cluster_tls: EmbeddedCluster) -> None:
    cluster = embedded_cluster_tls
    await kubectl_ok(cluster, "create", "namespace", "k")
    config_map = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                                 "data": {"a": "1"}})
    await kubectl_ok(cluster, "-n", "k", "apply", "-f", "-", stdin=config_map)
    await kubectl_ok(cluster, "-n", "k", "apply", "-f", "-", stdin=config_map.replace("'1'", "'2'"))
    data = json.loads(await kubectl_ok(cluster, "-n", "k", "get", "cm", "c", "-o", "json"))["data"]
    assert data == {"a": "2"}
    await kubectl_ok(cluster, "-n", "k", "label", "cm", "c", "tier=x")
    assert "c" in await kubectl_ok(cluster, "-n", "k", "get", "cm", "-l", "tier=x", "-o", "name")
    resources = await kubectl_ok(cluster, "api-resources", "--api-group=virtualization.deckhouse.io")
    assert "virtualdisksnapshots" in resources and "vdsnapshot" in resources
    denied = await run_kubectl(cluster, "get", "ns", token="not-a-token")
    assert denied.returncode != 0 and "provide credentials" in denied.stderr
