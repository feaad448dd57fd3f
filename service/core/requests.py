"""Validated-on-entry request shapes the adapters build from protobuf or JSON.

Adapters only move fields across; every rule (names, ranges, existence) is checked in
the core so gRPC and REST answer the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.core.domain import ApplyMode, AuditOutcome, KeepIpAddress, OperationState, OperationType


@dataclass(frozen=True)
class CreateDiskSnapshotRequest:
    namespace: str
    virtual_disk_name: str
    name: str = ""            # empty: the gateway generates one from generate_name
    generate_name: str = ""   # prefix; defaults to "<virtual_disk_name>-"
    required_consistency: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    request_id: str = ""      # idempotency key (REST: Idempotency-Key header)


@dataclass(frozen=True)
class DeleteDiskSnapshotRequest:
    namespace: str
    name: str
    request_id: str = ""


@dataclass(frozen=True)
class ObjectKey:
    """One named object of a namespace (the Get methods)."""

    namespace: str
    name: str


@dataclass(frozen=True)
class WatchRequest:
    """A namespace's objects, or only the one named."""

    namespace: str
    name: str = ""


@dataclass(frozen=True)
class CreateVmSnapshotRequest:
    namespace: str
    virtual_machine_name: str
    name: str = ""            # empty: the gateway generates one from generate_name
    generate_name: str = ""   # prefix; defaults to "<virtual_machine_name>-"
    required_consistency: bool = True
    keep_ip_address: KeepIpAddress = KeepIpAddress.ALWAYS
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True)
class DeleteVmSnapshotRequest:
    namespace: str
    name: str
    request_id: str = ""


@dataclass(frozen=True)
class RestoreDiskRequest:
    """A new VirtualDisk whose data source is a VirtualDiskSnapshot."""

    namespace: str
    name: str                  # the new disk
    disk_snapshot_name: str
    size: str = ""             # Kubernetes quantity; empty: the source disk's size
    storage_class_name: str = ""  # empty: the source disk's storage class
    labels: dict[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True)
class RestoreVmRequest:
    namespace: str
    virtual_machine_name: str
    virtual_machine_snapshot_name: str
    mode: ApplyMode = ApplyMode.STRICT
    request_id: str = ""


@dataclass(frozen=True)
class NameReplacement:
    """Rename one object a clone creates (CRD ``nameReplacement[]``: from {kind, name}, to)."""

    from_name: str
    to: str
    from_kind: str = ""       # empty: any kind


@dataclass(frozen=True)
class CloneOptions:
    """How a clone names what it creates: prefix + (replacement or old name) + suffix."""

    mode: ApplyMode | None = None   # required: DryRun, Strict or BestEffort
    name_replacements: tuple[NameReplacement, ...] = ()
    name_prefix: str | None = None  # None: not set (an empty string is set, and invalid)
    name_suffix: str | None = None


@dataclass(frozen=True)
class CloneVmRequest:
    namespace: str
    virtual_machine_name: str
    options: CloneOptions = CloneOptions()
    request_id: str = ""


@dataclass(frozen=True)
class CreateVmFromSnapshotRequest:
    namespace: str
    virtual_machine_snapshot_name: str
    options: CloneOptions = CloneOptions()
    request_id: str = ""


@dataclass(frozen=True)
class OperationKey:
    operation_id: str


@dataclass(frozen=True)
class WatchOperationRequest:
    operation_id: str
    after_version: int = 0    # every stored version after this one


@dataclass(frozen=True)
class CancelOperationRequest:
    operation_id: str
    force: bool = False       # needed to call off a VM restore in progress
    request_id: str = ""


@dataclass(frozen=True)
class VerifyAuditLogRequest:
    """No fields: the whole chain is verified."""


@dataclass(frozen=True)
class ListRequest:
    namespace: str
    page_size: int = 0        # 0: server default (50); capped at 500
    page_token: str = ""
    label_selector: str = ""


@dataclass(frozen=True)
class ListOperationsRequest:
    namespace: str = ""
    type: OperationType | None = None
    state: OperationState | None = None
    actor: str = ""
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class ListAuditEventsRequest:
    actor: str = ""
    namespace: str = ""
    resource: str = ""
    action: str = ""
    outcome: AuditOutcome | None = None
    since: str = ""           # RFC 3339
    until: str = ""           # RFC 3339
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class ExportRequest:
    """ExportDisk / ExportDiskSnapshot: the bytes of a VirtualDisk or VirtualDiskSnapshot.

    The range is ``offset`` and ``length`` (None: to the end) or, as HTTP's
    ``bytes=-N``, the last ``suffix_length`` bytes."""

    namespace: str
    name: str
    ttl_seconds: float | None = None   # DataExport spec.ttl; None: the gateway's default
    offset: int = 0
    length: int | None = None
    suffix_length: int | None = None
    expand_holes: bool = False         # zero regions as data, not holes (REST always)
    whole_image_sha256: bool = False   # hash outside the range too
    if_etag: str = ""                  # serve the range only for this content, else everything

    @property
    def ranged(self) -> bool:
        return self.offset > 0 or self.length is not None or self.suffix_length is not None
