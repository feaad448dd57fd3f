"""SnapshotService: disk snapshots through the facade; VM snapshots are part of the
contract and answered UNIMPLEMENTED (audited) until the core implements them."""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.api.grpc import convert
from service.api.grpc.calls import CallRunner, ServicerContext, then
from service.api.grpc_gen.dvp.snapshots.v1 import operation_pb2, snapshot_service_pb2, snapshot_service_pb2_grpc
from service.core.domain import RequestContext

pb = snapshot_service_pb2
SERVICE = "SnapshotService"


class SnapshotServicer(snapshot_service_pb2_grpc.SnapshotServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls
        self._gateway = calls.gateway

    async def CreateDiskSnapshot(self, request: pb.CreateDiskSnapshotRequest,
                                 context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, "CreateDiskSnapshot", lambda ctx: then(
            self._gateway.create_disk_snapshot(ctx, convert.create_disk_snapshot_request(request)),
            convert.operation))

    async def GetDiskSnapshot(self, request: pb.GetDiskSnapshotRequest,
                              context: ServicerContext) -> pb.DiskSnapshot:
        return await self._calls.unary(context, "GetDiskSnapshot", lambda ctx: then(
            self._gateway.get_disk_snapshot(ctx, request.namespace, request.name), convert.disk_snapshot))

    async def ListDiskSnapshots(self, request: pb.ListDiskSnapshotsRequest,
                                context: ServicerContext) -> pb.ListDiskSnapshotsResponse:
        async def handle(ctx: RequestContext) -> pb.ListDiskSnapshotsResponse:
            page = await self._gateway.list_disk_snapshots(ctx, convert.list_disk_snapshots_request(request))
            return pb.ListDiskSnapshotsResponse(disk_snapshots=[convert.disk_snapshot(s) for s in page.items],
                                                next_page_token=page.next_page_token)
        return await self._calls.unary(context, "ListDiskSnapshots", handle)

    async def DeleteDiskSnapshot(self, request: pb.DeleteDiskSnapshotRequest,
                                 context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, "DeleteDiskSnapshot", lambda ctx: then(
            self._gateway.delete_disk_snapshot(ctx, convert.delete_disk_snapshot_request(request)),
            convert.operation))

    async def WatchDiskSnapshots(self, request: pb.WatchDiskSnapshotsRequest,
                                 context: ServicerContext) -> AsyncIterator[pb.DiskSnapshotEvent]:
        events = self._calls.stream(
            context, "WatchDiskSnapshots",
            lambda ctx: self._gateway.watch_disk_snapshots(ctx, request.namespace, request.name),
            convert.disk_snapshot_event)
        async for event in events:
            yield event

    async def CreateVirtualMachineSnapshot(self, request: pb.CreateVirtualMachineSnapshotRequest,
                                           context: ServicerContext) -> operation_pb2.Operation:
        await self._calls.unimplemented(context, SERVICE, "CreateVirtualMachineSnapshot")

    async def GetVirtualMachineSnapshot(self, request: pb.GetVirtualMachineSnapshotRequest,
                                        context: ServicerContext) -> pb.VirtualMachineSnapshot:
        await self._calls.unimplemented(context, SERVICE, "GetVirtualMachineSnapshot")

    async def ListVirtualMachineSnapshots(self, request: pb.ListVirtualMachineSnapshotsRequest,
                                          context: ServicerContext) -> pb.ListVirtualMachineSnapshotsResponse:
        await self._calls.unimplemented(context, SERVICE, "ListVirtualMachineSnapshots")

    async def DeleteVirtualMachineSnapshot(self, request: pb.DeleteVirtualMachineSnapshotRequest,
                                           context: ServicerContext) -> operation_pb2.Operation:
        await self._calls.unimplemented(context, SERVICE, "DeleteVirtualMachineSnapshot")

    async def WatchVirtualMachineSnapshots(self, request: pb.WatchVirtualMachineSnapshotsRequest,
                                           context: ServicerContext) -> AsyncIterator[pb.VirtualMachineSnapshotEvent]:
        async for never in self._calls.unimplemented_stream(context, SERVICE, "WatchVirtualMachineSnapshots",
                                                            pb.VirtualMachineSnapshotEvent):
            yield never
