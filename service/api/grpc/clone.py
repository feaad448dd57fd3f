"""CloneService: a new VM from a stopped VM, or from a VM snapshot, under new names."""

from __future__ import annotations

from service.api.grpc import convert
from service.api.grpc.calls import CallRunner, ServicerContext
from service.api.grpc_gen.dvp.snapshots.v1 import clone_service_pb2, clone_service_pb2_grpc, operation_pb2
from service.core import contract

pb = clone_service_pb2


class CloneServicer(clone_service_pb2_grpc.CloneServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls

    async def CloneVirtualMachine(self, request: pb.CloneVirtualMachineRequest,
                                  context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, contract.CLONE_VM, request, convert.clone_vm_request,
                                       convert.operation)

    async def CreateVirtualMachineFromSnapshot(self, request: pb.CreateVirtualMachineFromSnapshotRequest,
                                               context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, contract.CREATE_VM_FROM_SNAPSHOT, request,
                                       convert.create_vm_from_snapshot_request, convert.operation)
