"""AuditService: the audit log through the facade."""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.api.grpc import convert
from service.api.grpc.calls import CallRunner, ServicerContext, then
from service.api.grpc_gen.dvp.snapshots.v1 import audit_service_pb2, audit_service_pb2_grpc
from service.core.domain import AuditEvent, Page

pb = audit_service_pb2


def _page(page: Page[AuditEvent]) -> pb.ListAuditEventsResponse:
    return pb.ListAuditEventsResponse(audit_events=[convert.audit_event(e) for e in page.items],
                                      next_page_token=page.next_page_token)


class AuditServicer(audit_service_pb2_grpc.AuditServiceServicer):
    def __init__(self, calls: CallRunner) -> None:
        self._calls = calls
        self._gateway = calls.gateway

    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest,
                              context: ServicerContext) -> pb.ListAuditEventsResponse:
        return await self._calls.unary(context, "ListAuditEvents", lambda ctx: then(
            self._gateway.list_audit_events(ctx, convert.list_audit_events_request(request)), _page))

    async def ExportAuditEvents(self, request: pb.ExportAuditEventsRequest,
                                context: ServicerContext) -> AsyncIterator[pb.AuditEvent]:
        events = self._calls.stream(
            context, "ExportAuditEvents",
            lambda ctx: self._gateway.export_audit_events(ctx, convert.list_audit_events_request(request)),
            convert.audit_event)
        async for event in events:
            yield event

    async def VerifyAuditLog(self, request: pb.VerifyAuditLogRequest,
                             context: ServicerContext) -> pb.VerifyAuditLogResponse:
        return await self._calls.unary(context, "VerifyAuditLog", lambda ctx: then(
            self._gateway.verify_audit_log(ctx), convert.audit_verification))
