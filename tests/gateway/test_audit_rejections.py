"""Every call is an audit event, including those a door refuses before any use case runs
(a body it cannot parse, an enum value the contract does not define)."""

from __future__ import annotations

import aiohttp
import grpc

from service.api.grpc_gen.dvp.snapshots.v1 import (
    operation_service_pb2,
    operation_service_pb2_grpc,
    snapshot_service_pb2,
    snapshot_service_pb2_grpc,
)
from tests.support.gateway import GatewayServer


async def _events(server: GatewayServer, action: str) -> list[tuple[str, str, str, str]]:
    """What an auditor sees for ``action``, read through the API."""
    async with aiohttp.ClientSession(headers=server.auth()) as http, \
            http.get(f"{server.rest_url}/v1/audit/events", params={"action": action}) as resp:
        assert resp.status == 200
        return [(e["actor"], e["protocol"], e["outcome"], e["code"]) for e in (await resp.json())["items"]]


async def test_rest_body_the_adapter_rejects_is_audited(gateway_server: GatewayServer) -> None:
    url = f"{gateway_server.rest_url}/v1/namespaces/demo/disk-snapshots"
    async with aiohttp.ClientSession(headers=gateway_server.auth()) as http, \
            http.post(url, data=b'{"virtualDiskName": ', headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    assert await _events(gateway_server, "CreateDiskSnapshot") == [
        ("dev", "rest", "ERROR", "INVALID_ARGUMENT")]


async def test_grpc_enum_the_adapter_rejects_is_audited(gateway_server: GatewayServer) -> None:
    async with grpc.aio.insecure_channel(gateway_server.grpc_target) as channel:
        request = operation_service_pb2.ListOperationsRequest()
        request.state = 42  # type: ignore[assignment]  # not a value of Operation.State
        try:
            await operation_service_pb2_grpc.OperationServiceStub(channel).ListOperations(
                request, metadata=(("authorization", f"Bearer {gateway_server.token}"),))
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        else:
            raise AssertionError("an undefined enum value was accepted")
    assert await _events(gateway_server, "ListOperations") == [
        ("dev", "grpc", "ERROR", "INVALID_ARGUMENT")]


async def test_refused_grpc_calls_record_the_request_namespace(gateway_server: GatewayServer) -> None:
    """As the REST door records the path's namespace, the gRPC door records the request's,
    for a missing token and for a request the adapter refuses."""
    async with grpc.aio.insecure_channel(gateway_server.grpc_target) as channel:
        stub = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
        for metadata in ((), (("authorization", f"Bearer {gateway_server.token}"),)):
            request = snapshot_service_pb2.ListDiskSnapshotsRequest(namespace="demo", page_size=-1)
            try:
                await stub.ListDiskSnapshots(request, metadata=metadata)
            except grpc.aio.AioRpcError as err:
                assert err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT)
            else:
                raise AssertionError("the call was not refused")
    async with aiohttp.ClientSession(headers=gateway_server.auth()) as http, \
            http.get(f"{gateway_server.rest_url}/v1/audit/events", params={"action": "ListDiskSnapshots"}) as resp:
        events = [(e["code"], e["namespace"]) for e in (await resp.json())["items"]]
    assert events == [("UNAUTHENTICATED", "demo"), ("INVALID_ARGUMENT", "demo")]
