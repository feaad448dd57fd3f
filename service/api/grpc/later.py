"""RestoreService, CloneService and ExportService: in the contract, not yet in the core.

Each call is authenticated and audited by the facade, then fails UNIMPLEMENTED with a
message naming the method.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.api.grpc.calls import CallRunner, ServicerContext
from service.api.grpc_gen.dvp.snapshots.v1 import (
    clone_service_pb2,
    clone_service_pb2_grpc,
    export_service_pb2,
    export_service_pb2_grpc,
    operation_pb2,
    restore_service_pb2,
    restore_service_pb2_grpc,
)


class RestoreServicer(restore_service_pb2_grpc.RestoreServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls

    async def RestoreDisk(self, request: restore_service_pb2.RestoreDiskRequest,
                          context: ServicerContext) -> operation_pb2.Operation:
        await self._calls.unimplemented(context, "RestoreService", "RestoreDisk")

    async def RestoreVirtualMachine(self, request: restore_service_pb2.RestoreVirtualMachineRequest,
                                    context: ServicerContext) -> operation_pb2.Operation:
        await self._calls.unimplemented(context, "RestoreService", "RestoreVirtualMachine")


class CloneServicer(clone_service_pb2_grpc.CloneServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls

    async def CloneVirtualMachine(self, request: clone_service_pb2.CloneVirtualMachineRequest,
                                  context: ServicerContext) -> operation_pb2.Operation:
        await self._calls.unimplemented(context, "CloneService", "CloneVirtualMachine")

    async def CreateVirtualMachineFromSnapshot(self, request: clone_service_pb2.CreateVirtualMachineFromSnapshotRequest,
                                               context: ServicerContext) -> operation_pb2.Operation:
        await self._calls.unimplemented(context, "CloneService", "CreateVirtualMachineFromSnapshot")


class ExportServicer(export_service_pb2_grpc.ExportServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls

    async def ExportDisk(self, request: export_service_pb2.ExportDiskRequest,
                         context: ServicerContext) -> AsyncIterator[export_service_pb2.ExportChunk]:
        async for never in self._calls.unimplemented_stream(context, "ExportService", "ExportDisk",
                                                            export_service_pb2.ExportChunk):
            yield never

    async def ExportDiskSnapshot(self, request: export_service_pb2.ExportDiskSnapshotRequest,
                                 context: ServicerContext) -> AsyncIterator[export_service_pb2.ExportChunk]:
        async for never in self._calls.unimplemented_stream(context, "ExportService", "ExportDiskSnapshot",
                                                            export_service_pb2.ExportChunk):
            yield never
