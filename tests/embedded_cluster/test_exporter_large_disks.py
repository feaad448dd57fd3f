"""Multi-GiB disks created through the API: Ready with their capacity and a content seed,
snapshots keep the size, and exports serve them (ranges here: whole downloads take seconds)."""

from __future__ import annotations

import aiohttp
import pytest

from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.controllers.content import STRIPE, disk_content
from service.embedded_cluster.server import EmbeddedCluster

from .test_controllers_kit import disk_manifest, kube
from .test_exporter_dataexport import block_url, ready_export

NS = "demo"


@pytest.mark.parametrize(("quantity", "size"), [("8Gi", 8 << 30), ("20Gi", 20 << 30)])
async def test_a_large_disk_and_its_snapshot_export_their_size(embedded_cluster: EmbeddedCluster, quantity: str,
                                                               size: int) -> None:
    async with kube(embedded_cluster) as k:
        await k.create(R.VD, NS, disk_manifest("big", quantity))
        disk = await k.wait_phase(R.VD, NS, "big", "Ready")
        assert disk["status"]["capacity"] == quantity
        seed = disk["metadata"]["annotations"][R.ANN_CONTENT_SEED]
        assert seed == f"Blank:{disk['metadata']['uid']}"
        await k.create(R.VDSNAPSHOT, NS, {"apiVersion": "virtualization.deckhouse.io/v1alpha2",
                                          "kind": "VirtualDiskSnapshot", "metadata": {"name": "big-snap"},
                                          "spec": {"virtualDiskName": "big"}})
        snapshot = await k.wait_phase(R.VDSNAPSHOT, NS, "big-snap", "Ready")
        assert snapshot["metadata"]["annotations"][R.ANN_SOURCE_SIZE] == str(size)
        assert snapshot["metadata"]["annotations"][R.ANN_CONTENT_SEED] == seed
        headers = {"Authorization": f"Bearer {embedded_cluster.admin_token}"}
        last = size - STRIPE       # the last stripe's written block, and the zeros before it
        async with aiohttp.ClientSession(headers=headers) as session:
            for kind, target in (("VirtualDisk", "big"), ("VirtualDiskSnapshot", "big-snap")):
                obj = await ready_export(k, f"{target}-export", kind, target)
                async with session.head(block_url(obj)) as response:
                    assert response.status == 200 and response.content_length == size
                ranged = {"Range": f"bytes={last - 10}-{last + 99}"}
                async with session.get(block_url(obj), headers=ranged) as response:
                    assert response.headers["Content-Range"] == f"bytes {last - 10}-{last + 99}/{size}"
                    body = await response.read()
                assert body == disk_content(seed, size, last - 10, 110)
                assert body[:10] == bytes(10) and body[10:] != bytes(100)
