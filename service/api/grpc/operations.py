"""OperationService: the operations every mutating call returns."""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.api.grpc import convert
from service.api.grpc.calls import CallRunner, ServicerContext
from service.api.grpc_gen.dvp.snapshots.v1 import operation_pb2, operation_service_pb2, operation_service_pb2_grpc
from service.core import contract

pb = operation_service_pb2


class OperationServicer(operation_service_pb2_grpc.OperationServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls

    async def GetOperation(self, request: pb.GetOperationRequest,
                           context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, contract.GET_OPERATION, request,
                                       convert.operation_key, convert.operation)

    async def ListOperations(self, request: pb.ListOperationsRequest,
                             context: ServicerContext) -> pb.ListOperationsResponse:
        return await self._calls.unary(context, contract.LIST_OPERATIONS, request,
                                       convert.list_operations_request, convert.operations_page)

    async def WatchOperation(self, request: pb.WatchOperationRequest,
                             context: ServicerContext) -> AsyncIterator[operation_pb2.Operation]:
        async for version in self._calls.stream(context, contract.WATCH_OPERATION, request,
                                                convert.watch_operation_request, convert.operation):
            yield version

    async def GetOperationTimeline(self, request: pb.GetOperationTimelineRequest,
                                   context: ServicerContext) -> pb.GetOperationTimelineResponse:
        return await self._calls.unary(context, contract.GET_OPERATION_TIMELINE, request,
                                       convert.operation_key, convert.operation_timeline)

    async def CancelOperation(self, request: pb.CancelOperationRequest,
                              context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, contract.CANCEL_OPERATION, request,
                                       convert.cancel_operation_request, convert.operation)
