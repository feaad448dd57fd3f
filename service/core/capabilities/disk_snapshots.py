"""Disk snapshots: VirtualDiskSnapshot create, get, list, delete, watch.

Preconditions: the disk exists; the consistency rule (service.cluster.consistency) warns
when a consistent snapshot would wait in Pending. A disk snapshot still used by a VM
snapshot or by a disk being provisioned from it cannot be deleted.
"""

from __future__ import annotations

from typing import Any

from service.cluster.consistency import consistency_warning
from service.cluster.kinds import VIRTUAL_DISK, VIRTUAL_DISK_SNAPSHOT, VIRTUAL_MACHINE, VIRTUAL_MACHINE_SNAPSHOT
from service.cluster.translate import disk_snapshot_from_resource, disk_snapshot_manifest, metadata, spec, status
from service.core import contract, request_checks
from service.core.capabilities.catalog import Catalog
from service.core.capabilities.flows import generated_name
from service.core.capabilities.registry import Deps, Registry
from service.core.capabilities.shape import Plan, Reads
from service.core.domain import (
    DiskSnapshot,
    DiskSnapshotEvent,
    Operation,
    OperationType,
    ResourceRef,
)
from service.core.errors import PreconditionViolation
from service.core.op_updates import Mutation
from service.core.progress import follow_resource
from service.core.requests import (
    CreateDiskSnapshotRequest,
)

KIND = VIRTUAL_DISK_SNAPSHOT
# Disk phases in which a VirtualDisk still reads from its data source.
PROVISIONING_PHASES = frozenset({"", "Pending", "Provisioning", "WaitForUserUpload", "WaitForFirstConsumer"})


def str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


async def attached_vms(reads: Reads, disk: dict[str, Any]) -> list[dict[str, Any]]:
    """The VMs the disk's status says it is attached to (those that still exist)."""
    namespace = str(metadata(disk).get("namespace", ""))
    attached = status(disk).get("attachedToVirtualMachines")
    vms = []
    for entry in attached if isinstance(attached, list) else []:
        vm_name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(vm_name, str) and vm_name:
            vm = await reads.find(VIRTUAL_MACHINE, namespace, vm_name)
            if vm is not None:
                vms.append(vm)
    return vms


class CreateDiskSnapshot:
    op_type = OperationType.CREATE_DISK_SNAPSHOT
    kind = KIND
    request = CreateDiskSnapshotRequest

    def check(self, req: CreateDiskSnapshotRequest) -> None:
        request_checks.create_disk_snapshot(req)

    def name_for(self, req: CreateDiskSnapshotRequest) -> str:
        return req.name or generated_name(req.generate_name or f"{req.virtual_disk_name}-")

    def target_of(self, req: CreateDiskSnapshotRequest) -> ResourceRef:
        return ResourceRef(VIRTUAL_DISK.api_version, VIRTUAL_DISK.kind, req.virtual_disk_name, req.namespace)

    async def plan(self, reads: Reads, req: CreateDiskSnapshotRequest, name: str) -> Plan:
        disk = await reads.require(VIRTUAL_DISK, req.namespace, req.virtual_disk_name, "virtual_disk_name")
        warning = consistency_warning(disk, await attached_vms(reads, disk), req.required_consistency) \
            if req.required_consistency else None
        target = ResourceRef(VIRTUAL_DISK.api_version, VIRTUAL_DISK.kind, req.virtual_disk_name, req.namespace,
                             str(metadata(disk).get("uid", "")))
        return Plan(name=name, target=target, warnings=[warning] if warning else [])

    def manifest(self, op: Operation) -> dict[str, Any]:
        req = op.request
        return disk_snapshot_manifest(
            namespace=op.namespace, name=op.resource.name if op.resource else "", generate_name="",
            virtual_disk_name=op.target.name, required_consistency=bool(req.get("required_consistency", True)),
            labels=str_map(req.get("labels")), annotations=str_map(req.get("annotations")), operation_id=op.id,
            actor=op.actor)

    def follow(self, obj: dict[str, Any] | None) -> Mutation:
        return follow_resource(KIND, obj, deleting=False)


class DeleteDiskSnapshot:
    op_type = OperationType.DELETE_DISK_SNAPSHOT
    kind = KIND

    async def users(self, reads: Reads, namespace: str, name: str) -> list[PreconditionViolation]:
        found = []
        for vms in await reads.list(VIRTUAL_MACHINE_SNAPSHOT, namespace):
            if metadata(vms).get("deletionTimestamp"):
                continue
            names = status(vms).get("virtualDiskSnapshotNames")
            if isinstance(names, list) and name in names:
                vms_name = str(metadata(vms).get("name", ""))
                found.append(PreconditionViolation(
                    "IN_USE", f"virtualmachinesnapshots/{vms_name}",
                    f"VirtualMachineSnapshot {vms_name!r} holds this disk snapshot; deleting it would lose that "
                    "VM snapshot's disk (VirtualDiskSnapshotLost)"))
        for disk in await reads.list(VIRTUAL_DISK, namespace):
            source = spec(disk).get("dataSource")
            ref = source.get("objectRef") if isinstance(source, dict) else None
            if not isinstance(ref, dict) or ref.get("kind") != KIND.kind or ref.get("name") != name:
                continue
            if str(status(disk).get("phase", "")) in PROVISIONING_PHASES:
                disk_name = str(metadata(disk).get("name", ""))
                found.append(PreconditionViolation(
                    "IN_USE", f"virtualdisks/{disk_name}",
                    f"VirtualDisk {disk_name!r} is still being provisioned from this snapshot"))
        return found


def register(registry: Registry, deps: Deps) -> None:
    catalog: Catalog[DiskSnapshot, DiskSnapshotEvent] = Catalog(
        kind=KIND, view=disk_snapshot_from_resource, event=DiskSnapshotEvent, cluster=deps.cluster, hub=deps.hub,
        default_page_size=deps.default_page_size, max_page_size=deps.max_page_size,
        page_tokens=deps.page_tokens)
    catalog.serve(registry, contract.GET_DISK_SNAPSHOT, contract.LIST_DISK_SNAPSHOTS, contract.WATCH_DISK_SNAPSHOTS)
    registry.serve_creates(contract.CREATE_DISK_SNAPSHOT, CreateDiskSnapshot(), deps.flows,
                           lambda req: {"virtual_disk_name": req.virtual_disk_name,
                                        "required_consistency": req.required_consistency})
    registry.serve_deletes(contract.DELETE_DISK_SNAPSHOT, DeleteDiskSnapshot(), deps.flows)
