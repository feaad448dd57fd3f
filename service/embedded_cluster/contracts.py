"""Contracts between the embedded cluster's parts (API server, schema, controllers).

The API server owns an ``ObjectStore``; the controllers run in the same process and
use it directly (as kube-controller-manager would use an informer cache plus the API),
and every write they make goes through the same admission (schema, defaults, pruning,
CEL) as a write over HTTP. Resources are keyed as ``plural.group`` ("virtualdisks.
virtualization.deckhouse.io", "leases.coordination.k8s.io") or the bare plural for the
core group ("namespaces", "secrets").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

Obj = dict[str, Any]


@dataclass(frozen=True)
class StatusCause:
    """metav1.StatusCause: ``field`` is a JSON path such as ``spec.clone.mode``."""

    reason: str   # FieldValueInvalid | FieldValueRequired | FieldValueNotSupported | FieldValueTooLong ...
    message: str
    field: str = ""


@dataclass
class StatusError(Exception):
    """A metav1.Status failure: raised anywhere in the embedded cluster, rendered by the
    HTTP layer as the Status body with ``code``."""

    code: int          # 400, 401, 403, 404, 405, 409, 410, 415, 422, 429, 500, 503
    reason: str        # BadRequest, Unauthorized, Forbidden, NotFound, AlreadyExists, Conflict,
    #                    Gone/Expired, Invalid, TooManyRequests, InternalError, ServiceUnavailable
    message: str
    causes: list[StatusCause] = field(default_factory=list)
    kind: str = ""     # details.kind
    name: str = ""     # details.name
    group: str = ""    # details.group

    def __post_init__(self) -> None:
        super().__init__(self.message)


@dataclass(frozen=True)
class StoreEvent:
    type: str          # ADDED | MODIFIED | DELETED
    resource: str      # the resource key
    object: Obj        # a deep copy, safe to keep


class ObjectStore(Protocol):
    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        """A deep copy of the object, or None."""

    def list(self, resource: str, namespace: str | None = None, label_selector: str = "", *,
             read_only: bool = False) -> list[Obj]:
        """Deep copies, sorted by (namespace, name). ``read_only=True``: the stored objects
        themselves, for in-process readers that never mutate them (no copying cost)."""

    async def create(self, resource: str, obj: Obj) -> Obj:
        """Admit (schema, defaults, pruning, CEL) and store; honours generateName; sets
        uid, resourceVersion, generation=1, creationTimestamp. Raises StatusError."""

    async def update(self, resource: str, obj: Obj) -> Obj:
        """Replace metadata+spec (status is kept from the stored object). A non-empty
        metadata.resourceVersion must match (409 Conflict otherwise). Bumps generation
        when spec changed. Raises StatusError."""

    async def update_status(self, resource: str, obj: Obj) -> Obj:
        """The status subresource: replaces only ``status``. Same optimistic concurrency."""

    async def delete(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        """With finalizers: set deletionTimestamp and return the object; without: remove
        it (cascading to objects whose ownerReferences point at it) and return it.
        None if absent."""

    def subscribe(self, resource: str | None = None) -> AsyncIterator[StoreEvent]:
        """Every change from now on (one resource, or all), in commit order."""


@dataclass(frozen=True)
class ResourceType:
    """One served resource type, as read from a CRD (or declared for a built-in)."""

    group: str                   # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    list_kind: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    printer_columns: tuple[Obj, ...] = ()   # additionalPrinterColumns, as in the CRD
    has_status: bool = False                # the status subresource is enabled
    schema: Obj | None = None               # openAPIV3Schema; None: no validation (built-ins)

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class ExportFaults(Protocol):
    """Faults tests inject into DataExports and their exporter (the API server's FaultInjector
    implements this; the controllers only consume it)."""

    def take_export_expiry(self) -> bool:
        """Whether the DataExport seen for the first time now must be reported expired at once
        (each True spends one of the injected expiries)."""

    def take_export_drop(self) -> int | None:
        """Body bytes after which the download starting now is cut off (spends the fault);
        None: serve it whole."""

    def export_rate(self) -> float | None:
        """Bytes per second downloads are held to right now; None: full speed."""


class Admission(Protocol):
    def admit(self, rtype: ResourceType, obj: Obj, old: Obj | None, *, subresource: str = "") -> Obj:
        """Return a pruned, defaulted copy of ``obj`` that satisfies the schema and its
        CEL rules (transition rules see ``old``), or raise StatusError(422, "Invalid")
        with one cause per violation. ``subresource="status"`` validates the status."""
