"""ExportService: the bytes of a disk or a disk snapshot as a server stream (the core's
``exports`` capability): metadata, then data and holes in offset order, then a summary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from service.api.grpc import convert
from service.api.grpc.calls import CallRunner, ServicerContext
from service.api.grpc_gen.dvp.snapshots.v1 import export_service_pb2, export_service_pb2_grpc
from service.core import contract
from service.core.domain import ExportData, ExportHole, ExportItem
from service.observability.telemetry import Telemetry

pb = export_service_pb2


class ExportServicer(export_service_pb2_grpc.ExportServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls
        self._disk = _counted(calls.telemetry, "disk")
        self._disk_snapshot = _counted(calls.telemetry, "disk-snapshot")

    async def ExportDisk(self, request: pb.ExportDiskRequest,
                         context: ServicerContext) -> AsyncIterator[pb.ExportChunk]:
        async for chunk in self._calls.stream(context, contract.EXPORT_DISK, request,
                                              convert.export_request, self._disk):
            yield chunk

    async def ExportDiskSnapshot(self, request: pb.ExportDiskSnapshotRequest,
                                 context: ServicerContext) -> AsyncIterator[pb.ExportChunk]:
        async for chunk in self._calls.stream(context, contract.EXPORT_DISK_SNAPSHOT, request,
                                              convert.export_request, self._disk_snapshot):
            yield chunk


def _counted(telemetry: Telemetry, kind: str) -> Callable[[ExportItem], pb.ExportChunk]:
    """``convert.export_chunk``, counting the image's bytes each chunk carries (a hole's
    length too: the export metric counts the image, whichever way it travels)."""
    def reply(item: ExportItem) -> pb.ExportChunk:
        if isinstance(item, ExportData):
            telemetry.exported(kind, "grpc", len(item.data))
        elif isinstance(item, ExportHole):
            telemetry.exported(kind, "grpc", item.length)
        return convert.export_chunk(item)
    return reply
