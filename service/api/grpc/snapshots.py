"""SnapshotService: disk and VM snapshots, one contract method per RPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.api.grpc import convert
from service.api.grpc.calls import CallRunner, ServicerContext
from service.api.grpc_gen.dvp.snapshots.v1 import operation_pb2, snapshot_service_pb2, snapshot_service_pb2_grpc
from service.core import contract
from service.core.domain import DiskSnapshotEvent, VirtualMachineSnapshotEvent
from service.core.fanout import OncePer

pb = snapshot_service_pb2

# Watch events are the same object for every subscriber (service.core.fanout): serialized
# once, and the bytes go to every stream (handlers pass bytes through).
_disk_snapshot_event: OncePer[DiskSnapshotEvent, bytes] = OncePer("grpc:DiskSnapshotEvent",
                               lambda e: convert.disk_snapshot_event(e).SerializeToString())
_vm_snapshot_event: OncePer[VirtualMachineSnapshotEvent, bytes] = OncePer("grpc:VirtualMachineSnapshotEvent",
                             lambda e: convert.vm_snapshot_event(e).SerializeToString())


class SnapshotServicer(snapshot_service_pb2_grpc.SnapshotServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls

    # ------------------------------------------------------------ disk snapshots

    async def CreateDiskSnapshot(self, request: pb.CreateDiskSnapshotRequest,
                                 context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, contract.CREATE_DISK_SNAPSHOT, request,
                                       convert.create_disk_snapshot_request, convert.operation)

    async def GetDiskSnapshot(self, request: pb.GetDiskSnapshotRequest,
                              context: ServicerContext) -> pb.DiskSnapshot:
        return await self._calls.unary(context, contract.GET_DISK_SNAPSHOT, request,
                                       convert.object_key, convert.disk_snapshot)

    async def ListDiskSnapshots(self, request: pb.ListDiskSnapshotsRequest,
                                context: ServicerContext) -> pb.ListDiskSnapshotsResponse:
        return await self._calls.unary(context, contract.LIST_DISK_SNAPSHOTS, request,
                                       convert.list_request, convert.disk_snapshots_page)

    async def DeleteDiskSnapshot(self, request: pb.DeleteDiskSnapshotRequest,
                                 context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, contract.DELETE_DISK_SNAPSHOT, request,
                                       convert.delete_disk_snapshot_request, convert.operation)

    async def WatchDiskSnapshots(self, request: pb.WatchDiskSnapshotsRequest,  # type: ignore[override]
                                 context: ServicerContext) -> AsyncIterator[bytes]:
        """Serialized DiskSnapshotEvent messages (shared by every watcher)."""
        async for event in self._calls.stream(context, contract.WATCH_DISK_SNAPSHOTS, request,
                                              convert.watch_request, _disk_snapshot_event):
            yield event

    # ------------------------------------------------------------ VM snapshots

    async def CreateVirtualMachineSnapshot(self, request: pb.CreateVirtualMachineSnapshotRequest,
                                           context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, contract.CREATE_VM_SNAPSHOT, request,
                                       convert.create_vm_snapshot_request, convert.operation)

    async def GetVirtualMachineSnapshot(self, request: pb.GetVirtualMachineSnapshotRequest,
                                        context: ServicerContext) -> pb.VirtualMachineSnapshot:
        return await self._calls.unary(context, contract.GET_VM_SNAPSHOT, request,
                                       convert.object_key, convert.vm_snapshot)

    async def ListVirtualMachineSnapshots(self, request: pb.ListVirtualMachineSnapshotsRequest,
                                          context: ServicerContext) -> pb.ListVirtualMachineSnapshotsResponse:
        return await self._calls.unary(context, contract.LIST_VM_SNAPSHOTS, request,
                                       convert.list_request, convert.vm_snapshots_page)

    async def DeleteVirtualMachineSnapshot(self, request: pb.DeleteVirtualMachineSnapshotRequest,
                                           context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, contract.DELETE_VM_SNAPSHOT, request,
                                       convert.delete_vm_snapshot_request, convert.operation)

    async def WatchVirtualMachineSnapshots(self, request: pb.WatchVirtualMachineSnapshotsRequest,  # type: ignore[override]
                                           context: ServicerContext) -> AsyncIterator[bytes]:
        """Serialized VirtualMachineSnapshotEvent messages (shared by every watcher)."""
        async for event in self._calls.stream(context, contract.WATCH_VM_SNAPSHOTS, request,
                                              convert.watch_request, _vm_snapshot_event):
            yield event
