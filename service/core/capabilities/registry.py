"""Where capabilities register what they answer (kopf-style registries).

``register(registry, deps)`` in each capability module puts its use cases on the
contract's methods (``on`` / ``on_stream``) and its resource shapes on the reconciler
(``writes`` / ``removes``). The gateway asks the registry which use case answers a
method; the reconciler asks it which capability follows an operation type or a kind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from service.core.audit import AuditedCall
from service.core.capabilities.flows import WriteAhead
from service.core.capabilities.shape import Creates, Deletes, Reads
from service.core.contract import Method
from service.core.domain import Operation, OperationType, RequestContext
from service.core.export_settings import ExportSettings
from service.core.notifier import OperationNotifier
from service.core.op_updates import OperationWriter
from service.core.page_tokens import PageTokens
from service.core.ports import (
    AuditRepository,
    BlockReader,
    ClusterClient,
    OperationRepository,
    ResourceKind,
    WatchSource,
)

Req = TypeVar("Req")
Res = TypeVar("Res")


class Call(Protocol):
    """One call in flight, as a use case sees it: who, and its audit record."""

    ctx: RequestContext
    audit: AuditedCall

    async def authorize(self, verb: str, resource: str, namespace: str) -> None:
        """PERMISSION_DENIED (audited as DENIED) unless the policy allows it."""


@dataclass(frozen=True)
class Deps:
    """What capabilities are built from (the composition root's objects, via the gateway)."""

    cluster: ClusterClient
    hub: WatchSource
    writer: OperationWriter
    operations: OperationRepository
    audit: AuditRepository
    notifier: OperationNotifier
    reads: Reads
    flows: WriteAhead
    default_page_size: int
    max_page_size: int
    operation_poll_interval: float
    page_tokens: PageTokens
    blocks: BlockReader | None = None       # exports read DataExport block data through it
    export_settings: ExportSettings = field(default_factory=ExportSettings)


UnaryHandler = Callable[[Call, Any], Awaitable[Any]]
# Checks (raising ApiError while the call is still audited), then the stream itself.
StreamOpener = Callable[[Call, Any], Awaitable[AsyncIterator[Any]]]


@dataclass
class Registry:
    unary: dict[str, UnaryHandler] = field(default_factory=dict)
    streams: dict[str, StreamOpener] = field(default_factory=dict)
    creates: dict[OperationType, Creates[Any]] = field(default_factory=dict)
    deletes: dict[OperationType, Deletes] = field(default_factory=dict)
    # Operation types that write no followed resource (exports): the reconciler hands
    # their unfinished operations to this instead of replaying them.
    sweeps: dict[OperationType, Callable[[Operation], Awaitable[None]]] = field(default_factory=dict)
    # Awaited when the gateway stops (background cleanups still running).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def on(self, method: Method[Req, Res], handler: Callable[[Call, Req], Awaitable[Res]]) -> None:
        assert not method.streaming and method.name not in self.unary, method.name
        self.unary[method.name] = handler

    def on_stream(self, method: Method[Req, Res],
                  opener: Callable[[Call, Req], Awaitable[AsyncIterator[Res]]]) -> None:
        assert method.streaming and method.name not in self.streams, method.name
        self.streams[method.name] = opener

    def writes(self, cap: Creates[Any]) -> None:
        assert cap.op_type not in self.creates, cap.op_type
        self.creates[cap.op_type] = cap

    def removes(self, cap: Deletes) -> None:
        assert cap.op_type not in self.deletes, cap.op_type
        self.deletes[cap.op_type] = cap

    def serve_creates(self, method: Method[Req, Operation], cap: Creates[Req], flows: WriteAhead,
                      details: Callable[[Req], dict[str, Any]]) -> None:
        """``method`` runs ``cap`` through the write-ahead flow; the reconciler follows it."""

        async def create(call: Call, req: Req) -> Operation:
            call.audit.details = {**details(req), "idempotency_key": bool(getattr(req, "request_id", ""))}
            op = await flows.create(cap, call.ctx.caller, req, call.audit)
            call.audit.resource = method.audit_resource(op.resource.name if op.resource else "")
            return op

        self.writes(cap)
        self.on(method, create)

    def serve_deletes(self, method: Method[Req, Operation], cap: Deletes, flows: WriteAhead) -> None:
        async def delete(call: Call, req: Req) -> Operation:
            return await flows.delete(cap, call.ctx.caller, req, call.audit)

        self.removes(cap)
        self.on(method, delete)

    def followed_kinds(self) -> list[ResourceKind]:
        """Every kind an operation writes or deletes: the reconciler watches each once."""
        kinds: dict[str, ResourceKind] = {}
        for kind in [c.kind for c in self.creates.values()] + [d.kind for d in self.deletes.values()]:
            kinds.setdefault(kind.plural, kind)
        return list(kinds.values())
