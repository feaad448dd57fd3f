"""The DataExport faults tests inject (FaultInjector.expire_next_exports / drop_next_export /
slow_export), the exporter's HEAD and Range answers, and its configurable chunk."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import aiohttp
import pytest

from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.controllers.content import BLOCK, disk_content, disk_sha256
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig

from .test_controllers_kit import Kube, KubeError, condition, disk_manifest, kube, reason
from .test_exporter_dataexport import block_url, export, ready_export, ready_is

NS = "demo"
SIZE = 256 << 20


async def detached_disk(k: Kube, name: str = "faulty") -> str:
    """A Ready detached disk of SIZE bytes; returns its content seed."""
    await k.create(R.VD, NS, disk_manifest(name, "256Mi"))
    disk = await k.wait_phase(R.VD, NS, name, "Ready")
    return str(disk["metadata"]["annotations"][R.ANN_CONTENT_SEED])


def auth(cluster: EmbeddedCluster, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {cluster.admin_token}", **headers}


def no_server_errors(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_next_exports_expire_at_once(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await detached_disk(k)
        before = await ready_export(k, "before", "VirtualDisk", "faulty")
        embedded_cluster.faults.expire_next_exports(2)
        for name in ("doomed-1", "doomed-2"):
            await export(k, name, "VirtualDisk", "faulty")
            obj = await k.wait(R.DATAEXPORT, NS, name, ready_is("False"))
            assert reason(obj, "Ready") == "Expired"
            assert "expired" in condition(obj, "Ready")["message"]
            assert "url" not in obj["status"]
        after = await ready_export(k, "after", "VirtualDisk", "faulty")   # later ones behave normally
        assert after["status"]["url"].endswith("/after")
        # Exports that existed before are untouched; the expired ones stay expired (resyncs included).
        await asyncio.sleep(0.1)
        assert reason(await k.get(R.DATAEXPORT, NS, "before") or {}, "Ready") == "Ready"
        assert reason(await k.get(R.DATAEXPORT, NS, "doomed-1") or {}, "Ready") == "Expired"
        doomed = f"{embedded_cluster.url}/dataexport/{NS}/doomed-1/api/v1/block"
        async with k.session.get(doomed, headers=auth(embedded_cluster)) as response:
            assert response.status == 410
        assert before["status"]["url"]


async def test_a_dropped_download_stops_short_of_its_length(embedded_cluster: EmbeddedCluster,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    cut = (3 << 20) + 12345
    async with kube(embedded_cluster) as k:
        seed = await detached_disk(k)
        obj = await ready_export(k, "dropped", "VirtualDisk", "faulty")
        embedded_cluster.faults.drop_next_export(cut)
        async with aiohttp.ClientSession() as session:
            async with session.head(block_url(obj), headers=auth(embedded_cluster)) as response:
                assert response.status == 200      # HEAD sends no body: it does not spend the fault
            received = bytearray()
            async with session.get(block_url(obj), headers=auth(embedded_cluster)) as response:
                assert response.status == 200 and response.content_length == SIZE
                with pytest.raises(aiohttp.ClientPayloadError):
                    async for piece in response.content.iter_chunked(1 << 20):
                        received += piece
            assert bytes(received) == disk_content(seed, SIZE, 0, cut)
            # The fault is spent: the next download (here a range) is whole.
            wanted = auth(embedded_cluster, Range=f"bytes={SIZE - (5 << 20)}-")
            async with session.get(block_url(obj), headers=wanted) as response:
                assert response.status == 206
                assert await response.read() == disk_content(seed, SIZE, SIZE - (5 << 20), 5 << 20)
    no_server_errors(caplog)


async def test_a_drop_counts_bytes_of_a_range_body(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        seed = await detached_disk(k)
        obj = await ready_export(k, "ranged", "VirtualDisk", "faulty")
        embedded_cluster.faults.drop_next_export(100)
        headers = auth(embedded_cluster, Range=f"bytes={(64 << 20) - 50}-")
        async with aiohttp.ClientSession() as session, session.get(block_url(obj), headers=headers) as response:
            assert response.status == 206
            received = bytearray()
            with pytest.raises(aiohttp.ClientPayloadError):
                async for piece in response.content.iter_any():
                    received += piece
        assert bytes(received) == disk_content(seed, SIZE, (64 << 20) - 50, 100)


async def test_a_slow_download_speeds_up_when_the_limit_is_lifted(embedded_cluster: EmbeddedCluster) -> None:
    rate = 200_000.0
    async with kube(embedded_cluster) as k:
        seed = await detached_disk(k)
        obj = await ready_export(k, "slow", "VirtualDisk", "faulty")
        embedded_cluster.faults.slow_export(rate)
        digest, received = hashlib.sha256(), 0
        async with aiohttp.ClientSession() as session, session.get(block_url(obj), headers=auth(embedded_cluster)
                                                                   ) as response:
            started = time.monotonic()
            while time.monotonic() - started < 0.5:
                piece = await response.content.readany()
                digest.update(piece)
                received += len(piece)
            elapsed = time.monotonic() - started
            assert 0 < received <= rate * elapsed + 2 * rate * 0.05 + (1 << 20)   # socket buffers hold some
            assert received < SIZE // 16
            embedded_cluster.faults.slow_export(None)    # the running download is released
            async for piece in response.content.iter_chunked(1 << 20):
                digest.update(piece)
                received += len(piece)
    assert received == SIZE and digest.hexdigest() == disk_sha256(seed, SIZE)


async def test_a_client_leaving_a_slow_download_is_no_server_error(embedded_cluster: EmbeddedCluster,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    async with kube(embedded_cluster) as k:
        await detached_disk(k)
        obj = await ready_export(k, "left", "VirtualDisk", "faulty")
        embedded_cluster.faults.slow_export(100_000)
        async with aiohttp.ClientSession() as session:
            async with session.get(block_url(obj), headers=auth(embedded_cluster)) as response:
                assert len(await response.content.readany()) > 0
                response.close()         # the client gives up mid-stream (a cancelled transfer)
            await asyncio.sleep(0.2)     # the server's next slice finds the connection gone
            embedded_cluster.faults.clear()
            async with session.get(block_url(obj), headers=auth(embedded_cluster, Range="bytes=0-9")) as response:
                assert response.status == 206 and len(await response.read()) == 10
    no_server_errors(caplog)


async def test_a_failure_can_name_the_resource_by_its_key(embedded_cluster: EmbeddedCluster) -> None:
    # R.DATAEXPORT is "dataexports.deckhouse.io"; the bare plural "dataexports" works as well.
    embedded_cluster.faults.fail(1.0, code=503, verb="create", resource=R.DATAEXPORT)
    async with kube(embedded_cluster) as k:
        with pytest.raises(KubeError) as caught:
            await export(k, "refused", "VirtualDisk", "spare-disk")
        assert caught.value.status == 503
        assert await k.list(R.DATAEXPORT, NS) == []       # other verbs are untouched


async def test_deleting_the_export_cuts_its_running_download(embedded_cluster: EmbeddedCluster,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    # As on a real cluster, where the exporter pod goes away with its DataExport.
    async with kube(embedded_cluster) as k:
        seed = await detached_disk(k)
        obj = await ready_export(k, "doomed", "VirtualDisk", "faulty")
        embedded_cluster.faults.slow_export(1 << 20)
        received = bytearray()
        async with k.session.get(block_url(obj), headers=auth(embedded_cluster)) as response:
            received += await response.content.readany()
            await k.delete(R.DATAEXPORT, NS, "doomed")
            with pytest.raises(aiohttp.ClientPayloadError):
                async for piece in response.content.iter_any():
                    received += piece
        assert 0 < len(received) < SIZE // 8
        assert bytes(received) == disk_content(seed, SIZE, 0, len(received))
    no_server_errors(caplog)


def test_slow_export_rejects_a_non_positive_rate(embedded_cluster: EmbeddedCluster) -> None:
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="positive"):
            embedded_cluster.faults.slow_export(bad)


def test_clear_lifts_the_export_faults(embedded_cluster: EmbeddedCluster) -> None:
    faults = embedded_cluster.faults
    faults.expire_next_exports(3)
    faults.drop_next_export(10)
    faults.slow_export(1.0)
    faults.clear()
    assert (faults.take_export_expiry(), faults.take_export_drop(), faults.export_rate()) == (False, None, None)


async def test_head_and_ranges(embedded_cluster: EmbeddedCluster) -> None:
    async with kube(embedded_cluster) as k:
        await detached_disk(k)
        obj = await ready_export(k, "heads", "VirtualDisk", "faulty")
        async with aiohttp.ClientSession() as session:
            async with session.head(block_url(obj), headers=auth(embedded_cluster)) as response:
                assert response.status == 200
                assert response.headers["Accept-Ranges"] == "bytes"
                assert response.headers["Content-Length"] == str(SIZE)
                assert response.headers["Content-Type"] == "application/octet-stream"
            ranged = auth(embedded_cluster, Range="bytes=100-199")
            async with session.head(block_url(obj), headers=ranged) as response:
                assert response.status == 206
                assert response.headers["Content-Length"] == "100"
                assert response.headers["Content-Range"] == f"bytes 100-199/{SIZE}"
            for method in ("GET", "HEAD"):
                for bad in (f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"):
                    async with session.request(method, block_url(obj), headers=auth(embedded_cluster, Range=bad)
                                               ) as response:
                        assert response.status == 416, (method, bad)
                        assert response.headers["Content-Range"] == f"bytes */{SIZE}"


async def test_any_chunk_size_serves_the_same_bytes() -> None:
    config = EmbeddedClusterConfig(step_delay=0.0, seed_demo=True, export_chunk=BLOCK + 3)
    async with EmbeddedCluster(config) as cluster, kube(cluster) as k:
        seed = await detached_disk(k)
        obj = await ready_export(k, "odd-chunks", "VirtualDisk", "faulty")
        digest = hashlib.sha256()
        async with k.session.get(block_url(obj), headers=auth(cluster)) as response:
            async for piece in response.content.iter_chunked(1 << 20):
                digest.update(piece)
    assert digest.hexdigest() == disk_sha256(seed, SIZE)
