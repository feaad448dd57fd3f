"""OperationService: operation history through the facade. CancelOperation is part of
the contract and answered UNIMPLEMENTED (audited) until the core implements it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.api.grpc import convert
from service.api.grpc.calls import CallRunner, ServicerContext, then
from service.api.grpc_gen.dvp.snapshots.v1 import operation_pb2, operation_service_pb2, operation_service_pb2_grpc
from service.core.domain import Operation, OperationTransition, Page

pb = operation_service_pb2
SERVICE = "OperationService"


def _page(page: Page[Operation]) -> pb.ListOperationsResponse:
    return pb.ListOperationsResponse(operations=[convert.operation(op) for op in page.items],
                                     next_page_token=page.next_page_token)


def _timeline(transitions: list[OperationTransition]) -> pb.GetOperationTimelineResponse:
    return pb.GetOperationTimelineResponse(transitions=[convert.operation_transition(t) for t in transitions])


class OperationServicer(operation_service_pb2_grpc.OperationServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls
        self._gateway = calls.gateway

    async def GetOperation(self, request: pb.GetOperationRequest,
                           context: ServicerContext) -> operation_pb2.Operation:
        return await self._calls.unary(context, "GetOperation", lambda ctx: then(
            self._gateway.get_operation(ctx, request.operation_id), convert.operation))

    async def ListOperations(self, request: pb.ListOperationsRequest,
                             context: ServicerContext) -> pb.ListOperationsResponse:
        return await self._calls.unary(context, "ListOperations", lambda ctx: then(
            self._gateway.list_operations(ctx, convert.list_operations_request(request)), _page))

    async def WatchOperation(self, request: pb.WatchOperationRequest,
                             context: ServicerContext) -> AsyncIterator[operation_pb2.Operation]:
        versions = self._calls.stream(
            context, "WatchOperation",
            lambda ctx: self._gateway.watch_operation(ctx, request.operation_id, request.after_version),
            convert.operation)
        async for version in versions:
            yield version

    async def GetOperationTimeline(self, request: pb.GetOperationTimelineRequest,
                                   context: ServicerContext) -> pb.GetOperationTimelineResponse:
        return await self._calls.unary(context, "GetOperationTimeline", lambda ctx: then(
            self._gateway.get_operation_timeline(ctx, request.operation_id), _timeline))

    async def CancelOperation(self, request: pb.CancelOperationRequest,
                              context: ServicerContext) -> operation_pb2.Operation:
        await self._calls.unimplemented(context, SERVICE, "CancelOperation")
