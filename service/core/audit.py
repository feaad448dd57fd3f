"""The audit recorder every facade method goes through.

Design choice: the audit log is part of the call. If the event cannot be written the
call fails UNAVAILABLE (reason AUDIT_UNAVAILABLE) even when its work succeeded, so an
auditor can trust that nothing happened unrecorded. Mutations stay safe to retry: the
caller replays with the same request_id and gets the same operation back.

Events carry who, what, where and how it ended; never tokens, headers or request
bodies (only the operation id that leads to the stored request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from service.core.domain import AuditEventDraft, AuditOutcome, Operation, RequestContext
from service.core.errors import ApiError, Code, unavailable
from service.core.ports import AuditRepository

log = logging.getLogger(__name__)

ANONYMOUS = "system:anonymous"


def internal_error() -> ApiError:
    return ApiError(Code.INTERNAL, "INTERNAL", "the gateway failed unexpectedly; the failure was logged")


class AuditRecorder:
    def __init__(self, repo: AuditRepository) -> None:
        self._repo = repo

    async def record(self, draft: AuditEventDraft) -> None:
        try:
            await self._repo.append(draft)
        except Exception as exc:
            log.error("audit write failed", extra={"action": draft.action, "error_type": type(exc).__name__})
            raise unavailable("the audit log cannot be written; the call was refused so that every call "
                              "stays recorded", reason="AUDIT_UNAVAILABLE") from exc

    def call(self, ctx: RequestContext, action: str, *, namespace: str = "", resource: str = "") -> AuditedCall:
        return AuditedCall(self, ctx, action, namespace, resource)


class AuditedCall:
    """``async with recorder.call(ctx, "GetOperation", ...) as call:`` records one event on
    exit: SUCCESS, DENIED (UNAUTHENTICATED, or the gateway's policy refused: ``call.deny()``)
    or ERROR (a PERMISSION_DENIED the *cluster* answered is the gateway's failure, not a denial).
    Unexpected exceptions become INTERNAL ``ApiError``s (logged, not leaked)."""

    def __init__(self, recorder: AuditRecorder, ctx: RequestContext, action: str, namespace: str,
                 resource: str) -> None:
        self._recorder = recorder
        self.ctx = ctx
        self.action = action
        self.namespace = namespace
        self.resource = resource
        self.operation_id = ""
        self.details: dict[str, Any] = {}
        self._denied = False
        # The method's audit resource for a name (set by the gateway from the contract table).
        self.resource_for: Callable[[str], str] = lambda name: name
        self._written = False  # written with the write-ahead operation row (``accepted``)

    def deny(self) -> None:
        """Mark the call as denied even though the caller sees another error (a hidden
        operation answers NOT_FOUND, but the auditor must see the denial)."""
        self._denied = True

    def accepted(self, op: Operation) -> AuditEventDraft:
        """The call's event as it is written in the same transaction as ``op``'s
        write-ahead row: SUCCESS, the request is recorded as that operation. Call
        ``written()`` once that transaction has committed."""
        self.operation_id = op.id
        if op.resource is not None:
            self.resource = self.resource_for(op.resource.name)
        return self._draft(AuditOutcome.SUCCESS)

    def written(self) -> None:
        self._written = True

    async def __aenter__(self) -> AuditedCall:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is None:
            if not self._written:
                await self._write(AuditOutcome.DENIED if self._denied else AuditOutcome.SUCCESS)
            return
        # From here the call fails. If its acceptance was already written with the
        # operation row, this second event records how the call itself ended.
        if isinstance(exc, ApiError):
            denied = self._denied or exc.code is Code.UNAUTHENTICATED
            await self._write(AuditOutcome.DENIED if denied else AuditOutcome.ERROR, exc.code, exc.reason)
            exc.audited = True
            return
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            await self._write(AuditOutcome.ERROR, "CANCELLED", "CLIENT_CANCELLED")
            return
        if isinstance(exc, Exception):
            log.exception("unexpected failure in %s", self.action, exc_info=exc)
            await self._write(AuditOutcome.ERROR, Code.INTERNAL, "INTERNAL")
            error = internal_error()
            error.audited = True
            raise error from exc

    async def _write(self, outcome: AuditOutcome, code: str = "", reason: str = "") -> None:
        await self._recorder.record(self._draft(outcome, code, reason))

    def _draft(self, outcome: AuditOutcome, code: str = "", reason: str = "") -> AuditEventDraft:
        return AuditEventDraft(
            actor=self.ctx.caller.subject or ANONYMOUS, action=self.action, outcome=outcome,
            namespace=self.namespace, resource=self.resource, protocol=self.ctx.protocol,
            request_id=self.ctx.request_id, operation_id=self.operation_id, code=str(code), reason=reason,
            details=dict(self.details),
        )
