"""Domain types shared by the core, the store, the cluster layer and both adapters.

Plain dataclasses: no protobuf, no SQLAlchemy, no aiohttp here. Adapters convert these
to wire formats; the store persists them; the cluster layer produces them from custom
resources. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


class OperationState(StrEnum):
    PENDING = "PENDING"      # recorded; the custom resource may not exist yet
    RUNNING = "RUNNING"      # the custom resource exists and the cluster works on it
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (OperationState.SUCCEEDED, OperationState.FAILED, OperationState.CANCELLED)


class OperationType(StrEnum):
    CREATE_DISK_SNAPSHOT = "CREATE_DISK_SNAPSHOT"
    DELETE_DISK_SNAPSHOT = "DELETE_DISK_SNAPSHOT"
    CREATE_VM_SNAPSHOT = "CREATE_VM_SNAPSHOT"
    DELETE_VM_SNAPSHOT = "DELETE_VM_SNAPSHOT"
    RESTORE_DISK = "RESTORE_DISK"
    RESTORE_VM = "RESTORE_VM"
    CLONE_VM = "CLONE_VM"
    CREATE_VM_FROM_SNAPSHOT = "CREATE_VM_FROM_SNAPSHOT"
    EXPORT_DISK = "EXPORT_DISK"
    EXPORT_DISK_SNAPSHOT = "EXPORT_DISK_SNAPSHOT"


class KeepIpAddress(StrEnum):
    """VirtualMachineSnapshot spec.keepIPAddress."""

    ALWAYS = "Always"   # a dynamic IP address becomes static so a restore gets it back
    NEVER = "Never"


class ApplyMode(StrEnum):
    """VirtualMachineOperation restore/clone mode."""

    DRY_RUN = "DryRun"          # report what would happen (and every conflict); change nothing
    STRICT = "Strict"           # all or nothing
    BEST_EFFORT = "BestEffort"  # drop what is missing (images) and go on


@dataclass(frozen=True)
class ResourceRef:
    """A Kubernetes object: what a call targets, or the custom resource it wrote."""

    api_version: str
    kind: str
    name: str
    namespace: str = ""
    uid: str = ""


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None


@dataclass(frozen=True)
class ResourceResult:
    """One entry of a VMOP/VMSOP ``status.resources``: what happened to one object."""

    api_version: str
    kind: str
    name: str
    status: str  # InProgress | Completed | Failed | Conflict (found by the gateway)
    message: str = ""
    reason: str = ""  # machine-readable: e.g. AttachedToAnotherVM, IPAddressInUse, ImageNotFound
    source_name: str = ""  # a clone's name map: the object this one is made from (old -> new)


@dataclass(frozen=True)
class OperationError:
    code: str     # a core.errors.Code value
    reason: str   # the cluster's condition reason, or one of ours
    message: str


class TransferOutcome(StrEnum):
    """How an export stream ended ("" while it runs)."""

    COMPLETED = "COMPLETED"   # every byte of the range was sent
    CANCELLED = "CANCELLED"   # the caller went away or cancelled
    FAILED = "FAILED"         # the cluster, the exporter or the gateway failed


@dataclass(frozen=True)
class ExportTransfer:
    """What an export stream moved: updated while it runs, final when it ends."""

    size: int = 0            # bytes of the whole volume
    offset: int = 0          # the range the stream covers
    length: int = 0
    bytes_sent: int = 0      # of the range, holes included
    hole_bytes: int = 0      # of bytes_sent, sent as holes (no bytes on the wire)
    sha256: str = ""         # hex, of the whole volume, when known
    range_sha256: str = ""   # hex, of the range, once all of it was sent
    etag: str = ""           # identifies the content
    duration_seconds: float = 0.0
    outcome: TransferOutcome | None = None


@dataclass
class Operation:
    """A long-running operation (AIP-151). Created PENDING *before* the custom resource
    is written (write-ahead), then follows the resource's phase to a terminal state."""

    id: str
    type: OperationType
    namespace: str
    target: ResourceRef
    actor: str
    request_hash: str
    state: OperationState = OperationState.PENDING
    resource: ResourceRef | None = None
    phase: str = ""
    conditions: list[Condition] = field(default_factory=list)
    results: list[ResourceResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: OperationError | None = None
    request_id: str | None = None
    # The request as received (JSON-safe), so a crash between recording the operation
    # and writing the resource can be reconciled by replaying it.
    request: dict[str, Any] = field(default_factory=dict)
    create_time: datetime = field(default_factory=utcnow)
    update_time: datetime = field(default_factory=utcnow)
    end_time: datetime | None = None
    # Bumped on every stored change; WatchOperation resumes after a version.
    version: int = 1
    # Exports only: the bytes the stream moved.
    transfer: ExportTransfer | None = None
    # The resourceVersion of the resource's last state applied to the operation (internal):
    # a stale read of an older version never steps the timeline back.
    observed_resource_version: str = ""

    @property
    def done(self) -> bool:
        return self.state.terminal


@dataclass(frozen=True)
class OperationTransition:
    """One row of an operation's timeline."""

    operation_id: str
    seq: int
    state: OperationState
    phase: str
    reason: str
    message: str
    time: datetime


@dataclass(frozen=True)
class OperationFilter:
    namespace: str | None = None
    type: OperationType | None = None
    state: OperationState | None = None
    actor: str | None = None
    target_name: str | None = None


@dataclass
class DiskSnapshot:
    """A VirtualDiskSnapshot as callers see it."""

    namespace: str
    name: str
    virtual_disk_name: str
    required_consistency: bool
    uid: str = ""
    phase: str = ""
    consistent: bool | None = None
    volume_snapshot_name: str = ""
    conditions: list[Condition] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    operation_id: str = ""  # from the gateway's annotation, when the gateway made it
    resource_version: str = ""
    create_time: datetime | None = None
    deletion_time: datetime | None = None


@dataclass
class VirtualMachineSnapshot:
    """A VirtualMachineSnapshot as callers see it."""

    namespace: str
    name: str
    virtual_machine_name: str
    required_consistency: bool
    keep_ip_address: KeepIpAddress = KeepIpAddress.ALWAYS
    uid: str = ""
    phase: str = ""
    consistent: bool | None = None
    resources: list[ResourceRef] = field(default_factory=list)       # status.resources: what was saved
    virtual_disk_snapshot_names: list[str] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    operation_id: str = ""
    resource_version: str = ""
    create_time: datetime | None = None
    deletion_time: datetime | None = None


class WatchEventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class DiskSnapshotEvent:
    type: WatchEventType
    snapshot: DiskSnapshot


@dataclass(frozen=True)
class VirtualMachineSnapshotEvent:
    type: WatchEventType
    snapshot: VirtualMachineSnapshot


@dataclass(frozen=True)
class Caller:
    """An authenticated principal. ``subject`` is what the audit log records."""

    subject: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestContext:
    """Per-call facts the adapters hand to the core."""

    caller: Caller
    request_id: str     # correlation id for logs (x-request-id), not the idempotency key
    protocol: str       # "grpc" | "rest"
    peer: str = ""


class AuditOutcome(StrEnum):
    SUCCESS = "SUCCESS"
    DENIED = "DENIED"   # unauthenticated or unauthorized
    ERROR = "ERROR"     # allowed, but failed (validation, not found, cluster down...)


@dataclass(frozen=True)
class AuditEventDraft:
    """What the core records; the store adds id, time and the hash chain."""

    actor: str
    action: str          # the method name, e.g. "CreateDiskSnapshot"
    outcome: AuditOutcome
    namespace: str = ""
    resource: str = ""   # e.g. "disk-snapshots/linux-vm-root-snapshot"
    protocol: str = ""
    request_id: str = ""
    operation_id: str = ""
    code: str = ""       # error code when outcome != SUCCESS
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # never holds secrets


@dataclass(frozen=True)
class AuditEvent:
    id: int               # monotonic, the hash chain's order
    time: datetime
    actor: str
    action: str
    outcome: AuditOutcome
    namespace: str
    resource: str
    protocol: str
    request_id: str
    operation_id: str
    code: str
    reason: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    namespace: str | None = None
    resource: str | None = None       # prefix match ("disk-snapshots/" or an exact name)
    action: str | None = None
    outcome: AuditOutcome | None = None
    since: datetime | None = None     # inclusive
    until: datetime | None = None     # exclusive


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    message: str = ""


@dataclass(frozen=True)
class AuditVerificationProgress:
    """One step of a streamed verification: ``checked`` of ``total`` events (the chain
    head's id when it started); the last step carries the ``result``."""

    checked: int
    total: int
    result: AuditVerification | None = None


class VolumeMode(StrEnum):
    """DataExport status.volumeMode."""

    BLOCK = "Block"
    FILESYSTEM = "Filesystem"


@dataclass(frozen=True)
class ExportStart:
    """First item of an export stream: what follows, before any byte."""

    operation_id: str
    size: int                # of the whole volume
    offset: int              # of the first byte that follows
    length: int              # bytes that follow (data and holes)
    etag: str
    volume_mode: VolumeMode = VolumeMode.BLOCK
    sha256: str = ""         # of the whole volume, when known before sending
    ranged: bool = False     # a range was asked for and is served (REST: 206)


@dataclass(frozen=True)
class ExportData:
    offset: int
    data: bytes


@dataclass(frozen=True)
class ExportHole:
    """``length`` zero bytes at ``offset``, sent without the bytes."""

    offset: int
    length: int


@dataclass(frozen=True)
class ExportEnd:
    """Last item of a complete export stream."""

    size: int
    offset: int
    length: int
    sha256: str              # of the whole volume, or "" when not computed
    range_sha256: str
    hole_bytes: int


ExportItem = ExportStart | ExportData | ExportHole | ExportEnd


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_page_token: str = ""
