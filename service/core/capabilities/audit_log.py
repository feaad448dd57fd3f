"""The audit log, for auditors: list (keyset pages), export (a stream), verify the chain."""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.core import contract, request_checks
from service.core.capabilities.registry import Call, Deps, Registry
from service.core.domain import AuditEvent, AuditVerification, Page
from service.core.requests import ListAuditEventsRequest, VerifyAuditLogRequest
from service.core.validation import effective_page_size


def register(registry: Registry, deps: Deps) -> None:
    async def list_page(call: Call, req: ListAuditEventsRequest) -> Page[AuditEvent]:
        flt = request_checks.audit_filter(req)
        size = effective_page_size(req.page_size, deps.default_page_size, deps.max_page_size)
        return await deps.audit.list_page(flt, size, req.page_token)

    async def export(call: Call, req: ListAuditEventsRequest) -> AsyncIterator[AuditEvent]:
        return deps.audit.stream(request_checks.audit_filter(req))

    async def verify(call: Call, req: VerifyAuditLogRequest) -> AuditVerification:
        return await deps.audit.verify()

    registry.on(contract.LIST_AUDIT_EVENTS, list_page)
    registry.on_stream(contract.EXPORT_AUDIT_EVENTS, export)
    registry.on(contract.VERIFY_AUDIT_LOG, verify)
