"""A caller may hold only so many open streams, counted across both doors: past the cap
the next one is refused at once (429 / RESOURCE_EXHAUSTED with a retry hint), other
callers are unaffected, and a closed stream frees its slot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from service.api.grpc_gen.dvp.snapshots.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc
from service.core.gateway import CoreSettings
from tests.support.gateway import GatewayServer, running_gateway

CAP = 2


async def _open_sse(session: aiohttp.ClientSession, server: GatewayServer, user: str) -> aiohttp.ClientResponse:
    # The status is sent once the stream is open (refusals are problem+json instead).
    return await session.get(f"{server.rest_url}/v1/namespaces/demo/disk-snapshots:watch",
                             headers=server.auth(user))


async def _open_grpc(channel: grpc.aio.Channel, server: GatewayServer,
                     user: str) -> grpc.aio.UnaryStreamCall[Any, Any]:
    stub = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
    call = stub.WatchDiskSnapshots(snapshot_service_pb2.WatchDiskSnapshotsRequest(namespace="demo"),
                                   metadata=(("authorization", f"Bearer {server.tokens[user]}"),))
    await call.initial_metadata()
    return call


async def _admitted_grpc(channel: grpc.aio.Channel, server: GatewayServer,
                         user: str) -> grpc.aio.UnaryStreamCall[Any, Any]:
    """A gRPC watch known to hold its slot: it has sent an item. (Its initial metadata,
    the request id, is sent before the stream is admitted, so it proves nothing.)"""
    stub = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
    await stub.CreateDiskSnapshot(snapshot_service_pb2.CreateDiskSnapshotRequest(
        namespace="demo", name="capped", virtual_disk_name="spare-disk"),
        metadata=(("authorization", f"Bearer {server.tokens[user]}"),))
    call = await _open_grpc(channel, server, user)
    async with asyncio.timeout(10):
        first = await call.read()
    assert first is not grpc.aio.EOF and first.snapshot.name == "capped", first
    return call


async def _grpc_refused(channel: grpc.aio.Channel, server: GatewayServer, user: str) -> grpc.aio.AioRpcError:
    call = await _open_grpc(channel, server, user)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async with asyncio.timeout(10):
            await call.read()
    return caught.value


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_streams_per_caller_are_capped_across_both_doors(embedded_cluster: Any, database_url: str,
                                                               tmp_path: Path) -> None:
    settings = CoreSettings(resync_interval=0.2, max_streams_per_caller=CAP)
    async with running_gateway(embedded_cluster, database_url, tmp_path, settings) as server, \
            aiohttp.ClientSession() as session, grpc.aio.insecure_channel(server.grpc_target) as channel:
        watch = await _admitted_grpc(channel, server, "operator")
        sse = await _open_sse(session, server, "operator")
        assert sse.status == 200
        # Its first event, so it holds its slot (a slow start still gets its 200 after a grace).
        async with asyncio.timeout(10):
            while not (await sse.content.readline()).startswith(b"data:"):
                pass

        refused = await _open_sse(session, server, "operator")
        assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
        assert (await refused.json())["reason"] == "TOO_MANY_STREAMS"
        error = await _grpc_refused(channel, server, "operator")
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

        other = await _open_sse(session, server, "dev")  # another caller is not affected
        assert other.status == 200
        other.close()

        watch.cancel()
        sse.close()
        refusals = 2
        for _ in range(50):  # the slots come back once the gateway sees the streams end
            again = await _open_sse(session, server, "operator")
            if again.status == 200:
                again.close()
                break
            refusals += 1
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the closed streams' slots were not given back")

        async with session.get(f"{server.rest_url}/v1/audit/events?action=WatchDiskSnapshots&outcome=ERROR",
                               headers=server.auth()) as audit:
            reasons = [e["reason"] for e in (await audit.json())["items"]]
        assert reasons.count("TOO_MANY_STREAMS") == refusals  # every refusal is audited
