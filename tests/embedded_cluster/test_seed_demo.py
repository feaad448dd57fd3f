"""The demo seed: the guide's objects exist and become Ready; seeding twice is harmless; step delays apply."""

from __future__ import annotations

import time

from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.controllers.seed import seed_demo
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig
from tests.support.cluster import run_kubectl

from .test_controllers_kit import demo_ready, kube, phase, reason

NS = "demo"


async def test_seed_objects_become_ready(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        for disk in ("linux-vm-root", "stopped-vm-root", "no-agent-vm-root", "image-vm-root", "spare-disk"):
            assert phase(await k.wait_phase(R.VD, NS, disk, "Ready")) == "Ready"
        assert (await k.get(R.VD, NS, "linux-vm-root") or {})["status"]["capacity"] == "10Gi"
        await k.wait_phase(R.VI, NS, "tools-image", "Ready")
        await k.wait_phase(R.CVI, None, "ubuntu-22-04", "Ready")
        linux = await k.get(R.VM, NS, "linux-vm")
        assert linux is not None
        assert reason(linux, "AgentReady") == "AgentReady"
        assert linux["spec"]["runPolicy"] == "AlwaysOn"
        assert linux["status"]["ipAddress"].startswith("10.66.")
        assert linux["status"]["blockDeviceRefs"][0] | {"size": "10Gi"} == {
            "kind": "VirtualDisk", "name": "linux-vm-root", "size": "10Gi", "attached": True}
        assert await k.get(R.SECRET, NS, "cloud-init") is not None
        no_agent = await k.get(R.VM, NS, "no-agent-vm")
        assert no_agent is not None and reason(no_agent, "AgentReady") == "AgentNotReady"
        image_vm = await k.get(R.VM, NS, "image-vm")
        assert image_vm is not None
        assert {"kind": "VirtualImage", "name": "tools-image"} in image_vm["spec"]["blockDeviceRefs"]
        spare = await k.get(R.VD, NS, "spare-disk")
        assert spare is not None and not spare["status"].get("attachedToVirtualMachines")


async def test_seeding_again_changes_nothing(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        before = await k.get(R.VM, NS, "linux-vm")
        await seed_demo(embedded_cluster.store)
        after = await k.get(R.VM, NS, "linux-vm")
        assert before is not None and after is not None
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["metadata"]["generation"] == before["metadata"]["generation"]


async def test_step_delay_paces_the_simulation() -> None:
    delay = 0.05
    started = time.monotonic()
    cluster = EmbeddedCluster(EmbeddedClusterConfig(step_delay=delay, seed_demo=True))
    async with cluster, kube(cluster) as k:
        await k.wait_phase(R.VM, NS, "linux-vm", "Running")
    # Paced steps on the way: image Pending->Provisioning->Ready, disk Provisioning->Ready, VM Starting->Running.
    assert time.monotonic() - started >= 4 * delay


GUIDE_DISK_SNAPSHOT = """
apiVersion: virtualization.deckhouse.io/v1alpha2
kind: VirtualDiskSnapshot
metadata:
  name: linux-vm-root-snapshot
spec:
  requiredConsistency: true
  virtualDiskName: linux-vm-root
"""

GUIDE_VM_SNAPSHOT = """
apiVersion: virtualization.deckhouse.io/v1alpha2
kind: VirtualMachineSnapshot
metadata:
  name: linux-vm-snapshot
spec:
  virtualMachineName: linux-vm
  requiredConsistency: true
  keepIPAddress: Never
"""


async def test_the_guides_manifests_work_verbatim_with_kubectl(embedded_cluster_tls: EmbeddedCluster) -> None:
    cluster = embedded_cluster_tls
    for manifest in (GUIDE_DISK_SNAPSHOT, GUIDE_VM_SNAPSHOT):
        applied = await run_kubectl(cluster, "-n", NS, "apply", "-f", "-", input=manifest)
        assert applied.returncode == 0, applied.stderr
    async with kube(cluster) as k:
        await k.wait_phase(R.VDSNAPSHOT, NS, "linux-vm-root-snapshot", "Ready")
        await k.wait_phase(R.VMSNAPSHOT, NS, "linux-vm-snapshot", "Ready")
    listed = await run_kubectl(cluster, "-n", NS, "get", "vdsnapshot", "linux-vm-root-snapshot")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert "PHASE" in header and "CONSISTENT" in header
    assert row.split()[:3] == ["linux-vm-root-snapshot", "Ready", "true"]
    resources = await run_kubectl(cluster, "-n", NS, "get", "vmsnapshot", "linux-vm-snapshot",
                                  "-o", "jsonpath={.status.resources[*].name}")
    assert resources.stdout.split() == ["linux-vm", "cloud-init", "linux-vm-root"]


async def test_the_kubeconfig_names_the_demo_namespace(embedded_cluster_tls: EmbeddedCluster) -> None:
    """The guide's commands carry no -n: `d8 k get vd` must find the demo's objects as written."""
    (context,) = embedded_cluster_tls.kubeconfig()["contexts"]
    assert context["context"]["namespace"] == NS
    listed = await run_kubectl(embedded_cluster_tls, "get", "vd", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    assert "virtualdisk.virtualization.deckhouse.io/linux-vm-root" in listed.stdout.split()


async def test_without_the_demo_the_kubeconfig_names_no_namespace() -> None:
    async with EmbeddedCluster(EmbeddedClusterConfig(step_delay=0.0, seed_demo=False)) as cluster:
        (context,) = cluster.kubeconfig()["contexts"]
        assert "namespace" not in context["context"]
