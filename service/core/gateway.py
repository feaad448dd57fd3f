"""The Gateway facade: the one thing both adapters call (docs/ARCHITECTURE.md).

Every method authorizes and audits itself (allowed or denied, success or error) and
raises ``ApiError`` for every failure; the use cases behind it assume an allowed caller.
Streaming methods are async generators (an ``AsyncIterator`` with ``aclose()``, so an
adapter can stop a stream at once when its client goes away).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from service.cluster.kinds import VIRTUAL_DISK, VIRTUAL_DISK_SNAPSHOT, VIRTUAL_MACHINE
from service.core import request_checks
from service.core.audit import ANONYMOUS, AuditedCall, AuditRecorder
from service.core.auth import (
    RESOURCE_AUDIT,
    RESOURCE_DISK_SNAPSHOTS,
    RESOURCE_OPERATIONS,
    Authenticator,
    Authorizer,
    bearer_token,
)
from service.core.disk_snapshots import DiskSnapshots
from service.core.domain import (
    AuditEvent,
    AuditEventDraft,
    AuditOutcome,
    AuditVerification,
    Caller,
    DiskSnapshot,
    DiskSnapshotEvent,
    Operation,
    OperationTransition,
    Page,
    RequestContext,
)
from service.core.errors import ApiError, Code, not_found, permission_denied, unauthenticated, unavailable
from service.core.errors import unimplemented as unimplemented_error
from service.core.notifier import NotifyingOperations, OperationNotifier
from service.core.op_updates import OperationWriter
from service.core.operations import Operations
from service.core.ports import (
    AuditRepository,
    ClusterClient,
    Leadership,
    OperationRepository,
    ResourceKind,
    WatchSource,
)
from service.core.reconciler import Reconciler
from service.core.requests import (
    CreateDiskSnapshotRequest,
    DeleteDiskSnapshotRequest,
    ListAuditEventsRequest,
    ListOperationsRequest,
    ListRequest,
)
from service.core.validation import effective_page_size

NIL_OPERATION_ID = str(uuid.UUID(int=0))


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoreSettings:
    default_page_size: int = 50
    max_page_size: int = 500
    # The reconciler's periodic pass over unfinished operations (tests: ~0.2 s).
    resync_interval: float = 30.0
    # A PENDING operation younger than this still belongs to the request creating it.
    pending_grace: float = 10.0
    # WatchOperation re-reads the store at least this often (other replicas' writes).
    operation_poll_interval: float = 1.0
    # Adapters send a keepalive on idle watch streams this often.
    watch_heartbeat: float = 15.0
    # Lease for background work (used by the composition root's LeaderElector).
    lease_name: str = "dvp-snapshot-gateway"
    lease_namespace: str = "default"
    lease_duration: float = 15.0
    lease_renew_interval: float = 5.0
    # check_ready reuses a successful cluster probe for this long.
    ready_cache_seconds: float = 5.0


class Gateway:
    def __init__(self, *, operations: OperationRepository, audit: AuditRepository, cluster: ClusterClient,
                 hub: WatchSource, authenticator: Authenticator, authorizer: Authorizer,
                 settings: CoreSettings = CoreSettings(), leader: Leadership | None = None) -> None:
        self.settings = settings
        self.notifier = OperationNotifier()
        self._operations = NotifyingOperations(operations, self.notifier)
        writer = OperationWriter(self._operations)
        self._audit_repo = audit
        self._audit = AuditRecorder(audit)
        self._cluster = cluster
        self._hub = hub
        self._warmers: list[asyncio.Task[None]] = []
        self._authenticator = authenticator
        self._authorizer = authorizer
        self._disk_snapshots = DiskSnapshots(cluster=cluster, writer=writer, hub=hub,
                                             default_page_size=settings.default_page_size,
                                             max_page_size=settings.max_page_size)
        self._ops = Operations(operations=self._operations, notifier=self.notifier,
                               default_page_size=settings.default_page_size, max_page_size=settings.max_page_size,
                               poll_interval=settings.operation_poll_interval)
        self.reconciler = Reconciler(writer=writer, cluster=cluster, hub=hub, resync_interval=settings.resync_interval,
                                     pending_grace=settings.pending_grace, leader=leader)
        self._cluster_ok_at = -1.0

    async def start(self) -> None:
        await self.reconciler.start()
        # The create path reads disks and VMs from these shared watches' caches instead
        # of a GET each; warming them must not hold up (or fail) the start.
        self._warmers = [asyncio.create_task(self._warm(kind), name=f"warm-{kind.plural}")
                         for kind in (VIRTUAL_DISK, VIRTUAL_MACHINE)]

    async def _warm(self, kind: ResourceKind) -> None:
        try:
            await self._hub.wait_synced(kind)
        except ApiError as exc:
            log.warning("no shared watch for %s (reads go to the cluster): %s", kind.plural, exc.reason)

    async def stop(self) -> None:
        for task in self._warmers:
            task.cancel()
        await asyncio.gather(*self._warmers, return_exceptions=True)
        await self.reconciler.stop()

    # ------------------------------------------------------------ authentication

    async def authenticate(self, authorization: str | None, *, action: str, protocol: str,
                           peer: str = "", request_id: str = "") -> Caller:
        token = bearer_token(authorization)
        try:
            caller = await self._authenticator.authenticate(token) if token else None
        except Exception as exc:
            error = exc if isinstance(exc, ApiError) else unavailable(
                "the token could not be checked", reason="AUTHENTICATION_UNAVAILABLE")
            await self._audit.record(AuditEventDraft(
                actor=ANONYMOUS, action=action, outcome=AuditOutcome.ERROR, protocol=protocol, request_id=request_id,
                code=error.code.value, reason=error.reason, details={"peer": peer}))
            raise error from exc
        if caller is not None:
            return caller
        await self._audit.record(AuditEventDraft(
            actor=ANONYMOUS, action=action, outcome=AuditOutcome.DENIED, protocol=protocol, request_id=request_id,
            code=Code.UNAUTHENTICATED.value, reason="UNAUTHENTICATED",
            details={"peer": peer, "credentials": "invalid" if token else "missing"}))
        raise unauthenticated()

    async def _authorize(self, call: AuditedCall, verb: str, resource: str, namespace: str) -> None:
        """PERMISSION_DENIED (audited as DENIED) unless the policy allows the call. A 403
        from the cluster, by contrast, is the gateway's own failure: audited as ERROR."""
        ctx = call.ctx
        if not await self._authorizer.allowed(ctx.caller, verb=verb, resource=resource, namespace=namespace):
            call.deny()
            where = f"in namespace {namespace!r}" if namespace else "cluster-wide"
            raise permission_denied(f"{ctx.caller.subject!r} may not {verb} {resource} {where}")

    # ------------------------------------------------------------ disk snapshots

    async def create_disk_snapshot(self, ctx: RequestContext, req: CreateDiskSnapshotRequest) -> Operation:
        async with self._audit.call(ctx, "CreateDiskSnapshot", namespace=req.namespace,
                                    resource=_snapshot_resource(req.name)) as call:
            await self._authorize(call, "create", RESOURCE_DISK_SNAPSHOTS, req.namespace)
            call.details = {"virtual_disk_name": req.virtual_disk_name,
                            "required_consistency": req.required_consistency,
                            "idempotency_key": bool(req.request_id)}
            with _operation_id_into(call):
                op = await self._disk_snapshots.create(ctx.caller, req)
            call.operation_id = op.id
            call.resource = _snapshot_resource(op.resource.name if op.resource else req.name)
            return op

    async def get_disk_snapshot(self, ctx: RequestContext, namespace: str, name: str) -> DiskSnapshot:
        async with self._audit.call(ctx, "GetDiskSnapshot", namespace=namespace,
                                    resource=_snapshot_resource(name)) as call:
            await self._authorize(call, "get", RESOURCE_DISK_SNAPSHOTS, namespace)
            return await self._disk_snapshots.get(namespace, name)

    async def list_disk_snapshots(self, ctx: RequestContext, req: ListRequest) -> Page[DiskSnapshot]:
        async with self._audit.call(ctx, "ListDiskSnapshots", namespace=req.namespace,
                                    resource=_snapshot_resource("")) as call:
            await self._authorize(call, "list", RESOURCE_DISK_SNAPSHOTS, req.namespace)
            return await self._disk_snapshots.list_page(req)

    async def delete_disk_snapshot(self, ctx: RequestContext, req: DeleteDiskSnapshotRequest) -> Operation:
        async with self._audit.call(ctx, "DeleteDiskSnapshot", namespace=req.namespace,
                                    resource=_snapshot_resource(req.name)) as call:
            await self._authorize(call, "delete", RESOURCE_DISK_SNAPSHOTS, req.namespace)
            with _operation_id_into(call):
                op = await self._disk_snapshots.delete(ctx.caller, req)
            call.operation_id = op.id
            return op

    async def watch_disk_snapshots(self, ctx: RequestContext, namespace: str,
                                   name: str = "") -> AsyncGenerator[DiskSnapshotEvent, None]:
        async with self._audit.call(ctx, "WatchDiskSnapshots", namespace=namespace,
                                    resource=_snapshot_resource(name)) as call:
            await self._authorize(call, "watch", RESOURCE_DISK_SNAPSHOTS, namespace)
            request_checks.watch_key(namespace, name)
        async for event in self._disk_snapshots.watch(namespace, name):
            yield event

    # ------------------------------------------------------------ operations

    async def get_operation(self, ctx: RequestContext, operation_id: str) -> Operation:
        async with self._audit.call(ctx, "GetOperation", resource=_operation_resource(operation_id)) as call:
            return await self._visible_operation(ctx, call, operation_id)

    async def _visible_operation(self, ctx: RequestContext, call: AuditedCall, operation_id: str) -> Operation:
        """The operation, or NOT_FOUND when it does not exist *or* the caller may not see
        it (no existence oracle); the audit still records the denial."""
        op = await self._ops.find(operation_id)
        call.namespace, call.operation_id = op.namespace, op.id
        try:
            await self._authorize(call, "get", RESOURCE_OPERATIONS, op.namespace)
        except ApiError:
            raise not_found("Operation", operation_id) from None
        return op

    async def list_operations(self, ctx: RequestContext, req: ListOperationsRequest) -> Page[Operation]:
        async with self._audit.call(ctx, "ListOperations", namespace=req.namespace,
                                    resource=_operation_resource("")) as call:
            await self._authorize(call, "list", RESOURCE_OPERATIONS, req.namespace)
            return await self._ops.list_page(req)

    async def get_operation_timeline(self, ctx: RequestContext, operation_id: str) -> list[OperationTransition]:
        async with self._audit.call(ctx, "GetOperationTimeline", resource=_operation_resource(operation_id)) as call:
            op = await self._visible_operation(ctx, call, operation_id)
            return await self._ops.timeline(op.id)

    async def watch_operation(self, ctx: RequestContext, operation_id: str,
                              after_version: int = 0) -> AsyncGenerator[Operation, None]:
        async with self._audit.call(ctx, "WatchOperation", resource=_operation_resource(operation_id)) as call:
            request_checks.watch_operation(operation_id, after_version)
            op = await self._visible_operation(ctx, call, operation_id)
        async for version in self._ops.watch(op.id, after_version):
            yield version

    # ------------------------------------------------------------ audit

    async def list_audit_events(self, ctx: RequestContext, req: ListAuditEventsRequest) -> Page[AuditEvent]:
        async with self._audit.call(ctx, "ListAuditEvents", resource=RESOURCE_AUDIT) as call:
            await self._authorize(call, "list", RESOURCE_AUDIT, "")
            flt = request_checks.audit_filter(req)
            size = effective_page_size(req.page_size, self.settings.default_page_size, self.settings.max_page_size)
            return await self._audit_repo.list_page(flt, size, req.page_token)

    async def export_audit_events(self, ctx: RequestContext,
                                  req: ListAuditEventsRequest) -> AsyncGenerator[AuditEvent, None]:
        async with self._audit.call(ctx, "ExportAuditEvents", resource=RESOURCE_AUDIT) as call:
            await self._authorize(call, "export", RESOURCE_AUDIT, "")
            flt = request_checks.audit_filter(req)
        async for event in self._audit_repo.stream(flt):
            yield event

    async def verify_audit_log(self, ctx: RequestContext) -> AuditVerification:
        async with self._audit.call(ctx, "VerifyAuditLog", resource=RESOURCE_AUDIT) as call:
            await self._authorize(call, "verify", RESOURCE_AUDIT, "")
            return await self._audit_repo.verify()

    # ------------------------------------------------------------ misc

    async def unimplemented(self, ctx: RequestContext, method: str) -> ApiError:
        error = unimplemented_error(method, "planned in a later release")
        await self._audit.record(AuditEventDraft(
            actor=ctx.caller.subject or ANONYMOUS, action=method, outcome=AuditOutcome.ERROR, protocol=ctx.protocol,
            request_id=ctx.request_id, code=error.code.value, reason=error.reason))
        error.audited = True
        return error

    async def record_rejection(self, ctx: RequestContext, action: str, error: ApiError) -> None:
        """Audit a call an adapter refused before it reached a use case (a body or an enum
        value it could not convert): every call, however it ends, is an audit event."""
        if error.audited:
            return
        await self._audit.record(AuditEventDraft(
            actor=ctx.caller.subject or ANONYMOUS, action=action, outcome=AuditOutcome.ERROR, protocol=ctx.protocol,
            request_id=ctx.request_id, code=error.code.value, reason=error.reason))
        error.audited = True

    async def check_ready(self) -> dict[str, bool]:
        return {"database": await self._database_ok(), "cluster": await self._cluster_ok()}

    async def _database_ok(self) -> bool:
        try:
            await self._operations.get(NIL_OPERATION_ID)
        except Exception:
            return False
        return True

    async def _cluster_ok(self) -> bool:
        now = time.monotonic()
        if self._cluster_ok_at >= 0 and now - self._cluster_ok_at < self.settings.ready_cache_seconds:
            return True
        try:
            await self._cluster.list(VIRTUAL_DISK_SNAPSHOT, "", limit=1)
        except ApiError:
            return False
        self._cluster_ok_at = now
        return True


def _snapshot_resource(name: str) -> str:
    return f"{RESOURCE_DISK_SNAPSHOTS}/{name}"


def _operation_resource(operation_id: str) -> str:
    return f"{RESOURCE_OPERATIONS}/{operation_id}"


@contextmanager
def _operation_id_into(call: AuditedCall) -> Iterator[None]:
    """Copy the operation id an error carries (a recorded-but-deferred request) into the audit event."""
    try:
        yield
    except ApiError as exc:
        if exc.metadata.get("operation_id"):
            call.operation_id = exc.metadata["operation_id"]
        raise
