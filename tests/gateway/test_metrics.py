"""Prometheus metrics, scraped over real HTTP from a real gateway after real traffic on
both doors (docs/observability.md)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api.grpc_gen.dvp.snapshots.v1 import (
    operation_service_pb2,
    operation_service_pb2_grpc,
    snapshot_service_pb2,
    snapshot_service_pb2_grpc,
)
from service.cluster.kinds import VIRTUAL_DISK
from service.embedded_cluster.server import EmbeddedCluster
from service.settings import Settings, UsageError, from_env
from tests.embedded_cluster.test_controllers_kit import kube
from tests.gateway.test_exports import make_disk
from tests.support.doors import open_door
from tests.support.exports import grpc_export, rest_export
from tests.support.gateway import GatewayServer, start_gateway

# SQLite, except where PostgreSQL's pool is the point.
sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DISK = "linux-vm-root"
Labels = dict[str, str]


class Scrape:
    """One scrape of /metrics: every sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, Labels, float]] = [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sample's value (0 when absent, as Prometheus reads a counter never incremented)."""
        found = [v for n, got, v in self.samples if n == name and got == labels]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else 0.0

    def total(self, name: str, **labels: str) -> float:
        """The sum over every label set containing ``labels``."""
        return sum(v for n, got, v in self.samples if n == name and labels.items() <= got.items())


async def scrape(server: GatewayServer) -> Scrape:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{server.app.metrics_port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return Scrape(await response.text())


async def eventually(check: Callable[[Scrape], bool], server: GatewayServer, what: str,
                     limit: float = 15.0) -> Scrape:
    async with asyncio.timeout(limit):
        while True:
            got = await scrape(server)
            if check(got):
                return got
            await asyncio.sleep(0.05)
    raise AssertionError(what)   # pragma: no cover: the timeout raises first


@pytest.fixture
async def grpc_stubs(gateway_server: GatewayServer) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(gateway_server.grpc_target) as channel:
        yield channel


@sqlite
async def test_calls_are_counted_by_method_code_and_protocol_the_same_on_both_doors(
        gateway_server: GatewayServer, grpc_stubs: grpc.aio.Channel) -> None:
    server = gateway_server
    before = await scrape(server)
    assert before.value("dvp_gateway_requests_total", method="CreateDiskSnapshot", code="OK", protocol="grpc") == 0
    created = []
    for door in ("grpc", "rest"):
        async with open_door(door, server) as client:
            created.append(await client.create_disk_snapshot(f"metrics-{door}", DISK))
            missing = await client.refused(client.get_operation(str(uuid.uuid4())))
            assert missing.code == "NOT_FOUND"
            for op in created[-1:]:
                assert (await client.wait_done(op["id"]))["state"] == "SUCCEEDED"
    # Refused before any method runs: no token (both doors), an unknown path (REST).
    stub = snapshot_service_pb2_grpc.SnapshotServiceStub(grpc_stubs)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetDiskSnapshot(snapshot_service_pb2.GetDiskSnapshotRequest(namespace="demo", name="x"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.rest_url}/v1/namespaces/demo/disk-snapshots/x") as response:
            assert response.status == 401
        async with session.get(f"{server.rest_url}/v1/no/such/path/{uuid.uuid4()}", headers=server.auth()) as resp:
            assert resp.status == 404

    got = await scrape(server)
    for protocol in ("grpc", "rest"):
        assert got.value("dvp_gateway_requests_total", method="CreateDiskSnapshot", code="OK",
                         protocol=protocol) == 1
        assert got.value("dvp_gateway_requests_total", method="GetOperation", code="NOT_FOUND",
                         protocol=protocol) == 1
        assert got.value("dvp_gateway_requests_total", method="GetDiskSnapshot", code="UNAUTHENTICATED",
                         protocol=protocol) == 1
        # wait_done: one WatchOperation, ended OK when the operation finished, and a GetOperation.
        assert got.value("dvp_gateway_requests_total", method="WatchOperation", code="OK", protocol=protocol) == 1
        assert got.value("dvp_gateway_request_duration_seconds_count", method="CreateDiskSnapshot",
                         protocol=protocol) == 1
        assert got.value("dvp_gateway_request_duration_seconds_bucket", method="CreateDiskSnapshot",
                         protocol=protocol, le="30.0") == 1
        assert 0 < got.value("dvp_gateway_request_duration_seconds_sum", method="CreateDiskSnapshot",
                             protocol=protocol) < 30
    # The raw path is never a label.
    assert got.value("dvp_gateway_requests_total", method="unknown", code="NOT_FOUND", protocol="rest") == 1
    assert "no/such/path" not in got.text
    # Both creates went PENDING or RUNNING, then SUCCEEDED, in this replica.
    assert got.value("dvp_gateway_operations_total", type="CREATE_DISK_SNAPSHOT", state="SUCCEEDED") == 2
    assert got.total("dvp_gateway_operations_total", type="CREATE_DISK_SNAPSHOT") >= 4


@sqlite
async def test_an_open_watch_is_in_the_gauge_until_it_ends(gateway_server: GatewayServer,
                                                            grpc_stubs: grpc.aio.Channel) -> None:
    server = gateway_server

    def open_watches(protocol: str, count: int) -> Callable[[Scrape], bool]:
        return lambda got: got.value("dvp_gateway_open_streams", method="WatchDiskSnapshots",
                                     protocol=protocol) == count

    stub = snapshot_service_pb2_grpc.SnapshotServiceStub(grpc_stubs)
    call = stub.WatchDiskSnapshots(snapshot_service_pb2.WatchDiskSnapshotsRequest(namespace="demo"),
                                   metadata=(("authorization", f"Bearer {server.token}"),))
    await call.initial_metadata()
    await eventually(open_watches("grpc", 1), server, "the gRPC watch is not in the gauge")
    call.cancel()
    ended = await eventually(open_watches("grpc", 0), server, "the gRPC watch stayed in the gauge")
    assert ended.value("dvp_gateway_requests_total", method="WatchDiskSnapshots", code="CANCELLED",
                       protocol="grpc") == 1

    async with aiohttp.ClientSession() as session, session.get(
            f"{server.rest_url}/v1/namespaces/demo/disk-snapshots:watch",
            headers={**server.auth(), "Accept": "text/event-stream"}) as response:
        assert response.status == 200
        await eventually(open_watches("rest", 1), server, "the SSE watch is not in the gauge")
    # The client hung up; the next event's write finds that out (no waiting for a keepalive).
    async with open_door("rest", server) as client:
        await client.create_disk_snapshot("metrics-after-watch", DISK)
    ended = await eventually(open_watches("rest", 0), server, "the SSE watch stayed in the gauge")
    assert ended.value("dvp_gateway_requests_total", method="WatchDiskSnapshots", code="CANCELLED",
                       protocol="rest") == 1


@sqlite
async def test_export_bytes_are_the_bytes_downloaded(gateway_server: GatewayServer) -> None:
    server = gateway_server
    async with kube(server.cluster) as k:
        disk = await make_disk(k, f"metrics-{uuid.uuid4().hex[:6]}", "8Mi")
    over_rest = await rest_export(server, disk)
    assert over_rest.status == 200 and over_rest.mismatches == []
    got = await eventually(lambda s: s.value("dvp_gateway_requests_total", method="ExportDisk", code="OK",
                                             protocol="rest") == 1, server, "the REST export was not counted")
    assert got.value("dvp_gateway_export_bytes_total", kind="disk", protocol="rest") == over_rest.data_bytes
    assert over_rest.data_bytes == disk.size

    over_grpc = await grpc_export(server, disk)
    assert over_grpc.mismatches == [] and over_grpc.length == disk.size
    got = await eventually(lambda s: s.value("dvp_gateway_requests_total", method="ExportDisk", code="OK",
                                             protocol="grpc") == 1, server, "the gRPC export was not counted")
    # Data and holes: the image's bytes, whichever way they travelled.
    assert got.value("dvp_gateway_export_bytes_total", kind="disk", protocol="grpc") == (
        over_grpc.data_bytes + over_grpc.hole_bytes)
    assert got.value("dvp_gateway_export_bytes_total", kind="disk-snapshot", protocol="grpc") == 0


@sqlite
async def test_a_broken_cluster_watch_is_counted_as_a_restart(gateway_server: GatewayServer) -> None:
    server = gateway_server
    cluster: EmbeddedCluster = server.cluster
    await server.app.hub.wait_synced(VIRTUAL_DISK)
    before = (await scrape(server)).total("dvp_gateway_watch_restarts_total", reason="expired")
    cluster.faults.expire_watches()
    got = await eventually(lambda s: s.total("dvp_gateway_watch_restarts_total", reason="expired") > before,
                           server, "the expired watch was not counted")
    assert got.value("dvp_gateway_watch_restarts_total", kind="virtualdisks", reason="expired") >= 1


@sqlite
async def test_database_pool_and_group_commit_are_reported(gateway_server: GatewayServer) -> None:
    server = gateway_server
    async with open_door("rest", server) as client:
        await client.create_disk_snapshot("metrics-pool", DISK)
    got = await scrape(server)
    size = got.value("dvp_gateway_db_pool_size", limit="size")
    assert size >= 1 and got.value("dvp_gateway_db_pool_size", limit="max") >= size
    in_use, idle = (got.value("dvp_gateway_db_pool_connections", state=s) for s in ("in_use", "idle"))
    # The connections opened so far wait in the pool, or serve the reconciler right now.
    assert in_use >= 0 and idle >= 0 and 1 <= in_use + idle <= got.value("dvp_gateway_db_pool_size", limit="max")
    # The create's operation row and audit event were one job of a committed batch.
    assert got.value("dvp_gateway_db_batch_size_count") >= 1
    assert got.value("dvp_gateway_db_batch_size_sum") >= got.value("dvp_gateway_db_batch_size_count")
    assert got.value("dvp_gateway_db_transaction_duration_seconds_count") == got.value(
        "dvp_gateway_db_batch_size_count")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_postgresql_pool_shows_a_connection_in_use_during_a_call(gateway_server: GatewayServer) -> None:
    server = gateway_server
    got = await scrape(server)
    assert got.value("dvp_gateway_db_pool_size", limit="size") == 10
    assert got.value("dvp_gateway_db_pool_size", limit="max") == 20
    engine = server.app._db.engine if server.app._db is not None else None
    assert engine is not None
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(3):   # connections held, as calls hold them
            await stack.enter_async_context(engine.connect())
        held = await scrape(server)
        assert held.value("dvp_gateway_db_pool_connections", state="in_use") >= 3
    released = await scrape(server)
    assert released.value("dvp_gateway_db_pool_connections", state="idle") >= 3
    assert released.value("dvp_gateway_db_pool_overflow") == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


@sqlite
async def test_metrics_off_means_no_listener(embedded_cluster: EmbeddedCluster, database_url: str,
                                             tmp_path: Path) -> None:
    port = _free_port()
    app, _, _ = await start_gateway(embedded_cluster, database_url, tmp_path, metrics=False, metrics_port=port)
    try:
        assert app.metrics_port == 0 and app.telemetry.metrics is None
        assert await _refused(port)
    finally:
        await app.stop()


@sqlite
async def test_two_gateways_in_one_process_keep_their_own_counts(embedded_cluster: EmbeddedCluster,
                                                                 database_url: str, tmp_path: Path) -> None:
    first, tokens, _ = await start_gateway(embedded_cluster, database_url, tmp_path / "a")
    second, _, _ = await start_gateway(embedded_cluster, f"sqlite+aiosqlite:///{tmp_path / 'second.db'}",
                                       tmp_path / "b")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.grpc_port}") as channel:
            stub = operation_service_pb2_grpc.OperationServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetOperation(operation_service_pb2.GetOperationRequest(operation_id=str(uuid.uuid4())),
                                        metadata=(("authorization", f"Bearer {tokens['dev']}"),))
        counts = []
        for app in (first, second):
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{app.metrics_port}/metrics") as response:
                counts.append(Scrape(await response.text()).value(
                    "dvp_gateway_requests_total", method="GetOperation", code="NOT_FOUND", protocol="grpc"))
        assert counts == [1, 0]
    finally:
        await second.stop()
        await first.stop()


def test_the_settings_have_flags_env_vars_and_checks() -> None:
    assert (Settings().metrics, Settings().metrics_host, Settings().metrics_port) == (True, "127.0.0.1", 9464)
    settings = from_env({"DVP_GATEWAY_METRICS": "off", "DVP_GATEWAY_METRICS_PORT": "0"})
    assert (settings.metrics, settings.metrics_port) == (False, 0)
    with pytest.raises(UsageError, match="DVP_GATEWAY_METRICS_PORT"):
        from_env({"DVP_GATEWAY_METRICS_PORT": "99999"})
    with pytest.raises(UsageError, match="--rest-port and --metrics-port are both 9464"):
        from_env({"DVP_GATEWAY_REST_PORT": "9464"})
    # Switched off, its port may be anything.
    assert from_env({"DVP_GATEWAY_REST_PORT": "9464", "DVP_GATEWAY_METRICS": "false"}).rest_port == 9464
    assert replace(Settings(), metrics_host="::1").metrics_host == "::1"

