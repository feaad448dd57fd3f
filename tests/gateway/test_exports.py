"""ExportDisk and ExportDiskSnapshot end to end through both doors (a real gRPC channel,
a real HTTP client) on the whole gateway over the embedded cluster (a real DataExport,
its block endpoint over real HTTP, TLS where the cluster serves it): every byte checked
against the cluster's deterministic content, ranges, holes, resume, cancellation, the
guide's in-use rule, an absent export module, expiry while waiting, and the caps."""

from __future__ import annotations

import asyncio
import base64
import resource
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from service.api.grpc_gen.dvp.snapshots.v1 import export_service_pb2
from service.core.domain import ExportTransfer, Operation, OperationState, OperationType, ResourceRef
from service.core.export_settings import ExportSettings
from service.core.gateway import CoreSettings
from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.controllers.content import BLOCK, STRIPE, disk_sha256
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig
from tests.embedded_cluster.test_controllers_kit import Kube, kube
from tests.support.exports import Volume, export_url, grpc_export, rest_export
from tests.support.gateway import GatewayServer, running_gateway

NS = "demo"
MiB = 1 << 20
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

Obj = dict[str, Any]
DOORS = ["grpc", "rest"]


async def _wait(check: Any, what: str = "condition", limit: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def make_disk(k: Kube, name: str, size: str) -> Volume:
    """A blank VirtualDisk, not attached to any VM, Ready with its content seed."""
    await k.create(R.VD, NS, {
        "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"persistentVolumeClaim": {"size": size}}})

    async def ready() -> Obj | None:
        disk = await k.get(R.VD, NS, name)
        return disk if disk and disk.get("status", {}).get("phase") == "Ready" else None

    disk = await _wait(ready, what=f"disk {name} Ready")
    capacity = _bytes(disk["status"]["capacity"])
    return Volume("disk", name, disk["metadata"]["annotations"][R.ANN_CONTENT_SEED], capacity)


async def make_snapshot(k: Kube, disk: Volume, name: str) -> Volume:
    await k.create(R.VDSNAPSHOT, NS, {
        "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDiskSnapshot",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"virtualDiskName": disk.name, "requiredConsistency": False}})

    async def ready() -> Obj | None:
        snap = await k.get(R.VDSNAPSHOT, NS, name)
        return snap if snap and snap.get("status", {}).get("phase") == "Ready" else None

    await _wait(ready, what=f"snapshot {name} Ready")
    return Volume("disk-snapshot", name, disk.seed, disk.size)


def _bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[:-2]) * factor
    return int(quantity)


async def data_exports(k: Kube) -> list[str]:
    listed = await k.list(R.DATAEXPORT, NS)
    return [str(item["metadata"]["name"]) for item in listed]


async def no_data_exports_left(k: Kube) -> None:
    async def gone() -> bool:
        return not [n for n in await data_exports(k) if n.startswith("gw-export-")]

    await _wait(gone, what="the gateway's DataExports deleted")


async def operation(server: GatewayServer, operation_id: str) -> Obj:
    async with aiohttp.ClientSession() as session, session.get(
            f"{server.rest_url}/v1/operations/{operation_id}", headers=server.auth()) as response:
        assert response.status == 200
        return dict(await response.json())


async def finished(server: GatewayServer, operation_id: str) -> Obj:
    async def done() -> Obj | None:
        op = await operation(server, operation_id)
        return op if op["done"] else None

    return dict(await _wait(done, what=f"operation {operation_id} done"))


def operation_id_of(received: Any) -> str:
    return str(received.metadata.get("operation_id") or received.headers.get("X-Operation-Id", ""))


async def export(door: str, server: GatewayServer, volume: Volume, **options: Any) -> Any:
    """One export through ``door``; options: offset/length (a range), expand_holes, stop_after."""
    offset, length = options.pop("offset", None), options.pop("length", None)
    if door == "grpc":
        if offset is not None:
            options["range"] = export_service_pb2.ByteRange(offset=offset, length=length) if length is not None \
                else export_service_pb2.ByteRange(offset=offset)
        return await grpc_export(server, volume, **options)
    options.pop("expand_holes", None)
    headers = dict(options.pop("headers", {}))
    if offset is not None:
        headers["Range"] = f"bytes={offset}-" + (str(offset + length - 1) if length is not None else "")
    return await rest_export(server, volume, headers=headers, **options)


@pytest.fixture
async def k(gateway_server: GatewayServer) -> AsyncIterator[Kube]:
    async with kube(gateway_server.cluster) as client:
        yield client


@pytest.fixture
async def disk(k: Kube) -> Volume:
    # 200 MiB: four 64 MiB stripes, each starting with a 64 KiB data block.
    return await make_disk(k, f"export-{uuid.uuid4().hex[:6]}", "200Mi")


# ----------------------------------------------------------------- whole volumes, byte for byte


@pytest.mark.parametrize("door", DOORS)
async def test_a_whole_disk_arrives_byte_for_byte_and_is_recorded(door: str, gateway_server: GatewayServer,
                                                                   k: Kube, disk: Volume) -> None:
    got = await export(door, gateway_server, disk)
    assert got.status == 200 and got.mismatches == []
    assert got.length == disk.size
    whole = disk_sha256(disk.seed, disk.size)
    assert got.sha256 == whole
    if door == "grpc":
        assert got.metadata["size"] == disk.size and got.metadata["length"] == disk.size
        assert got.summary == {"size": disk.size, "offset": 0, "length": disk.size, "sha256": whole,
                               "range_sha256": whole, "hole_bytes": got.hole_bytes}
    else:
        assert got.headers["Content-Length"] == str(disk.size)
        assert got.headers["Accept-Ranges"] == "bytes" and got.headers["ETag"].startswith('"')
    op = await finished(gateway_server, operation_id_of(got))
    assert op["type"] == "EXPORT_DISK" and op["state"] == "SUCCEEDED" and op["phase"] == "Completed"
    assert op["resource"]["kind"] == "DataExport" and op["target"]["name"] == disk.name
    transfer = op["transfer"]
    assert transfer["outcome"] == "COMPLETED" and transfer["bytesSent"] == disk.size
    assert transfer["sha256"] == whole and transfer["durationSeconds"] > 0
    await no_data_exports_left(k)


async def test_a_snapshot_exports_and_a_second_export_announces_the_digest(gateway_server: GatewayServer, k: Kube,
                                                                           disk: Volume) -> None:
    snapshot = await make_snapshot(k, disk, f"{disk.name}-snap")
    first = await export("rest", gateway_server, snapshot)
    assert first.status == 200 and first.mismatches == [] and first.length == disk.size
    assert "Repr-Digest" not in first.headers   # not known before the first complete pass
    second = await export("rest", gateway_server, snapshot)
    assert second.headers["ETag"] == first.headers["ETag"]   # a snapshot's bytes never change
    announced = base64.b64decode(second.headers["Repr-Digest"].split(":")[1]).hex()
    assert announced == disk_sha256(disk.seed, disk.size) == second.sha256
    op = await finished(gateway_server, operation_id_of(second))
    assert op["type"] == "EXPORT_DISK_SNAPSHOT"


async def test_the_data_export_ca_is_what_the_gateway_trusts(embedded_cluster_tls: EmbeddedCluster,
                                                             database_url: str, tmp_path: Path) -> None:
    async with running_gateway(embedded_cluster_tls, database_url, tmp_path) as server, \
            kube(embedded_cluster_tls) as client:
        volume = await make_disk(client, "tls-disk", "70Mi")
        got = await export("grpc", server, volume)
        assert got.mismatches == [] and got.length == volume.size


# ----------------------------------------------------------------- ranges, holes


@pytest.mark.parametrize("door", DOORS)
async def test_a_range_across_a_hole_and_data(door: str, gateway_server: GatewayServer, disk: Volume) -> None:
    offset, length = STRIPE - 1000, BLOCK + 3000   # zeros, then the second stripe's data, then zeros
    got = await export(door, gateway_server, disk, offset=offset, length=length)
    assert got.mismatches == [] and got.offset == offset and got.length == length
    if door == "rest":
        assert got.status == 206
        assert got.headers["Content-Range"] == f"bytes {offset}-{offset + length - 1}/{disk.size}"
    else:
        assert got.summary["range_sha256"] == got.sha256 and got.summary["sha256"] == ""
    op = await finished(gateway_server, operation_id_of(got))
    assert op["transfer"]["offset"] == offset and op["transfer"]["length"] == length


@pytest.mark.parametrize("door", DOORS)
async def test_a_range_past_the_end_is_out_of_range(door: str, gateway_server: GatewayServer, k: Kube,
                                                    disk: Volume) -> None:
    if door == "grpc":
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await export(door, gateway_server, disk, offset=disk.size)
        assert caught.value.code() is grpc.StatusCode.OUT_OF_RANGE
    else:
        got = await export(door, gateway_server, disk, offset=disk.size)
        assert got.status == 416 and got.headers["Content-Range"] == f"bytes */{disk.size}"
    await no_data_exports_left(k)


async def test_rest_suffix_range_and_a_stale_if_range(gateway_server: GatewayServer, disk: Volume) -> None:
    tail = await rest_export(gateway_server, disk, headers={"Range": "bytes=-5000"})
    assert tail.status == 206 and tail.offset == disk.size - 5000 and tail.mismatches == []
    stale = await rest_export(gateway_server, disk, headers={"Range": "bytes=10-", "If-Range": '"other"'},
                              stop_after=1)
    assert stale.status == 200 and stale.headers["Content-Length"] == str(disk.size)


async def test_grpc_sends_zero_regions_as_holes_unless_asked_to_expand(gateway_server: GatewayServer,
                                                                        disk: Volume) -> None:
    written = -(-disk.size // STRIPE) * BLOCK    # one data block per stripe
    sparse = await export("grpc", gateway_server, disk)
    assert sparse.mismatches == [] and sparse.data_bytes == written
    assert sparse.hole_bytes == disk.size - written and sparse.summary["hole_bytes"] == sparse.hole_bytes
    # One hole message per zero run, however many pieces it spans.
    assert sparse.holes == -(-disk.size // STRIPE)
    dense = await export("grpc", gateway_server, disk, expand_holes=True)
    assert dense.mismatches == [] and dense.holes == 0 and dense.data_bytes == disk.size
    assert dense.sha256 == sparse.sha256


async def test_whole_image_digest_on_request_for_a_range(gateway_server: GatewayServer, disk: Volume) -> None:
    got = await export("grpc", gateway_server, disk, offset=3 * MiB, length=MiB, whole_image_sha256=True)
    assert got.length == MiB and got.summary["sha256"] == disk_sha256(disk.seed, disk.size)
    op = await finished(gateway_server, operation_id_of(got))
    assert op["transfer"]["sha256"] == got.summary["sha256"]


# ----------------------------------------------------------------- resume, cancel


async def test_resume_after_a_dropped_connection(gateway_server: GatewayServer, k: Kube, disk: Volume) -> None:
    cut = 70 * MiB + 12345
    first = await rest_export(gateway_server, disk, stop_after=cut)
    assert first.status == 200 and first.length >= cut
    etag = first.headers["ETag"]
    dropped = await finished(gateway_server, operation_id_of(first))
    assert dropped["state"] == "CANCELLED" and dropped["transfer"]["outcome"] == "CANCELLED"
    rest = await rest_export(gateway_server, disk, headers={"Range": f"bytes={first.length}-", "If-Range": etag,
                                                            "Want-Repr-Digest": "sha-256=1"})
    assert rest.status == 206 and rest.offset == first.length and rest.mismatches == []
    assert first.length + rest.length == disk.size
    resumed = await finished(gateway_server, operation_id_of(rest))
    assert resumed["transfer"]["sha256"] == disk_sha256(disk.seed, disk.size)
    await no_data_exports_left(k)


@pytest.mark.parametrize("door", DOORS)
async def test_a_caller_going_away_deletes_the_data_export(door: str, gateway_server: GatewayServer, k: Kube,
                                                           disk: Volume) -> None:
    gateway_server.cluster.faults.slow_export(8 * MiB)   # ~25 s for the disk: we leave long before
    try:
        got = await export(door, gateway_server, disk, stop_after=2 * MiB, expand_holes=True)
    finally:
        gateway_server.cluster.faults.slow_export(None)
    op = await finished(gateway_server, operation_id_of(got))
    assert op["state"] == "CANCELLED" and op["error"]["reason"] == "CLIENT_CANCELLED"
    assert 0 < op["transfer"]["bytesSent"] < disk.size
    await no_data_exports_left(k)


@pytest.mark.parametrize("door", DOORS)
async def test_a_broken_upstream_connection_is_resumed_where_it_stopped(door: str, gateway_server: GatewayServer,
                                                                       k: Kube, disk: Volume) -> None:
    gateway_server.cluster.faults.drop_next_export(after_bytes=5 * MiB + 123)
    got = await export(door, gateway_server, disk)
    assert got.mismatches == [] and got.length == disk.size     # the caller never noticed
    assert got.sha256 == disk_sha256(disk.seed, disk.size)
    op = await finished(gateway_server, operation_id_of(got))
    assert op["state"] == "SUCCEEDED" and op["transfer"]["bytesSent"] == disk.size
    await no_data_exports_left(k)


async def test_an_export_gone_midway_is_replaced_and_a_lasting_failure_fails_the_operation(
        gateway_server: GatewayServer, k: Kube, disk: Volume) -> None:
    faults = gateway_server.cluster.faults
    faults.slow_export(16 * MiB)
    events: list[str] = []

    async def sabotage() -> None:
        # Midway: the DataExport disappears and the cluster refuses a new one.
        names = await _wait(lambda: _gateway_exports(k), what="the gateway's DataExport")
        await asyncio.sleep(0.5)
        faults.fail(1.0, code=503, verb="create", resource=R.DATAEXPORT)
        await k.delete(R.DATAEXPORT, NS, names[0])
        events.append("deleted")

    saboteur = asyncio.create_task(sabotage())
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await export("grpc", gateway_server, disk, expand_holes=True)
    finally:
        faults.clear()
        await saboteur
    assert events == ["deleted"] and caught.value.code() is grpc.StatusCode.UNAVAILABLE
    ops = await _exports_of(gateway_server, disk.name)
    failed = await finished(gateway_server, ops[0]["id"])
    assert failed["state"] == "FAILED" and failed["transfer"]["outcome"] == "FAILED"
    assert 0 < failed["transfer"]["bytesSent"] < disk.size
    await no_data_exports_left(k)


async def _gateway_exports(k: Kube) -> list[str]:
    return [n for n in await data_exports(k) if n.startswith("gw-export-")]


async def _exports_of(server: GatewayServer, name: str) -> list[Obj]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{server.rest_url}/v1/operations?namespace={NS}&type=EXPORT_DISK", headers=server.auth()) as response:
        items = (await response.json())["items"]
    return [op for op in items if op["target"]["name"] == name]


# ----------------------------------------------------------------- refusals


@pytest.mark.parametrize("door", DOORS)
async def test_a_disk_in_use_by_a_running_vm_is_refused_naming_it(door: str, gateway_server: GatewayServer,
                                                                  k: Kube) -> None:
    volume = Volume("disk", "linux-vm-root", "", 0)
    if door == "grpc":
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await export(door, gateway_server, volume)
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "'linux-vm'" in str(caught.value.details())
    else:
        got = await export(door, gateway_server, volume)
        assert got.status == 412 and got.metadata["reason"] == "DISK_IN_USE"
        assert got.metadata["preconditionViolations"][0]["subject"] == "virtualmachines/linux-vm"
    assert await data_exports(k) == []
    assert await _exports_of(gateway_server, "linux-vm-root") == []   # refused before anything was recorded


async def test_an_absent_export_module_is_reported_clearly(database_url: str, tmp_path: Path) -> None:
    config = EmbeddedClusterConfig(step_delay=0.0, seed_demo=True, export_module=False)
    async with EmbeddedCluster(config) as cluster, running_gateway(cluster, database_url, tmp_path) as server:
        async with kube(cluster) as client:
            volume = await make_disk(client, "no-module", "70Mi")
        got = await export("rest", server, volume)
        assert got.status == 412 and got.metadata["reason"] == "MODULE_NOT_ENABLED"
        assert "does not serve DataExport (deckhouse.io/v1alpha1)" in got.metadata["detail"]
        ops = await _exports_of(server, "no-module")
        assert ops and ops[0]["state"] == "FAILED" and ops[0]["error"]["reason"] == "MODULE_NOT_ENABLED"


async def test_an_export_that_expires_while_waiting_is_recreated(gateway_server: GatewayServer, k: Kube,
                                                                 disk: Volume) -> None:
    gateway_server.cluster.faults.expire_next_exports(1)
    got = await export("grpc", gateway_server, disk, offset=0, length=MiB)
    assert got.mismatches == [] and got.length == MiB
    op = await finished(gateway_server, operation_id_of(got))
    assert op["state"] == "SUCCEEDED" and op["resource"]["name"].endswith("-2")
    await no_data_exports_left(k)


async def test_an_export_that_keeps_expiring_fails_clearly(gateway_server: GatewayServer, k: Kube,
                                                           disk: Volume) -> None:
    gateway_server.cluster.faults.expire_next_exports(ExportSettings().recreate_attempts)
    got = await export("rest", gateway_server, disk)
    assert got.status == 409 and got.metadata["reason"] == "EXPORT_EXPIRED"
    await no_data_exports_left(k)


# ----------------------------------------------------------------- caps


@pytest.fixture
async def capped(embedded_cluster: Any, database_url: str, tmp_path: Path) -> AsyncIterator[GatewayServer]:
    settings = CoreSettings(resync_interval=0.2, export=ExportSettings(max_concurrent=2, max_per_caller=1))
    async with running_gateway(embedded_cluster, database_url, tmp_path, settings) as server:
        yield server


async def test_concurrent_exports_are_capped_per_caller(capped: GatewayServer) -> None:
    async with kube(capped.cluster) as client:
        volume = await make_disk(client, "capped", "70Mi")
    capped.cluster.faults.slow_export(4 * MiB)
    try:
        async with aiohttp.ClientSession() as session, session.get(export_url(capped, volume),
                                                                   headers=capped.auth()) as holding:
            assert holding.status == 200
            await holding.content.readexactly(MiB)
            second = await rest_export(capped, volume)
            assert second.status == 429 and int(second.headers["Retry-After"]) > 0
            assert second.metadata["reason"] == "TOO_MANY_EXPORTS"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await export("grpc", capped, volume)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        capped.cluster.faults.slow_export(None)

    async def free_again() -> bool:
        # The slot comes back once the gateway notices the holder went away.
        try:
            got = await export("grpc", capped, volume, offset=0, length=MiB)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            return False
        return bool(got.length == MiB)

    assert await _wait(free_again, what="the slot given back")


# ----------------------------------------------------------------- memory, crash


async def test_memory_stays_bounded_over_a_multi_gib_stream(gateway_server: GatewayServer, k: Kube) -> None:
    volume = await make_disk(k, "big", "2Gi")
    before = _rss_mib()
    got = await rest_export(gateway_server, volume)
    assert got.mismatches == [] and got.length == 2 << 30
    # Exporter, gateway and client share this process; a generous bound (the bench
    # measures the gateway alone): nothing may grow with the size of the stream.
    assert _rss_mib() - before < 96, f"RSS grew by {_rss_mib() - before:.0f} MiB"


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def test_an_export_left_behind_by_a_crash_is_swept(embedded_cluster: Any, database_url: str,
                                                        tmp_path: Path) -> None:
    settings = CoreSettings(resync_interval=0.2, export=ExportSettings(stale_after=0.5))
    async with running_gateway(embedded_cluster, database_url, tmp_path, settings) as server, \
            kube(embedded_cluster) as client:
        volume = await make_disk(client, "crashed", "70Mi")
        op_id = str(uuid.uuid4())
        name = f"gw-export-{op_id}"
        await client.create(R.DATAEXPORT, NS, {
            "apiVersion": "deckhouse.io/v1alpha1", "kind": "DataExport",
            "metadata": {"name": name, "namespace": NS,
                         "labels": {"snapshots.dvp.deckhouse.io/operation-id": op_id}},
            "spec": {"ttl": "10m", "publish": False, "targetRef": {"kind": "VirtualDisk", "name": volume.name}}})
        # What a gateway killed mid-stream leaves: a RUNNING export and its DataExport.
        orphan = Operation(id=op_id, type=OperationType.EXPORT_DISK, namespace=NS,
                           target=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk",
                                              volume.name, NS),
                           actor="dev", request_hash="", state=OperationState.RUNNING, phase="Transferring",
                           resource=ResourceRef("deckhouse.io/v1alpha1", "DataExport", name, NS),
                           transfer=ExportTransfer(size=volume.size, length=volume.size))
        assert server.app._db is not None
        await server.app._db.operations.create(orphan)
        swept = await finished(server, op_id)
        assert swept["state"] == "FAILED" and swept["error"]["reason"] == "EXPORT_STREAM_LOST"
        assert swept["transfer"]["outcome"] == "FAILED"

        async def gone() -> bool:
            return await client.get(R.DATAEXPORT, NS, name) is None

        await _wait(gone, what="the orphan DataExport deleted")


async def test_a_digest_computed_once_is_announced_after_a_restart(embedded_cluster: Any, database_url: str,
                                                                   tmp_path: Path) -> None:
    async with kube(embedded_cluster) as client:
        volume = await make_disk(client, "remembered", "70Mi")
    digests = []
    for run in ("first", "second"):
        directory = tmp_path / run
        directory.mkdir()
        async with running_gateway(embedded_cluster, database_url, directory) as server:
            got = await export("rest", server, volume)
        assert got.mismatches == [] and got.length == volume.size
        digests.append(got.headers.get("Repr-Digest"))
    # The second gateway process never hashed this content: the operations table knew it.
    assert digests[0] is None and digests[1] is not None
    assert base64.b64decode(digests[1].split(":")[1]).hex() == disk_sha256(volume.seed, volume.size)
