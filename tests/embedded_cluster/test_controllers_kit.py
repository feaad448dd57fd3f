"""Helpers for the simulated-controller tests: a small Kubernetes REST client over aiohttp and
bounded waits. (Also collected by pytest: it checks the helpers themselves.)"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.server import EmbeddedCluster

Obj = dict[str, Any]
GROUP_VERSION = "virtualization.deckhouse.io/v1alpha2"
PLURALS = {R.VD: "virtualdisks", R.VDSNAPSHOT: "virtualdisksnapshots", R.VM: "virtualmachines",
           R.VMSNAPSHOT: "virtualmachinesnapshots", R.VMOP: "virtualmachineoperations",
           R.VMSOP: "virtualmachinesnapshotoperations", R.VI: "virtualimages", R.CVI: "clustervirtualimages",
           R.VMIP: "virtualmachineipaddresses", R.VMMAC: "virtualmachinemacaddresses"}
WAIT_TIMEOUT = 10.0


class KubeError(Exception):
    def __init__(self, status: int, body: Obj) -> None:
        super().__init__(f"{status}: {body.get('message')}")
        self.status = status
        self.body = body


class Kube:
    """Just enough of the Kubernetes REST API, over real HTTP, with the admin token."""

    def __init__(self, cluster: EmbeddedCluster, session: aiohttp.ClientSession) -> None:
        self.cluster = cluster
        self.session = session
        self.headers = {"Authorization": f"Bearer {cluster.admin_token}"}

    def path(self, resource: str, namespace: str | None, name: str = "") -> str:
        if resource == R.SECRET:
            base = f"/api/v1/namespaces/{namespace}/secrets"
        elif resource == R.DATAEXPORT:
            base = f"/apis/deckhouse.io/v1alpha1/namespaces/{namespace}/dataexports"
        elif namespace is None:
            base = f"/apis/{GROUP_VERSION}/{PLURALS[resource]}"
        else:
            base = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/{PLURALS[resource]}"
        return f"{self.cluster.url}{base}/{name}" if name else f"{self.cluster.url}{base}"

    async def _call(self, method: str, url: str, body: Obj | None = None, content_type: str = "") -> Obj:
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        async with self.session.request(method, url, json=body, headers=headers) as response:
            data: Obj = await response.json(content_type=None)
            if response.status >= 400:
                raise KubeError(response.status, data)
            return data

    async def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        try:
            return await self._call("GET", self.path(resource, namespace, name))
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    async def list(self, resource: str, namespace: str | None) -> list[Obj]:
        items: list[Obj] = (await self._call("GET", self.path(resource, namespace)))["items"]
        return items

    async def create(self, resource: str, namespace: str | None, obj: Obj) -> Obj:
        return await self._call("POST", self.path(resource, namespace), obj)

    async def patch(self, resource: str, namespace: str | None, name: str, patch: Obj) -> Obj:
        return await self._call("PATCH", self.path(resource, namespace, name), patch,
                                "application/merge-patch+json")

    async def delete(self, resource: str, namespace: str | None, name: str) -> None:
        try:
            await self._call("DELETE", self.path(resource, namespace, name))
        except KubeError as err:
            if err.status != 404:
                raise

    async def wait(self, resource: str, namespace: str | None, name: str, check: Callable[[Obj], bool],
                   limit: float = WAIT_TIMEOUT) -> Obj:
        """Poll (bounded) until ``check`` holds for the object; fail with its last state."""
        deadline = time.monotonic() + limit
        last: Obj | None = None
        while time.monotonic() < deadline:
            last = await self.get(resource, namespace, name)
            if last is not None and check(last):
                return last
            await asyncio.sleep(0.02)
        raise AssertionError(f"{resource} {namespace}/{name} did not reach the state in {limit}s: {last}")

    async def wait_phase(self, resource: str, namespace: str | None, name: str, *phases: str) -> Obj:
        return await self.wait(resource, namespace, name, lambda o: phase(o) in phases)

    async def wait_gone(self, resource: str, namespace: str | None, name: str) -> None:
        deadline = time.monotonic() + WAIT_TIMEOUT
        while time.monotonic() < deadline:
            if await self.get(resource, namespace, name) is None:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{resource} {namespace}/{name} still exists")


@asynccontextmanager
async def kube(cluster: EmbeddedCluster) -> AsyncIterator[Kube]:
    connector = None
    if cluster.ca_pem is not None:
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cadata=cluster.ca_pem.decode()))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Kube(cluster, session)


class Recorder:
    """Every (phase, reason of ``ctype``) an object passes through, read from the store's change feed."""

    def __init__(self, cluster: EmbeddedCluster, resource: str, name: str, ctype: str) -> None:
        self.steps: list[tuple[str, str]] = []
        self._subscription = cluster.store.subscribe(resource)
        self._name, self._ctype = name, ctype
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self._subscription:
            if event.object.get("metadata", {}).get("name") != self._name:
                continue
            conds = [c for c in event.object.get("status", {}).get("conditions") or [] if c.get("type") == self._ctype]
            step = (phase(event.object), str(conds[0].get("reason")) if conds else "")
            if not self.steps or self.steps[-1] != step:
                self.steps.append(step)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._subscription.close()

    def reasons(self) -> list[str]:
        return [r for _, r in self.steps]

    def phases(self) -> list[str]:
        seen: list[str] = []
        for p, _ in self.steps:
            if not seen or seen[-1] != p:
                seen.append(p)
        return seen


