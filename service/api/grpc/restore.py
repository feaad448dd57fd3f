"""RestoreService: a new disk from a disk snapshot, a VM in place from a VM snapshot."""

from __future__ import annotations

from service.api.grpc import convert
from service.api.grpc.calls import CallRunner, ServicerContext
from service.api.grpc_gen.dvp.snapshots.v1 import operation_pb2, restore_service_pb2, restore_service_pb2_grpc
from service.core import contract

pb = restore_service_pb2


class RestoreServicer(restore_service_pb2_grpc.RestoreServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls

    async def RestoreDisk(self, request: pb.RestoreDiskRequest, context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, contract.RESTORE_DISK, request,
                                       convert.restore_disk_request, convert.operation)

    async def RestoreVirtualMachine(self, request: pb.RestoreVirtualMachineRequest,
                                    context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, contract.RESTORE_VM, request,
                                       convert.restore_vm_request, convert.operation)
