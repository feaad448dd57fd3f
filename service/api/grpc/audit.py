"""AuditService: the audit log through the facade."""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.api.grpc import convert
from service.api.grpc.calls import CallRunner, ServicerContext
from service.api.grpc_gen.dvp.snapshots.v1 import audit_service_pb2, audit_service_pb2_grpc
from service.core import contract

pb = audit_service_pb2


class AuditServicer(audit_service_pb2_grpc.AuditServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls

    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest,
                              context: ServicerContext) -> pb.ListAuditEventsResponse:
        return await self._calls.unary(context, contract.LIST_AUDIT_EVENTS, request,
                                       convert.list_audit_events_request, convert.audit_events_page)

    async def ExportAuditEvents(self, request: pb.ExportAuditEventsRequest,
                                context: ServicerContext) -> AsyncIterator[pb.AuditEvent]:
        async for event in self._calls.stream(context, contract.EXPORT_AUDIT_EVENTS, request,
                                              convert.list_audit_events_request, convert.audit_event):
            yield event

    async def VerifyAuditLog(self, request: pb.VerifyAuditLogRequest,
                             context: ServicerContext) -> pb.VerifyAuditLogResponse:
        return await self._calls.unary(context, contract.VERIFY_AUDIT_LOG, request,
                                       convert.verify_audit_log_request, convert.audit_verification)

    async def VerifyAuditLogStream(self, request: pb.VerifyAuditLogRequest,
                                   context: ServicerContext) -> AsyncIterator[pb.VerifyAuditLogProgress]:
        async for step in self._calls.stream(context, contract.VERIFY_AUDIT_LOG_STREAM, request,
                                             convert.verify_audit_log_request, convert.audit_verification_progress):
            yield step