def phase(obj: Obj | None) -> str:
    return str((obj or {}).get("status", {}).get("phase", ""))


def condition(obj: Obj, ctype: str) -> Obj:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    raise AssertionError(f"no condition {ctype} in {obj.get('status')}")


def reason(obj: Obj, ctype: str) -> str:
    return str(condition(obj, ctype).get("reason"))


async def demo_ready(k: Kube, namespace: str = "demo") -> None:
    """Wait until the seeded demo VMs settled (Running / Stopped) with their disks Ready."""
    for vm, wanted in (("linux-vm", "Running"), ("stopped-vm", "Stopped"), ("no-agent-vm", "Running"),
                       ("image-vm", "Running")):
        await k.wait_phase(R.VM, namespace, vm, wanted)
    await k.wait_phase(R.VD, namespace, "spare-disk", "Ready")


def vm_manifest(name: str, disks: list[str], *, run_policy: str = "AlwaysOn", agent: bool = True,
                extra: Obj | None = None) -> Obj:
    return {"apiVersion": GROUP_VERSION, "kind": "VirtualMachine",
            "metadata": {"name": name, "annotations": {R.ANN_GUEST_AGENT: "true" if agent else "false"}},
            "spec": {"virtualMachineClassName": "generic", "runPolicy": run_policy, "cpu": {"cores": 1},
                     "memory": {"size": "1Gi"}, "blockDeviceRefs": [{"kind": "VirtualDisk", "name": d} for d in disks],
                     **(extra or {})}}


def disk_manifest(name: str, size: str = "1Gi", data_source: Obj | None = None) -> Obj:
    disk_spec: Obj = {"persistentVolumeClaim": {"size": size}}
    if data_source is not None:
        disk_spec["dataSource"] = data_source
    return {"apiVersion": GROUP_VERSION, "kind": "VirtualDisk", "metadata": {"name": name}, "spec": disk_spec}


def snapshot_ref(name: str) -> Obj:
    return {"type": "ObjectRef", "objectRef": {"kind": "VirtualDiskSnapshot", "name": name}}


async def test_kit_reaches_the_cluster_over_http(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        assert await k.get(R.VD, "demo", "no-such-disk") is None
        disk = await k.wait_phase(R.VD, "demo", "linux-vm-root", "Ready")
        assert disk["metadata"]["name"] == "linux-vm-root"
