"""What the core needs from the outside world, as Protocols.

The store (``service.store``) and the cluster layer (``service.cluster``) implement
these; the core depends on nothing else. Tests can run the core against the real
implementations (SQLite/PostgreSQL, the embedded cluster over HTTP).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from service.core.domain import (
    AuditEvent,
    AuditEventDraft,
    AuditFilter,
    AuditVerification,
    Operation,
    OperationFilter,
    OperationTransition,
    Page,
)

# ---------------------------------------------------------------- store


class OperationRepository(Protocol):
    async def create(self, op: Operation, *, reason: str = "Created", message: str = "",
                     audit: AuditEventDraft | None = None) -> Operation:
        """Insert a new operation, its first transition and (when given) the audit event of
        the call that requests it, in one transaction (committed on return): a crash leaves
        all of them or none. Raises ``core.errors`` ALREADY_EXISTS (reason IDEMPOTENCY_RACE)
        when another operation with the same (actor, request_id) was inserted concurrently."""

    async def get(self, operation_id: str) -> Operation | None: ...

    async def find_by_request_id(self, actor: str, request_id: str) -> Operation | None: ...

    async def save(self, op: Operation, *, reason: str = "", message: str = "") -> Operation:
        """Persist ``op``'s current fields, bump ``version`` and ``update_time``, and append
        a transition row when state or phase changed. Returns the stored operation. A
        stored operation in a terminal state is final: it is returned unchanged. A copy
        older than the stored one (``op.version`` behind) raises ABORTED, reason
        OPERATION_CHANGED, and nothing is written."""

    async def list_page(self, flt: OperationFilter, page_size: int, page_token: str) -> Page[Operation]:
        """Newest first; keyset pagination on (create_time, id); opaque page tokens."""

    async def transitions(self, operation_id: str) -> list[OperationTransition]: ...

    async def unfinished(self) -> list[Operation]:
        """Operations not in a terminal state (the reconciler's work list)."""

    async def export_digest(self, etag: str) -> str:
        """The whole-image SHA-256 an export of the content tagged ``etag`` computed, or ""."""


# (checked, total) after each batch of a verification; awaiting it paces the verification.
VerifyProgress = Callable[[int, int], Awaitable[None]]


class AuditRepository(Protocol):
    async def append(self, draft: AuditEventDraft) -> AuditEvent:
        """Append one event; its hash covers its fields and the previous event's hash.
        Serialized so the chain has no forks, even with several replicas."""

    async def list_page(self, flt: AuditFilter, page_size: int, page_token: str) -> Page[AuditEvent]:
        """Oldest first by id; keyset pagination on id."""

    def stream(self, flt: AuditFilter) -> AsyncIterator[AuditEvent]:
        """Every matching event, oldest first, fetched in batches (bounded memory)."""

    async def verify(self, progress: VerifyProgress | None = None) -> AuditVerification:
        """Recompute the whole chain in batches; report the first broken link. ``progress``
        is awaited after each batch with (checked, total)."""


# ---------------------------------------------------------------- cluster


@dataclass(frozen=True)
class ResourceKind:
    """A Kubernetes resource type the gateway reads or writes."""

    group: str        # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class ListResult:
    items: list[dict[str, Any]]
    continue_token: str
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    type: str                # ADDED | MODIFIED | DELETED | BOOKMARK
    object: dict[str, Any]   # the full object (for BOOKMARK: only metadata.resourceVersion)


class ClusterClient(Protocol):
    """Kubernetes CRUD and watch over HTTP. Every failure is raised as a
    ``core.errors.ApiError`` (404 NOT_FOUND, 409 ALREADY_EXISTS/ABORTED, 422
    INVALID_ARGUMENT with field violations from Status causes, 403 PERMISSION_DENIED,
    5xx, timeouts and connection errors UNAVAILABLE with a retry hint); never a raw
    kubernetes_asyncio exception."""

    async def create(self, kind: ResourceKind, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def get(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any]: ...

    async def list(self, kind: ResourceKind, namespace: str, *, label_selector: str = "",
                   limit: int = 0, continue_token: str = "") -> ListResult: ...

    async def delete(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any]: ...

    async def patch_merge(self, kind: ResourceKind, namespace: str, name: str,
                          patch: dict[str, Any]) -> dict[str, Any]: ...

    def watch(self, kind: ResourceKind, namespace: str | None, resource_version: str,
              *, timeout_seconds: int = 300) -> AsyncIterator[WatchEvent]:
        """One upstream watch request. Raises ApiError with reason ``WATCH_EXPIRED`` on
        410 Gone (the caller relists), UNAVAILABLE on a broken connection."""

    async def close(self) -> None: ...


class WatchSource(Protocol):
    """What the core needs from ``cluster.watch_hub.WatchHub``: one shared upstream watch
    per kind, fanned out. ``async with hub.subscribe(kind, ns) as events: async for ...``"""

    def subscribe(self, kind: ResourceKind, namespace: str | None = None,
                  name: str | None = None) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]: ...

    def get_cached(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any] | None:
        """The latest object the kind's shared watch has seen (read-only), or None when
        not seen or not synced: then ask the cluster."""

    def list_cached(self, kind: ResourceKind, namespace: str) -> list[dict[str, Any]] | None:
        """The namespace's objects the kind's shared watch has seen (read-only), or None
        when it is not synced: then ask the cluster."""

    async def wait_synced(self, kind: ResourceKind) -> None:
        """Start the kind's shared watch and wait for its first full list."""


@dataclass(frozen=True)
class BlockEndpoint:
    """Where a ready DataExport serves its volume: ``<status.url>/api/v1/block``."""

    url: str
    ca_pem: bytes | None = None   # status.ca, decoded: the only CA trusted for this URL


class BlockReader(Protocol):
    """Reads a DataExport's block endpoint over HTTP (``service.export.upstream``).
    Failures are ApiErrors: UNAVAILABLE for a broken or refused connection, NOT_FOUND
    (reason EXPORT_GONE) when the export no longer exists or has expired."""

    async def size(self, endpoint: BlockEndpoint) -> int:
        """The volume's size in bytes (a HEAD request)."""

    def read(self, endpoint: BlockEndpoint, offset: int, length: int,
             piece: int) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Bytes [offset, offset+length) in pieces of exactly ``piece`` bytes (the last
        may be shorter). Leaving the context closes the connection at once."""

    async def close(self) -> None: ...


class Leadership(Protocol):
    """What the reconciler needs from ``cluster.lease.LeaderElector``: background work
    runs only while this replica holds the Lease."""

    @property
    def is_leader(self) -> bool: ...
