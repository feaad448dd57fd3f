"""What both doors (gRPC and REST) call: ``service.core.gateway.Gateway``'s public methods.

A Protocol rather than the class itself, so each adapter depends on the documented
contract only and can be exercised against any implementation with the same signatures
(the real ``Gateway`` satisfies it structurally; mypy checks that in ``service/app.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from service.core.domain import (
    AuditEvent,
    AuditVerification,
    Caller,
    DiskSnapshot,
    DiskSnapshotEvent,
    Operation,
    OperationTransition,
    Page,
    RequestContext,
)
from service.core.errors import ApiError
from service.core.requests import (
    CreateDiskSnapshotRequest,
    DeleteDiskSnapshotRequest,
    ListAuditEventsRequest,
    ListOperationsRequest,
    ListRequest,
)


class GatewayFacade(Protocol):
    async def authenticate(self, authorization: str | None, *, action: str, protocol: str,
                           peer: str = "", request_id: str = "") -> Caller: ...

    async def create_disk_snapshot(self, ctx: RequestContext, req: CreateDiskSnapshotRequest) -> Operation: ...

    async def get_disk_snapshot(self, ctx: RequestContext, namespace: str, name: str) -> DiskSnapshot: ...

    async def list_disk_snapshots(self, ctx: RequestContext, req: ListRequest) -> Page[DiskSnapshot]: ...

    async def delete_disk_snapshot(self, ctx: RequestContext, req: DeleteDiskSnapshotRequest) -> Operation: ...

    def watch_disk_snapshots(self, ctx: RequestContext, namespace: str,
                             name: str = "") -> AsyncIterator[DiskSnapshotEvent]: ...

    async def get_operation(self, ctx: RequestContext, operation_id: str) -> Operation: ...

    async def list_operations(self, ctx: RequestContext, req: ListOperationsRequest) -> Page[Operation]: ...

    async def get_operation_timeline(self, ctx: RequestContext, operation_id: str) -> list[OperationTransition]: ...

    def watch_operation(self, ctx: RequestContext, operation_id: str,
                        after_version: int = 0) -> AsyncIterator[Operation]: ...

    async def list_audit_events(self, ctx: RequestContext, req: ListAuditEventsRequest) -> Page[AuditEvent]: ...

    def export_audit_events(self, ctx: RequestContext, req: ListAuditEventsRequest) -> AsyncIterator[AuditEvent]: ...

    async def verify_audit_log(self, ctx: RequestContext) -> AuditVerification: ...

    async def unimplemented(self, ctx: RequestContext, method: str) -> ApiError: ...

    async def record_rejection(self, ctx: RequestContext, action: str, error: ApiError) -> None: ...

    async def check_ready(self) -> dict[str, bool]: ...
