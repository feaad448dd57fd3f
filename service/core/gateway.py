"""The Gateway facade: the one thing both adapters call (docs/ARCHITECTURE.md).

``call`` and ``stream`` run every contract method the same way: one audit event
(allowed, denied or failed), the table's authorization (``service.core.contract``), then
the use case a capability registered (``service.core.capabilities``). Every failure is an
``ApiError``. Streams are async generators (``aclose()`` stops them at once when the
client goes away).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from service.cluster.kinds import VIRTUAL_DISK, VIRTUAL_DISK_SNAPSHOT, VIRTUAL_MACHINE
from service.core.audit import ANONYMOUS, AuditedCall, AuditRecorder
from service.core.auth import Authenticator, Authorizer, bearer_token
from service.core.capabilities import build_registry
from service.core.capabilities.flows import WriteAhead
from service.core.capabilities.registry import Deps
from service.core.capabilities.shape import Reads
from service.core.contract import Method
from service.core.domain import AuditEventDraft, AuditOutcome, Caller, Operation, RequestContext
from service.core.errors import ApiError, Code, permission_denied, unauthenticated, unavailable
from service.core.errors import unimplemented as unimplemented_error
from service.core.export_settings import ExportSettings
from service.core.notifier import NotifyingOperations, OperationNotifier
from service.core.op_updates import OperationWriter
from service.core.page_tokens import PageTokens
from service.core.ports import (
    AuditRepository,
    BlockReader,
    ClusterClient,
    Leadership,
    OperationRepository,
    ResourceKind,
    WatchSource,
)
from service.core.reconciler import Reconciler
from service.core.slots import CallerSlots

NIL_OPERATION_ID = str(uuid.UUID(int=0))
Req = TypeVar("Req")
Res = TypeVar("Res")

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
    # Lease for background work (used by the composition root's LeaderElector).
    lease_name: str = "dvp-snapshot-gateway"
    lease_namespace: str = "default"
    lease_duration: float = 15.0
    lease_renew_interval: float = 2.0   # client-go's retryPeriod for a 15 s lease
    # check_ready reuses a successful cluster probe for this long.
    ready_cache_seconds: float = 5.0
    # Open streams (watches, audit exports, disk exports) one caller may hold, and all of them.
    max_streams_per_caller: int = 64
    max_streams: int = 10_000
    export: ExportSettings = field(default_factory=ExportSettings)


class Gateway:
    def __init__(self, *, operations: OperationRepository, audit: AuditRepository, cluster: ClusterClient,
                 hub: WatchSource, authenticator: Authenticator, authorizer: Authorizer, page_tokens: PageTokens,
                 settings: CoreSettings = CoreSettings(), leader: Leadership | None = None,
                 blocks: BlockReader | None = None) -> None:
        self.settings = settings
        self.notifier = OperationNotifier()
        self._operations = NotifyingOperations(operations, self.notifier)
        writer = OperationWriter(self._operations)
        self._audit = AuditRecorder(audit)
        self._cluster = cluster
        self._hub = hub
        self._warmers: list[asyncio.Task[None]] = []
        self._authenticator = authenticator
        self._authorizer = authorizer
        reads = Reads(cluster, hub)
        flows = WriteAhead(writer=writer, reads=reads)
        self.registry = build_registry(Deps(
            cluster=cluster, hub=hub, writer=writer, operations=self._operations, audit=audit,
            notifier=self.notifier, reads=reads, flows=flows, default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size, operation_poll_interval=settings.operation_poll_interval,
            page_tokens=page_tokens, blocks=blocks, export_settings=settings.export))
        self.reconciler = Reconciler(writer=writer, flows=flows, registry=self.registry, hub=hub,
                                     resync_interval=settings.resync_interval, pending_grace=settings.pending_grace,
                                     leader=leader)
        self._cluster_ok_at = -1.0
        self._streams = CallerSlots(total=settings.max_streams, per_caller=settings.max_streams_per_caller,
                                    what="streams", reason="TOO_MANY_STREAMS", retry_after_seconds=5)

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
        for close in self.registry.closers:
            await close()

    # ------------------------------------------------------------ authentication

    async def authenticate(self, authorization: str | None, *, action: str, protocol: str,
                           peer: str = "", request_id: str = "", namespace: str = "") -> Caller:
        token = bearer_token(authorization)
        try:
            caller = await self._authenticator.authenticate(token) if token else None
        except Exception as exc:
            error = exc if isinstance(exc, ApiError) else unavailable(
                "the token could not be checked", reason="AUTHENTICATION_UNAVAILABLE")
            await self._audit.record(AuditEventDraft(
                actor=ANONYMOUS, action=action, outcome=AuditOutcome.ERROR, protocol=protocol, request_id=request_id,
                namespace=_refused_namespace(namespace), code=error.code.value, reason=error.reason,
                details={"peer": peer}))
            raise error from exc
        if caller is not None:
            return caller
        await self._audit.record(AuditEventDraft(
            actor=ANONYMOUS, action=action, outcome=AuditOutcome.DENIED, protocol=protocol, request_id=request_id,
            namespace=_refused_namespace(namespace), code=Code.UNAUTHENTICATED.value, reason="UNAUTHENTICATED",
            details={"peer": peer, "credentials": "invalid" if token else "missing"}))
        raise unauthenticated()

    # ------------------------------------------------------------ the contract's methods

    async def call(self, ctx: RequestContext, method: Method[Req, Res], req: Req) -> Res:
        """One unary contract method: audited (however it ends), authorized by the table
        (or by its use case), answered by the use case its capability registered."""
        namespace, name = method.scope(req) if req is not None else ("", "")
        async with self._audit.call(ctx, method.name, namespace=namespace,
                                    resource=method.audit_resource(name)) as audited:
            audited.resource_for = method.audit_resource
            call = _Call(ctx, audited, self._authorizer)
            # Authorized first, also when not implemented: an unauthorized caller learns nothing.
            if not method.authorized_by_use_case:
                await call.authorize(method.verb, method.resource, namespace)
            handler = self.registry.unary.get(method.name)
            if handler is None:
                raise unimplemented_error(method.name, "planned in a later release")
            with _operation_id_into(audited):
                result: Res = await handler(call, req)
            if isinstance(result, Operation):
                audited.operation_id = result.id
            return result

    async def stream(self, ctx: RequestContext, method: Method[Req, Res], req: Req) -> AsyncGenerator[Res, None]:
        """A streaming contract method: its audit event is written when the stream opens
        (allowed or not); then items flow until the caller stops."""
        namespace, name = method.scope(req) if req is not None else ("", "")
        async with self._audit.call(ctx, method.name, namespace=namespace,
                                    resource=method.audit_resource(name)) as audited:
            audited.resource_for = method.audit_resource
            call = _Call(ctx, audited, self._authorizer)
            if not method.authorized_by_use_case:
                await call.authorize(method.verb, method.resource, namespace)
            opener = self.registry.streams.get(method.name)
            if opener is None:
                raise unimplemented_error(method.name, "planned in a later release")
            subject = ctx.caller.subject
            self._streams.take(subject)
            try:
                items = await opener(call, req)
            except BaseException:
                self._streams.give_back(subject)
                raise
        try:
            async for item in items:
                yield item
        finally:
            self._streams.give_back(subject)
            # Deterministic cleanup (an export deletes its DataExport) also when the
            # caller stops before the end or before the first item.
            close = getattr(items, "aclose", None)
            if close is not None:
                await close()

    # ------------------------------------------------------------ misc

    async def record_rejection(self, ctx: RequestContext, action: str, error: ApiError, *,
                               namespace: str = "") -> None:
        """Audit a call an adapter refused before it reached a use case (a body or an enum
        value it could not convert): every call, however it ends, is an audit event."""
        if error.audited:
            return
        await self._audit.record(AuditEventDraft(
            actor=ctx.caller.subject or ANONYMOUS, action=action, outcome=AuditOutcome.ERROR, protocol=ctx.protocol,
            request_id=ctx.request_id, namespace=_refused_namespace(namespace), code=error.code.value,
            reason=error.reason))
        error.audited = True

    async def check_ready(self) -> dict[str, bool]:
        return {"database": await self._database_ok(), "cluster": await self._cluster_ok()}

    def served_methods(self) -> frozenset[str]:
        return frozenset(self.registry.unary) | frozenset(self.registry.streams)

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


class _Call:
    """One call in flight (``capabilities.registry.Call``): its caller and audit record."""

    def __init__(self, ctx: RequestContext, audit: AuditedCall, authorizer: Authorizer) -> None:
        self.ctx = ctx
        self.audit = audit
        self._authorizer = authorizer

    async def authorize(self, verb: str, resource: str, namespace: str) -> None:
        """PERMISSION_DENIED (audited as DENIED) unless the policy allows the call. A 403
        from the cluster, by contrast, is the gateway's own failure: audited as ERROR."""
        caller = self.ctx.caller
        if not await self._authorizer.allowed(caller, verb=verb, resource=resource, namespace=namespace):
            self.audit.deny()
            where = f"in namespace {namespace!r}" if namespace else "cluster-wide"
            raise permission_denied(f"{caller.subject!r} may not {verb} {resource} {where}")


# A refused call's namespace is as sent (nothing validated it): cut to a namespace's
# length, so a caller without a token cannot write long rows to the audit log.
_REFUSED_NAMESPACE_MAX = 63


def _refused_namespace(namespace: str) -> str:
    if len(namespace) <= _REFUSED_NAMESPACE_MAX:
        return namespace
    return namespace[:_REFUSED_NAMESPACE_MAX] + "\N{HORIZONTAL ELLIPSIS}"


@contextmanager
def _operation_id_into(call: AuditedCall) -> Iterator[None]:
    """Copy the operation id an error carries (a recorded-but-deferred request) into the audit event."""
    try:
        yield
    except ApiError as exc:
        if exc.metadata.get("operation_id"):
            call.operation_id = exc.metadata["operation_id"]
        raise
