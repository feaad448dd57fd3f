"""RestoreDisk: a new VirtualDisk whose data source is a VirtualDiskSnapshot.

Size defaults to the source disk's and may not be smaller (the guide: the same or
larger); the storage class defaults to the source disk's. Both are decided before
anything is written, so a bad size is refused with nothing recorded in the cluster.
"""

from __future__ import annotations

from typing import Any

from service.cluster.kinds import VIRTUAL_DISK, VIRTUAL_DISK_SNAPSHOT
from service.cluster.translate import metadata, phase, restore_disk_manifest, spec, status
from service.core import contract
from service.core import validation as v
from service.core.capabilities.disk_snapshots import str_map
from service.core.capabilities.registry import Deps, Registry
from service.core.capabilities.shape import Plan, Reads
from service.core.domain import Operation, OperationError, OperationType, ResourceRef
from service.core.errors import (
    Code,
    FieldViolation,
    PreconditionViolation,
    failed_precondition,
    invalid_argument,
)
from service.core.op_updates import Mutation
from service.core.progress import follow_resource
from service.core.quantity import parse_bytes
from service.core.request_checks import RESERVED_LABELS
from service.core.requests import RestoreDiskRequest

KIND = VIRTUAL_DISK
# The disk's DatasourceReady reason while its snapshot is missing or not Ready (the
# platform does not tell the two apart).
SNAPSHOT_NOT_READY = "VirtualDiskSnapshotNotReady"


def source_size(disk: dict[str, Any]) -> str:
    """The source disk's size: what it asked for, else what it got."""
    pvc = spec(disk).get("persistentVolumeClaim")
    asked = pvc.get("size") if isinstance(pvc, dict) else None
    if isinstance(asked, str) and parse_bytes(asked) is not None:
        return asked
    capacity = status(disk).get("capacity")
    return capacity if isinstance(capacity, str) and parse_bytes(capacity) is not None else ""


