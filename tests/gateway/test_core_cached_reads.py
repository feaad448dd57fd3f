"""The create path reads the disk and its VM from the shared watches' caches: with the
cluster refusing every GET of disks and VMs, creates still pass their checks (and the
consistency warning still comes from the VM's state)."""

from __future__ import annotations

import aiohttp

from service.cluster.kinds import VIRTUAL_DISK, VIRTUAL_MACHINE
from tests.support.gateway import GatewayServer


async def test_creates_need_no_disk_or_vm_round_trip_once_the_caches_are_warm(gateway_server: GatewayServer) -> None:
    hub = gateway_server.app.hub
    await hub.wait_synced(VIRTUAL_DISK)
    await hub.wait_synced(VIRTUAL_MACHINE)
    faults = gateway_server.cluster.faults
    faults.fail(1.0, code=503, verb="get", resource="virtualdisks")
    faults.fail(1.0, code=503, verb="get", resource="virtualmachines")
    url = f"{gateway_server.rest_url}/v1/namespaces/demo/disk-snapshots"
    try:
        async with aiohttp.ClientSession(headers=gateway_server.auth()) as http:
            async with http.post(url, json={"name": "cached-1", "virtualDiskName": "linux-vm-root"}) as resp:
                assert resp.status == 202, await resp.text()
                assert (await resp.json())["warnings"] == []   # linux-vm runs with its guest agent
            async with http.post(url, json={"name": "cached-2", "virtualDiskName": "no-agent-vm-root"}) as resp:
                assert resp.status == 202, await resp.text()
                [warning] = (await resp.json())["warnings"]
                assert "no-agent-vm" in warning and "guest agent" in warning
    finally:
        faults.clear()
