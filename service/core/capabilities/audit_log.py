"""The audit log, for auditors: list (keyset pages), export (a stream), verify the chain
(one answer, or a stream of progress steps ending with the answer)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from service.core import contract, request_checks
from service.core.capabilities.registry import Call, Deps, Registry
from service.core.domain import AuditEvent, AuditVerification, AuditVerificationProgress, Page
from service.core.ports import AuditRepository
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

    async def verify_stream(call: Call, req: VerifyAuditLogRequest) -> AsyncIterator[AuditVerificationProgress]:
        return verification_steps(deps.audit)

    registry.on(contract.LIST_AUDIT_EVENTS, list_page)
    registry.on_stream(contract.EXPORT_AUDIT_EVENTS, export)
    registry.on(contract.VERIFY_AUDIT_LOG, verify)
    registry.on_stream(contract.VERIFY_AUDIT_LOG_STREAM, verify_stream)


async def verification_steps(audit: AuditRepository) -> AsyncIterator[AuditVerificationProgress]:
    """The verification's progress after each batch, then its result. The verification
    waits while a step is not yet taken (a slow reader paces it: nothing piles up), and
    stops when the reader goes away."""
    steps: asyncio.Queue[AuditVerificationProgress] = asyncio.Queue(maxsize=1)

    async def progress(checked: int, total: int) -> None:
        await steps.put(AuditVerificationProgress(checked, total))

    verifying = asyncio.create_task(audit.verify(progress), name="audit-verify")
    total = 0
    try:
        while True:
            step = asyncio.ensure_future(steps.get())
            await asyncio.wait({step, verifying}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                break
            total = step.result().total
            yield step.result()
        while not steps.empty():
            total = steps.get_nowait().total  # taken: a step the result makes redundant
        result = verifying.result()  # raises what the verification raised
        yield AuditVerificationProgress(result.checked, max(total, result.checked), result)
    finally:
        verifying.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await verifying
