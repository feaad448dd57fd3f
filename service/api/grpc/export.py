"""ExportService: the bytes of a disk or a disk snapshot as a server stream (the core's
``exports`` capability): metadata, then data and holes in offset order, then a summary."""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.api.grpc import convert
from service.api.grpc.calls import CallRunner, ServicerContext
from service.api.grpc_gen.dvp.snapshots.v1 import export_service_pb2, export_service_pb2_grpc
from service.core import contract

pb = export_service_pb2


class ExportServicer(export_service_pb2_grpc.ExportServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls

    async def ExportDisk(self, request: pb.ExportDiskRequest,
                         context: ServicerContext) -> AsyncIterator[pb.ExportChunk]:
        async for chunk in self._calls.stream(context, contract.EXPORT_DISK, request,
                                              convert.export_request, convert.export_chunk):
            yield chunk

    async def ExportDiskSnapshot(self, request: pb.ExportDiskSnapshotRequest,
                                 context: ServicerContext) -> AsyncIterator[pb.ExportChunk]:
        async for chunk in self._calls.stream(context, contract.EXPORT_DISK_SNAPSHOT, request,
                                              convert.export_request, convert.export_chunk):
            yield chunk
