"""ExportService. The core does not implement exports yet: the calls reach it with no
request and it answers UNIMPLEMENTED (authenticated and audited like any call)."""

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
                                              convert.no_request, convert.export_chunk):
            yield chunk

    async def ExportDiskSnapshot(self, request: pb.ExportDiskSnapshotRequest,
                                 context: ServicerContext) -> AsyncIterator[pb.ExportChunk]:
        async for chunk in self._calls.stream(context, contract.EXPORT_DISK_SNAPSHOT, request,
                                              convert.no_request, convert.export_chunk):
            yield chunk