class RestoreDisk:
    op_type = OperationType.RESTORE_DISK
    kind = KIND
    request = RestoreDiskRequest

    def check(self, req: RestoreDiskRequest) -> None:
        found = v.namespace(req.namespace)
        found += v.dns1123_subdomain("name", req.name)
        found += v.dns1123_subdomain("disk_snapshot_name", req.disk_snapshot_name)
        if req.size and parse_bytes(req.size) is None:
            found.append(FieldViolation("size", "must be a Kubernetes quantity such as 10Gi"))
        elif req.size and parse_bytes(req.size) == 0:
            found.append(FieldViolation("size", "must be greater than zero"))
        found += v.dns1123_subdomain("storage_class_name", req.storage_class_name, required=False)
        found += v.label_map("labels", req.labels, reserved=RESERVED_LABELS)
        found += v.request_id(req.request_id)
        v.raise_if_any(found)

    def name_for(self, req: RestoreDiskRequest) -> str:
        return req.name

    def target_of(self, req: RestoreDiskRequest) -> ResourceRef:
        return ResourceRef(VIRTUAL_DISK_SNAPSHOT.api_version, VIRTUAL_DISK_SNAPSHOT.kind, req.disk_snapshot_name,
                           req.namespace)

    async def plan(self, reads: Reads, req: RestoreDiskRequest, name: str) -> Plan:
        snap = await reads.require(VIRTUAL_DISK_SNAPSHOT, req.namespace, req.disk_snapshot_name,
                                   "disk_snapshot_name")
        if phase(snap) != "Ready":
            raise failed_precondition(
                "SNAPSHOT_NOT_READY", f"VirtualDiskSnapshot {req.disk_snapshot_name!r} is "
                f"{phase(snap) or 'Pending'}; a disk can be restored only from a Ready snapshot",
                [PreconditionViolation("SNAPSHOT_NOT_READY", f"virtualdisksnapshots/{req.disk_snapshot_name}",
                                       "wait until the snapshot is Ready")])
        source_name = str(spec(snap).get("virtualDiskName", ""))
        source = await reads.find(VIRTUAL_DISK, req.namespace, source_name) if source_name else None
        size, storage_class = self._sizing(req, source, source_name)
        target = ResourceRef(VIRTUAL_DISK_SNAPSHOT.api_version, VIRTUAL_DISK_SNAPSHOT.kind, req.disk_snapshot_name,
                             req.namespace, str(metadata(snap).get("uid", "")))
        warnings = []
        if not req.size:
            warnings.append(f"size {size} taken from the source VirtualDisk {source_name!r}")
        if not req.storage_class_name and storage_class:
            warnings.append(f"storage class {storage_class!r} taken from the source VirtualDisk {source_name!r}")
        # Stored on the operation: what the manifest writes, also when replayed after a crash.
        return Plan(name=name, target=target, warnings=warnings,
                    resolved={"size": size, "storage_class_name": storage_class})

    @staticmethod
    def _sizing(req: RestoreDiskRequest, source: dict[str, Any] | None, source_name: str) -> tuple[str, str]:
        original = source_size(source) if source is not None else ""
        if not req.size and not original:
            raise failed_precondition(
                "SIZE_UNKNOWN", f"the source VirtualDisk {source_name!r} of the snapshot is gone, so its size is "
                "unknown; give size (at least the original disk's size)",
                [PreconditionViolation("SIZE_UNKNOWN", f"virtualdisks/{source_name}", "set size explicitly")])
        if req.size and original:
            asked, minimum = parse_bytes(req.size), parse_bytes(original)
            if asked is not None and minimum is not None and asked < minimum:
                raise invalid_argument(f"size {req.size} is smaller than the source disk's {original}", [
                    FieldViolation("size", f"must be the same as or larger than the source VirtualDisk "
                                           f"{source_name!r} ({original})")])
        pvc = spec(source).get("persistentVolumeClaim") if source is not None else None
        source_class = pvc.get("storageClassName") if isinstance(pvc, dict) else None
        storage_class = req.storage_class_name or (source_class if isinstance(source_class, str) else "")
        return req.size or original, storage_class

    def manifest(self, op: Operation) -> dict[str, Any]:
        req = op.request
        name = op.resource.name if op.resource else ""
        return restore_disk_manifest(
            namespace=op.namespace, name=name, disk_snapshot_name=op.target.name, size=str(req.get("size") or ""),
            storage_class_name=str(req.get("storage_class_name") or ""), labels=str_map(req.get("labels")),
            operation_id=op.id, actor=op.actor)

    def follow(self, obj: dict[str, Any] | None) -> Mutation:
        return follow_resource(KIND, obj, deleting=False)

    async def source_lost(self, reads: Reads, op: Operation, obj: dict[str, Any]) -> OperationError | None:
        """The disk still waits for its snapshot, and that snapshot is gone (deleted, or
        another one under its name): the platform would wait for ever (it reports a
        missing snapshot as not ready), so the operation fails, saying what to do."""
        if not _waiting_for_snapshot(obj):
            return None
        snap = await reads.fresh(VIRTUAL_DISK_SNAPSHOT, op.namespace, op.target.name)
        if snap is not None and not metadata(snap).get("deletionTimestamp") and (
                not op.target.uid or metadata(snap).get("uid") == op.target.uid):
            return None
        disk = op.resource.name if op.resource else ""
        return OperationError(Code.FAILED_PRECONDITION.value, "SNAPSHOT_DELETED", (
            f"VirtualDiskSnapshot {op.target.name!r} was deleted before VirtualDisk {disk!r} was provisioned "
            f"from it, so the disk stays Pending; delete the disk and restore from another snapshot"))


def _waiting_for_snapshot(disk: dict[str, Any]) -> bool:
    conditions = status(disk).get("conditions")
    return isinstance(conditions, list) and any(
        isinstance(c, dict) and c.get("type") == "DatasourceReady" and c.get("status") == "False"
        and c.get("reason") == SNAPSHOT_NOT_READY for c in conditions)


def register(registry: Registry, deps: Deps) -> None:
    registry.serve_creates(contract.RESTORE_DISK, RestoreDisk(), deps.flows,
                           lambda req: {"disk_snapshot_name": req.disk_snapshot_name, "size": req.size})
