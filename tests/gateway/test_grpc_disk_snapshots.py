"""Disk snapshots end to end over gRPC: a real channel to the whole gateway (real core,
real database, the embedded cluster over HTTP), via the ``gateway_server`` fixture."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    common_pb2,
    export_service_pb2,
    export_service_pb2_grpc,
    operation_pb2,
    operation_service_pb2,
    operation_service_pb2_grpc,
    snapshot_service_pb2,
    snapshot_service_pb2_grpc,
)
from service.core.errors import ERROR_DOMAIN

SNAPSHOT = "linux-vm-root-snapshot"
DISK = "linux-vm-root"


class Client:
    def __init__(self, channel: grpc.aio.Channel, token: str, namespace: str) -> None:
        self.channel = channel
        self.auth = (("authorization", f"Bearer {token}"),)
        self.namespace = namespace
        self.snapshots = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
        self.operations = operation_service_pb2_grpc.OperationServiceStub(channel)

    async def create(self, name: str = SNAPSHOT, **fields: Any) -> operation_pb2.Operation:
        fields.setdefault("virtual_disk_name", DISK)
        return await self.snapshots.CreateDiskSnapshot(snapshot_service_pb2.CreateDiskSnapshotRequest(
            namespace=self.namespace, name=name, **fields), metadata=self.auth, timeout=10)

    async def wait_done(self, operation_id: str) -> operation_pb2.Operation:
        last = None
        async with asyncio.timeout(20):
            async for version in self.operations.WatchOperation(
                    operation_service_pb2.WatchOperationRequest(operation_id=operation_id), metadata=self.auth):
                last = version
        assert last is not None and last.done, last
        return last


@pytest.fixture
async def client(gateway_server: Any) -> AsyncIterator[Client]:
    async with grpc.aio.insecure_channel(gateway_server.grpc_target) as channel:
        yield Client(channel, gateway_server.token, gateway_server.namespace)


def _details(err: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.BadRequest]:
    status = rpc_status.from_call(err)
    assert status is not None
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for packed in status.details:
        if packed.Is(info.DESCRIPTOR):
            packed.Unpack(info)
        elif packed.Is(bad.DESCRIPTOR):
            packed.Unpack(bad)
    assert info.domain == ERROR_DOMAIN
    return info, bad


async def _watch(client: Client, ready: asyncio.Event, added_and_modified: asyncio.Event) -> None:
    """Sets ``added_and_modified`` once SNAPSHOT was seen both ADDED and MODIFIED."""
    call = client.snapshots.WatchDiskSnapshots(
        snapshot_service_pb2.WatchDiskSnapshotsRequest(namespace=client.namespace), metadata=client.auth)
    await call.initial_metadata()
    ready.set()
    types: set[int] = set()
    async for event in call:
        if event.snapshot.name == SNAPSHOT:
            types.add(event.type)
        if {common_pb2.ADDED, common_pb2.MODIFIED} <= types:
            added_and_modified.set()


async def test_create_watch_get_list_delete(client: Client) -> None:
    watching, seen_both = asyncio.Event(), asyncio.Event()
    watcher = asyncio.create_task(_watch(client, watching, seen_both))
    try:
        await asyncio.wait_for(watching.wait(), 10)
        op = await client.create()
        assert op.id and op.type == operation_pb2.Operation.CREATE_DISK_SNAPSHOT
        assert op.state in (operation_pb2.Operation.PENDING, operation_pb2.Operation.RUNNING)
        assert op.target.kind == "VirtualDisk" and op.target.name == DISK and op.actor

        done = await client.wait_done(op.id)
        assert done.state == operation_pb2.Operation.SUCCEEDED, done
        assert done.resource.kind == "VirtualDiskSnapshot" and done.resource.name == SNAPSHOT
        assert done.resource.uid and done.HasField("end_time")

        snap = await client.snapshots.GetDiskSnapshot(
            snapshot_service_pb2.GetDiskSnapshotRequest(namespace=client.namespace, name=SNAPSHOT),
            metadata=client.auth)
        assert (snap.phase, snap.virtual_disk_name, snap.operation_id) == ("Ready", DISK, op.id)
        assert snap.required_consistency and snap.HasField("consistent")

        await asyncio.wait_for(seen_both.wait(), 10)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

    await client.create("second-snapshot")
    names: list[str] = []
    token = ""
    for _ in range(10):
        page = await client.snapshots.ListDiskSnapshots(snapshot_service_pb2.ListDiskSnapshotsRequest(
            namespace=client.namespace, page_size=1, page_token=token), metadata=client.auth)
        assert len(page.disk_snapshots) <= 1
        names += [s.name for s in page.disk_snapshots]
        token = page.next_page_token
        if not token:
            break
    assert sorted(names) == ["linux-vm-root-snapshot", "second-snapshot"]

    deleted = await client.snapshots.DeleteDiskSnapshot(snapshot_service_pb2.DeleteDiskSnapshotRequest(
        namespace=client.namespace, name=SNAPSHOT), metadata=client.auth)
    assert deleted.type == operation_pb2.Operation.DELETE_DISK_SNAPSHOT
    assert (await client.wait_done(deleted.id)).state == operation_pb2.Operation.SUCCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await client.snapshots.GetDiskSnapshot(
            snapshot_service_pb2.GetDiskSnapshotRequest(namespace=client.namespace, name=SNAPSHOT),
            metadata=client.auth)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_request_id_replay_and_reuse(client: Client) -> None:
    first = await client.create("replayed", request_id="idem-1")
    again = await client.create("replayed", request_id="idem-1")
    assert again.id == first.id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.create("replayed", request_id="idem-1", required_consistency=False)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    info, _ = _details(caught.value)
    assert info.reason == "IDEMPOTENCY_KEY_REUSED"


async def test_caller_errors_are_mapped(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad_name:
        await client.create("Bad_Name!")
    assert bad_name.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, bad = _details(bad_name.value)
    assert "name" in [v.field for v in bad.field_violations]

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await client.create("of-a-missing-disk", virtual_disk_name="no-such-disk")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await client.snapshots.GetDiskSnapshot(
            snapshot_service_pb2.GetDiskSnapshotRequest(namespace=client.namespace, name=SNAPSHOT))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    info, _ = _details(anonymous.value)
    assert info.reason == "UNAUTHENTICATED"

    export = export_service_pb2_grpc.ExportServiceStub(client.channel)
    with pytest.raises(grpc.aio.AioRpcError) as in_use:
        async for _ in export.ExportDisk(export_service_pb2.ExportDiskRequest(
                namespace=client.namespace, name=DISK), metadata=client.auth):
            pass
    assert in_use.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, _ = _details(in_use.value)
    assert info.reason == "DISK_IN_USE"


async def test_operation_history_and_audit(client: Client) -> None:
    op = await client.create(request_id="history-1")
    assert (await client.wait_done(op.id)).state == operation_pb2.Operation.SUCCEEDED

    timeline = await client.operations.GetOperationTimeline(
        operation_service_pb2.GetOperationTimelineRequest(operation_id=op.id), metadata=client.auth)
    states = [t.state for t in timeline.transitions]
    assert states[0] == operation_pb2.Operation.PENDING and states[-1] == operation_pb2.Operation.SUCCEEDED
    assert [t.seq for t in timeline.transitions] == sorted(t.seq for t in timeline.transitions)

    listed = await client.operations.ListOperations(operation_service_pb2.ListOperationsRequest(
        namespace=client.namespace, state=operation_pb2.Operation.SUCCEEDED), metadata=client.auth)
    assert op.id in [o.id for o in listed.operations]

    audit = audit_service_pb2_grpc.AuditServiceStub(client.channel)
    events = await audit.ListAuditEvents(audit_service_pb2.ListAuditEventsRequest(
        action="CreateDiskSnapshot", outcome=audit_service_pb2.AuditEvent.SUCCESS), metadata=client.auth)
    mine = [e for e in events.audit_events if e.operation_id == op.id]
    assert mine and mine[0].protocol == "grpc" and mine[0].namespace == client.namespace
    exported = [e.id async for e in audit.ExportAuditEvents(audit_service_pb2.ExportAuditEventsRequest(),
                                                             metadata=client.auth)]
    assert exported == sorted(exported) and mine[0].id in exported
    verdict = await audit.VerifyAuditLog(audit_service_pb2.VerifyAuditLogRequest(), metadata=client.auth)
    assert verdict.ok and verdict.checked >= len(exported)
