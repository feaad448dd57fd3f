"""DataExport readiness and TTL, and the exporter's HTTP contract (auth, Range, streaming checksum)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from typing import Any

import aiohttp

from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.controllers.content import disk_content, disk_sha256
from service.embedded_cluster.server import EmbeddedCluster

from .test_controllers_kit import Kube, condition, demo_ready, disk_manifest, kube, reason

NS = "demo"
SPARE_SIZE = 1 << 30
EXPORT_SIZE = 256 << 20


async def export(k: Kube, name: str, kind: str, target: str, ttl: str = "2m") -> None:
    await k.create(R.DATAEXPORT, NS, {"apiVersion": R.DATAEXPORT_API_VERSION, "kind": "DataExport",
                                      "metadata": {"name": name},
                                      "spec": {"ttl": ttl, "targetRef": {"kind": kind, "name": target}}})


def ready_is(value: str) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        conds = [c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == "Ready"]
        return bool(conds) and conds[0]["status"] == value
    return check


async def ready_export(k: Kube, name: str, kind: str, target: str, ttl: str = "2m") -> dict[str, Any]:
    await export(k, name, kind, target, ttl)
    return await k.wait(R.DATAEXPORT, NS, name, ready_is("True"))


def block_url(obj: dict[str, Any]) -> str:
    return f"{obj['status']['url']}/api/v1/block"


async def test_disk_of_a_running_vm_is_not_exported(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await export(k, "busy", "VirtualDisk", "linux-vm-root")
        obj = await k.wait(R.DATAEXPORT, NS, "busy", ready_is("False"))
        assert reason(obj, "Ready") == "VirtualDiskInUse"
        assert "linux-vm" in condition(obj, "Ready")["message"]
        assert "url" not in obj["status"]
        # Once the VM stops, the export becomes Ready.
        await k.patch(R.VM, NS, "linux-vm", {"spec": {"runPolicy": "AlwaysOff"}})
        obj = await k.wait(R.DATAEXPORT, NS, "busy", ready_is("True"))
        assert obj["status"]["url"] == f"{embedded_cluster.url}/dataexport/{NS}/busy"


async def test_detached_disk_is_exported_whole_and_by_range(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await k.create(R.VD, NS, disk_manifest("export-me", "256Mi"))
        disk = await k.wait_phase(R.VD, NS, "export-me", "Ready")
        obj = await ready_export(k, "whole", "VirtualDisk", "export-me")
        assert obj["status"]["volumeMode"] == "Block"
        seed = disk["metadata"]["annotations"][R.ANN_CONTENT_SEED]
        headers = {"Authorization": f"Bearer {embedded_cluster.admin_token}"}
        async with aiohttp.ClientSession() as session:
            async with session.get(block_url(obj), headers=headers) as response:
                assert response.status == 200
                assert response.headers["Accept-Ranges"] == "bytes"
                assert int(response.headers["Content-Length"]) == EXPORT_SIZE
                digest = hashlib.sha256()
                async for piece in response.content.iter_chunked(1 << 20):
                    digest.update(piece)
            assert digest.hexdigest() == disk_sha256(seed, EXPORT_SIZE)
            start, end = (64 << 20) - 100, (64 << 20) + 99
            async with session.get(block_url(obj), headers={**headers, "Range": f"bytes={start}-{end}"}) as response:
                assert response.status == 206
                assert response.headers["Content-Range"] == f"bytes {start}-{end}/{EXPORT_SIZE}"
                body = await response.read()
            assert body == disk_content(seed, EXPORT_SIZE, start, 200)
            assert body[:100] == bytes(100) and body[100:] != bytes(100)
            async with session.get(block_url(obj), headers={**headers, "Range": "bytes=-10"}) as response:
                assert response.status == 206
                assert response.headers["Content-Range"] == f"bytes {EXPORT_SIZE - 10}-{EXPORT_SIZE - 1}/{EXPORT_SIZE}"
                assert await response.read() == disk_content(seed, EXPORT_SIZE, EXPORT_SIZE - 10, 10)
            tail = {**headers, "Range": f"bytes={EXPORT_SIZE - 5}-"}
            async with session.get(block_url(obj), headers=tail) as response:
                assert response.status == 206 and len(await response.read()) == 5
            async with session.get(block_url(obj), headers={**headers, "Range": f"bytes={EXPORT_SIZE}-"}) as response:
                assert response.status == 416
                assert response.headers["Content-Range"] == f"bytes */{EXPORT_SIZE}"
            async with session.head(block_url(obj), headers=headers) as response:
                assert response.status == 200 and int(response.headers["Content-Length"]) == EXPORT_SIZE
                assert await response.read() == b""


async def test_exporter_requires_a_valid_bearer_token(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        obj = await ready_export(k, "guarded", "VirtualDisk", "spare-disk")
        async with aiohttp.ClientSession() as session:
            async with session.get(block_url(obj)) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"] == "Bearer"
            async with session.get(block_url(obj), headers={"Authorization": "Bearer not-a-token"}) as response:
                assert response.status == 401
            missing = f"{embedded_cluster.url}/dataexport/{NS}/nothing/api/v1/block"
            headers = {"Authorization": f"Bearer {embedded_cluster.admin_token}"}
            async with session.get(missing, headers=headers) as response:
                assert response.status == 404


async def test_snapshot_export_serves_the_disk_as_it_was(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        await k.create(R.VDSNAPSHOT, NS, {"apiVersion": "virtualization.deckhouse.io/v1alpha2",
                                          "kind": "VirtualDiskSnapshot", "metadata": {"name": "spare-snap"},
                                          "spec": {"virtualDiskName": "spare-disk"}})
        await k.wait_phase(R.VDSNAPSHOT, NS, "spare-snap", "Ready")
        disk = await k.get(R.VD, NS, "spare-disk")
        assert disk is not None
        seed = disk["metadata"]["annotations"][R.ANN_CONTENT_SEED]
        # Growing the disk afterwards does not change what the snapshot holds.
        await k.patch(R.VD, NS, "spare-disk", {"spec": {"persistentVolumeClaim": {"size": "2Gi"}}})
        obj = await ready_export(k, "snap-export", "VirtualDiskSnapshot", "spare-snap")
        headers = {"Authorization": f"Bearer {embedded_cluster.admin_token}", "Range": "bytes=0-65535"}
        async with aiohttp.ClientSession() as session, session.get(block_url(obj), headers=headers) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == f"bytes 0-65535/{SPARE_SIZE}"
            assert await response.read() == disk_content(seed, SPARE_SIZE, 0, 65536)


async def test_export_expires_after_its_ttl(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        obj = await ready_export(k, "short", "VirtualDisk", "spare-disk", ttl="1s")
        expired = await k.wait(R.DATAEXPORT, NS, "short", ready_is("False"), limit=5.0)
        assert reason(expired, "Ready") == "Expired"
        headers = {"Authorization": f"Bearer {embedded_cluster.admin_token}"}
        async with aiohttp.ClientSession() as session, session.get(block_url(obj), headers=headers) as response:
            assert response.status == 410


async def test_each_download_restarts_the_ttl(embedded_cluster: EmbeddedCluster) -> None:
    # creationTimestamp has a one-second resolution, so the first TTL ends at most 3 s after `started`;
    # the download at +1 s moves the end to about +4 s, and the check at +3.05 s falls in between.
    async with kube(embedded_cluster) as k:
        await demo_ready(k)
        obj = await ready_export(k, "kept-alive", "VirtualDisk", "spare-disk", ttl="3s")
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {embedded_cluster.admin_token}", "Range": "bytes=0-0"}
        async with aiohttp.ClientSession() as session:
            await asyncio.sleep(1.0)
            async with session.get(block_url(obj), headers=headers) as response:
                assert response.status == 206
            await asyncio.sleep(max(0.0, 3.05 - (time.monotonic() - started)))
            current = await k.get(R.DATAEXPORT, NS, "kept-alive")
            assert current is not None and reason(current, "Ready") == "Ready"
            assert R.ANN_LAST_ACCESS in current["metadata"]["annotations"]
            expired = await k.wait(R.DATAEXPORT, NS, "kept-alive", ready_is("False"), limit=5.0)
            assert reason(expired, "Ready") == "Expired"


async def test_an_https_cluster_publishes_its_ca_in_the_export(embedded_cluster_tls: EmbeddedCluster) -> None:
    # The server hands its own CA to the controllers, so a client can verify the exporter.
    async with kube(embedded_cluster_tls) as k:
        await demo_ready(k)
        obj = await ready_export(k, "tls-export", "VirtualDisk", "spare-disk")
    assert embedded_cluster_tls.ca_pem is not None
    assert base64.b64decode(obj["status"]["ca"]) == embedded_cluster_tls.ca_pem
    assert obj["status"]["url"].startswith("https://")
