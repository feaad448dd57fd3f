"""The contract's methods, once: the table both doors, authorization and the audit log read.

Each ``Method`` is one RPC of ``proto/dvp/snapshots/v1`` (and one REST operationId of
``openapi.yaml``, spelled the same). It says which request and answer types cross the
door, what the policy checks (verb and resource, in the namespace the request names)
and the audit action (its name, on both protocols). The use case behind a method is
registered by its capability (``service.core.capabilities``); a method nothing
registered answers UNIMPLEMENTED, audited under the same name.

Adapters call ``gateway.call(ctx, contract.GET_DISK_SNAPSHOT, ObjectKey(ns, name))`` or
``gateway.stream(ctx, contract.WATCH_OPERATION, ...)``; nothing else of the core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from service.core.domain import (
    AuditEvent,
    AuditVerification,
    AuditVerificationProgress,
    DiskSnapshot,
    DiskSnapshotEvent,
    ExportItem,
    Operation,
    OperationTransition,
    Page,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotEvent,
)
from service.core.requests import (
    CancelOperationRequest,
    CloneVmRequest,
    CreateDiskSnapshotRequest,
    CreateVmFromSnapshotRequest,
    CreateVmSnapshotRequest,
    DeleteDiskSnapshotRequest,
    DeleteVmSnapshotRequest,
    ExportRequest,
    ListAuditEventsRequest,
    ListOperationsRequest,
    ListRequest,
    ObjectKey,
    OperationKey,
    RestoreDiskRequest,
    RestoreVmRequest,
    VerifyAuditLogRequest,
    WatchOperationRequest,
    WatchRequest,
)

Req = TypeVar("Req")
Res = TypeVar("Res")

# Resource names the policy speaks about (the REST path segments).
DISK_SNAPSHOTS = "disk-snapshots"
VM_SNAPSHOTS = "vm-snapshots"
DISKS = "disks"
VIRTUAL_MACHINES = "virtual-machines"
OPERATIONS = "operations"
AUDIT = "audit"


def _named(req: Any) -> tuple[str, str]:
    return str(req.namespace), str(getattr(req, "name", ""))


def _listed(req: Any) -> tuple[str, str]:
    return str(req.namespace), ""


def _vm(req: Any) -> tuple[str, str]:
    return str(req.namespace), str(req.virtual_machine_name)


def _cluster_wide(req: Any) -> tuple[str, str]:
    return "", ""


def _operation(req: Any) -> tuple[str, str]:
    return "", str(req.operation_id)


@dataclass(frozen=True, eq=False)
class Method(Generic[Req, Res]):
    """One contract method. ``Res`` is the answer of a unary method, the item type of a
    streaming one."""

    name: str         # the proto method name: audit action and REST operationId
    service: str      # the proto service
    verb: str         # policy verb
    resource: str     # policy resource
    request: type[Req]
    streaming: bool = False
    # (namespace, object name) the call is about: authorization and the audit record.
    scope: Callable[[Req], tuple[str, str]] = _named
    # Operation methods authorize against the stored operation's namespace, which only
    # the use case knows (a hidden operation answers NOT_FOUND, not PERMISSION_DENIED).
    authorized_by_use_case: bool = False

    def audit_resource(self, object_name: str) -> str:
        """What the audit event names: "disk-snapshots/<name>", or "audit" for the log itself."""
        return self.resource if self.resource == AUDIT else f"{self.resource}/{object_name}"


def _m(name: str, service: str, verb: str, resource: str, request: type[Req], result: type[Res] | Any,
       **options: Any) -> Method[Req, Res]:
    return Method(name, service, verb, resource, request, **options)


SNAPSHOT_SERVICE = "SnapshotService"
RESTORE_SERVICE = "RestoreService"
CLONE_SERVICE = "CloneService"
EXPORT_SERVICE = "ExportService"
OPERATION_SERVICE = "OperationService"
AUDIT_SERVICE = "AuditService"

CREATE_DISK_SNAPSHOT: Method[CreateDiskSnapshotRequest, Operation] = _m(
    "CreateDiskSnapshot", SNAPSHOT_SERVICE, "create", DISK_SNAPSHOTS, CreateDiskSnapshotRequest, Operation)
GET_DISK_SNAPSHOT: Method[ObjectKey, DiskSnapshot] = _m(
    "GetDiskSnapshot", SNAPSHOT_SERVICE, "get", DISK_SNAPSHOTS, ObjectKey, DiskSnapshot)
LIST_DISK_SNAPSHOTS: Method[ListRequest, Page[DiskSnapshot]] = _m(
    "ListDiskSnapshots", SNAPSHOT_SERVICE, "list", DISK_SNAPSHOTS, ListRequest, Page, scope=_listed)
DELETE_DISK_SNAPSHOT: Method[DeleteDiskSnapshotRequest, Operation] = _m(
    "DeleteDiskSnapshot", SNAPSHOT_SERVICE, "delete", DISK_SNAPSHOTS, DeleteDiskSnapshotRequest, Operation)
WATCH_DISK_SNAPSHOTS: Method[WatchRequest, DiskSnapshotEvent] = _m(
    "WatchDiskSnapshots", SNAPSHOT_SERVICE, "watch", DISK_SNAPSHOTS, WatchRequest, DiskSnapshotEvent,
    streaming=True)

CREATE_VM_SNAPSHOT: Method[CreateVmSnapshotRequest, Operation] = _m(
    "CreateVirtualMachineSnapshot", SNAPSHOT_SERVICE, "create", VM_SNAPSHOTS, CreateVmSnapshotRequest, Operation)
GET_VM_SNAPSHOT: Method[ObjectKey, VirtualMachineSnapshot] = _m(
    "GetVirtualMachineSnapshot", SNAPSHOT_SERVICE, "get", VM_SNAPSHOTS, ObjectKey, VirtualMachineSnapshot)
LIST_VM_SNAPSHOTS: Method[ListRequest, Page[VirtualMachineSnapshot]] = _m(
    "ListVirtualMachineSnapshots", SNAPSHOT_SERVICE, "list", VM_SNAPSHOTS, ListRequest, Page, scope=_listed)
DELETE_VM_SNAPSHOT: Method[DeleteVmSnapshotRequest, Operation] = _m(
    "DeleteVirtualMachineSnapshot", SNAPSHOT_SERVICE, "delete", VM_SNAPSHOTS, DeleteVmSnapshotRequest, Operation)
WATCH_VM_SNAPSHOTS: Method[WatchRequest, VirtualMachineSnapshotEvent] = _m(
    "WatchVirtualMachineSnapshots", SNAPSHOT_SERVICE, "watch", VM_SNAPSHOTS, WatchRequest,
    VirtualMachineSnapshotEvent, streaming=True)

RESTORE_DISK: Method[RestoreDiskRequest, Operation] = _m(
    "RestoreDisk", RESTORE_SERVICE, "restore", DISKS, RestoreDiskRequest, Operation)
RESTORE_VM: Method[RestoreVmRequest, Operation] = _m(
    "RestoreVirtualMachine", RESTORE_SERVICE, "restore", VIRTUAL_MACHINES, RestoreVmRequest, Operation, scope=_vm)

CLONE_VM: Method[CloneVmRequest, Operation] = _m(
    "CloneVirtualMachine", CLONE_SERVICE, "clone", VIRTUAL_MACHINES, CloneVmRequest, Operation, scope=_vm)
CREATE_VM_FROM_SNAPSHOT: Method[CreateVmFromSnapshotRequest, Operation] = _m(
    "CreateVirtualMachineFromSnapshot", CLONE_SERVICE, "clone", VM_SNAPSHOTS, CreateVmFromSnapshotRequest, Operation,
    scope=lambda req: (req.namespace, req.virtual_machine_snapshot_name))

EXPORT_DISK: Method[ExportRequest, ExportItem] = _m(
    "ExportDisk", EXPORT_SERVICE, "export", DISKS, ExportRequest, ExportItem, streaming=True)
EXPORT_DISK_SNAPSHOT: Method[ExportRequest, ExportItem] = _m(
    "ExportDiskSnapshot", EXPORT_SERVICE, "export", DISK_SNAPSHOTS, ExportRequest, ExportItem, streaming=True)

GET_OPERATION: Method[OperationKey, Operation] = _m(
    "GetOperation", OPERATION_SERVICE, "get", OPERATIONS, OperationKey, Operation, scope=_operation,
    authorized_by_use_case=True)
LIST_OPERATIONS: Method[ListOperationsRequest, Page[Operation]] = _m(
    "ListOperations", OPERATION_SERVICE, "list", OPERATIONS, ListOperationsRequest, Page,
    scope=lambda req: (req.namespace, ""))
WATCH_OPERATION: Method[WatchOperationRequest, Operation] = _m(
    "WatchOperation", OPERATION_SERVICE, "get", OPERATIONS, WatchOperationRequest, Operation, streaming=True,
    scope=_operation, authorized_by_use_case=True)
GET_OPERATION_TIMELINE: Method[OperationKey, list[OperationTransition]] = _m(
    "GetOperationTimeline", OPERATION_SERVICE, "get", OPERATIONS, OperationKey, list, scope=_operation,
    authorized_by_use_case=True)
CANCEL_OPERATION: Method[CancelOperationRequest, Operation] = _m(
    "CancelOperation", OPERATION_SERVICE, "cancel", OPERATIONS, CancelOperationRequest, Operation,
    scope=_operation, authorized_by_use_case=True)

LIST_AUDIT_EVENTS: Method[ListAuditEventsRequest, Page[AuditEvent]] = _m(
    "ListAuditEvents", AUDIT_SERVICE, "list", AUDIT, ListAuditEventsRequest, Page, scope=_cluster_wide)
EXPORT_AUDIT_EVENTS: Method[ListAuditEventsRequest, AuditEvent] = _m(
    "ExportAuditEvents", AUDIT_SERVICE, "export", AUDIT, ListAuditEventsRequest, AuditEvent, streaming=True,
    scope=_cluster_wide)
VERIFY_AUDIT_LOG: Method[VerifyAuditLogRequest, AuditVerification] = _m(
    "VerifyAuditLog", AUDIT_SERVICE, "verify", AUDIT, VerifyAuditLogRequest, AuditVerification,
    scope=_cluster_wide)

VERIFY_AUDIT_LOG_STREAM: Method[VerifyAuditLogRequest, AuditVerificationProgress] = _m(
    "VerifyAuditLogStream", AUDIT_SERVICE, "verify", AUDIT, VerifyAuditLogRequest, AuditVerificationProgress,
    streaming=True, scope=_cluster_wide)

METHODS: tuple[Method[Any, Any], ...] = (
    CREATE_DISK_SNAPSHOT, GET_DISK_SNAPSHOT, LIST_DISK_SNAPSHOTS, DELETE_DISK_SNAPSHOT, WATCH_DISK_SNAPSHOTS,
    CREATE_VM_SNAPSHOT, GET_VM_SNAPSHOT, LIST_VM_SNAPSHOTS, DELETE_VM_SNAPSHOT, WATCH_VM_SNAPSHOTS,
    RESTORE_DISK, RESTORE_VM,
    CLONE_VM, CREATE_VM_FROM_SNAPSHOT,
    EXPORT_DISK, EXPORT_DISK_SNAPSHOT,
    GET_OPERATION, LIST_OPERATIONS, WATCH_OPERATION, GET_OPERATION_TIMELINE, CANCEL_OPERATION,
    LIST_AUDIT_EVENTS, EXPORT_AUDIT_EVENTS, VERIFY_AUDIT_LOG, VERIFY_AUDIT_LOG_STREAM,
)
BY_NAME: dict[str, Method[Any, Any]] = {m.name: m for m in METHODS}
