"""The one shape every capability has (docs/ARCHITECTURE.md, "Adding a capability").

A capability that *writes* a custom resource is a ``Creates`` (its request checks, its
preconditions read from the watch caches, the resource it writes as a pure function of
the stored operation, how that resource's status maps to the operation); one that
*removes* one is a ``Deletes``. ``service.core.capabilities.flows`` runs both shapes the
same way for every capability: write-ahead operation row, idempotency, the cluster
write, adoption after a crash, failure recording. The reconciler follows each kind's
resources with the capability's ``follow``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from service.cluster.translate import metadata
from service.core.domain import Operation, OperationError, OperationType, ResourceRef, ResourceResult
from service.core.errors import ApiError, Code, PreconditionViolation, not_found
from service.core.op_updates import Mutation
from service.core.ports import ClusterClient, ResourceKind, WatchSource

Req = TypeVar("Req")


@dataclass
class Plan:
    """What the preconditions found: the resource's final name, the object the call is
    about (with its uid), warnings for the caller, per-resource results found before
    anything is written (a dry run's conflicts) and the values they decided."""

    name: str
    target: ResourceRef
    warnings: list[str] = field(default_factory=list)
    results: list[ResourceResult] = field(default_factory=list)
    # Values the checks decided (a default size...), stored with the request so the
    # manifest, a pure function of the operation, writes them (also when replayed).
    resolved: dict[str, Any] = field(default_factory=dict)


class Reads:
    """Cluster reads for checks: from the shared watch's cache when it has the object
    (no round trip), else from the cluster."""

    def __init__(self, cluster: ClusterClient, cache: WatchSource) -> None:
        self.cluster = cluster
        self._cache = cache

    async def get(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any]:
        cached = self._cache.get_cached(kind, namespace, name)
        return cached if cached is not None else await self.cluster.get(kind, namespace, name)

    async def find(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist (other failures are raised)."""
        try:
            return await self.get(kind, namespace, name)
        except ApiError as exc:
            if exc.code is Code.NOT_FOUND:
                return None
            raise

    async def fresh(self, kind: ResourceKind, namespace: str, name: str) -> dict[str, Any] | None:
        """The cluster's current object, bypassing the cache (name-collision checks)."""
        try:
            return await self.cluster.get(kind, namespace, name)
        except ApiError as exc:
            if exc.code is Code.NOT_FOUND:
                return None
            raise

    async def list_cached(self, kind: ResourceKind, namespace: str) -> list[dict[str, Any]]:
        """The namespace's objects from the shared watch's cache (no round trip, may lag the
        cluster by a watch event), else from the cluster."""
        cached = self._cache.list_cached(kind, namespace)
        return cached if cached is not None else await self.list(kind, namespace)

    async def list(self, kind: ResourceKind, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page = await self.cluster.list(kind, namespace, limit=500, continue_token=token)
            items += page.items
            token = page.continue_token
            if not token:
                return items

    async def require(self, kind: ResourceKind, namespace: str, name: str, field_name: str) -> dict[str, Any]:
        """The object, or NOT_FOUND naming the request field that referred to it."""
        found = await self.find(kind, namespace, name)
        if found is None:
            error = not_found(kind.kind, name, namespace)
            error.metadata["field"] = field_name
            raise error
        return found


class Creates(Protocol[Req]):
    """A capability whose operation writes one custom resource and follows it."""

    op_type: OperationType
    kind: ResourceKind            # the resource it writes
    request: type[Req]            # what the stored operation replays from

    def check(self, req: Req) -> None:
        """Every field violation at once (INVALID_ARGUMENT); pure."""

    def name_for(self, req: Req) -> str:
        """The resource's name: the requested one or a generated one."""

    def target_of(self, req: Req) -> ResourceRef:
        """What the call is about, before any read (uid unknown)."""

    async def plan(self, reads: Reads, req: Req, name: str) -> Plan:
        """The preconditions, checked before anything is written; raises FAILED_PRECONDITION,
        NOT_FOUND, ALREADY_EXISTS... naming what is wrong."""

    def manifest(self, op: Operation) -> dict[str, Any]:
        """The custom resource, a pure function of the stored operation."""

    def follow(self, obj: dict[str, Any] | None) -> Mutation:
        """How the resource's status (None: it is gone) maps onto the operation."""


@runtime_checkable
class WaitsOnSource(Protocol):
    """A create whose resource waits on another object the platform never gives up on
    (a restored disk on its snapshot: deleted meanwhile, the disk stays Pending for ever).
    The reconciler's periodic re-read asks it, so the operation ends instead."""

    async def source_lost(self, reads: Reads, op: Operation, obj: dict[str, Any]) -> OperationError | None:
        """Why the resource can never finish (None: it still can)."""


class Deletes(Protocol):
    """A capability whose operation deletes one custom resource."""

    op_type: OperationType
    kind: ResourceKind

    async def users(self, reads: Reads, namespace: str, name: str) -> list[PreconditionViolation]:
        """Who still needs the object (deleting it is refused while anyone does)."""


def labels_of(obj: dict[str, Any]) -> dict[str, Any]:
    labels = metadata(obj).get("labels")
    return labels if isinstance(labels, dict) else {}
