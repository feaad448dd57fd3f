"""VM snapshots: VirtualMachineSnapshot create, get, list, delete, watch.

Preconditions, each a FAILED_PRECONDITION naming the device (checked before anything
is written): no disk is being resized, every block device is ready. The guide's
warnings come back on the operation: attached images are not saved, the snapshot cannot
be consistent now, a dynamic IP address will be pinned as static, changes awaiting a
restart go into the snapshot. On Ready the operation's results list what was saved
(``status.resources``) and the per-disk snapshots.
"""

from __future__ import annotations

from typing import Any

from service.cluster.consistency import vm_consistency_warning
from service.cluster.kinds import (
    ANNOTATION_VM_UID,
    CLUSTER_VIRTUAL_IMAGE,
    VIRTUAL_DISK,
    VIRTUAL_DISK_SNAPSHOT,
    VIRTUAL_IMAGE,
    VIRTUAL_MACHINE,
    VIRTUAL_MACHINE_IP_ADDRESS,
    VIRTUAL_MACHINE_OPERATION,
    VIRTUAL_MACHINE_SNAPSHOT,
)
from service.cluster.translate import (
    block_device_refs,
    conditions_from_resource,
    metadata,
    phase,
    results_from_resource,
    spec,
    status,
    vm_snapshot_from_resource,
    vm_snapshot_manifest,
)
from service.core import contract
from service.core import validation as v
from service.core.capabilities.catalog import Catalog
from service.core.capabilities.disk_snapshots import str_map
from service.core.capabilities.flows import generated_name
from service.core.capabilities.registry import Deps, Registry
from service.core.capabilities.shape import Plan, Reads
from service.core.domain import (
    KeepIpAddress,
    Operation,
    OperationState,
    OperationType,
    ResourceRef,
    ResourceResult,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotEvent,
)
from service.core.errors import FieldViolation, PreconditionViolation, failed_precondition
from service.core.op_updates import Change, Mutation
from service.core.progress import follow_resource
from service.core.request_checks import RESERVED_ANNOTATIONS, RESERVED_LABELS
from service.core.requests import (
    CreateVmSnapshotRequest,
)

KIND = VIRTUAL_MACHINE_SNAPSHOT
IMAGE_KINDS = {VIRTUAL_IMAGE.kind: VIRTUAL_IMAGE, CLUSTER_VIRTUAL_IMAGE.kind: CLUSTER_VIRTUAL_IMAGE}


def check_create(req: CreateVmSnapshotRequest) -> None:
    found = v.namespace(req.namespace)
    found += v.dns1123_subdomain("virtual_machine_name", req.virtual_machine_name)
    found += v.dns1123_subdomain("name", req.name, required=False)
    found += v.generate_name("generate_name", req.generate_name)
    if req.name and req.generate_name:
        found.append(FieldViolation("generate_name", "must be empty when name is given"))
    if not isinstance(req.required_consistency, bool):
        found.append(FieldViolation("required_consistency", "must be a boolean"))
    if not isinstance(req.keep_ip_address, KeepIpAddress):
        found.append(FieldViolation("keep_ip_address", "must be Always or Never"))
    found += v.label_map("labels", req.labels, reserved=RESERVED_LABELS)
    found += v.annotation_map("annotations", req.annotations, reserved=(*RESERVED_ANNOTATIONS, ANNOTATION_VM_UID))
    found += v.request_id(req.request_id)
    v.raise_if_any(found)


async def device_problems(reads: Reads, vm: dict[str, Any]) -> tuple[list[PreconditionViolation], list[str]]:
    """Block devices that stop a snapshot (violations), and the attached images (names)."""
    namespace = str(metadata(vm).get("namespace", ""))
    problems: list[PreconditionViolation] = []
    images: list[str] = []
    for kind, name in block_device_refs(spec(vm)):
        if kind == VIRTUAL_DISK.kind:
            disk = await reads.find(VIRTUAL_DISK, namespace, name)
            disk_phase = phase(disk)
            if disk is not None and disk_phase == "Resizing":
                problems.append(PreconditionViolation(
                    "DISK_RESIZING", f"virtualdisks/{name}",
                    f"VirtualDisk {name!r} is being resized; snapshot the VM once the resize is done"))
            elif disk_phase != "Ready":
                problems.append(PreconditionViolation(
                    "BLOCK_DEVICE_NOT_READY", f"virtualdisks/{name}",
                    f"VirtualDisk {name!r} is {disk_phase or 'missing'}, not Ready"))
        elif kind in IMAGE_KINDS:
            images.append(f"{kind} {name!r}")
            image_kind = IMAGE_KINDS[kind]
            image = await reads.find(image_kind, namespace if image_kind.namespaced else "", name)
            if phase(image) != "Ready":
                problems.append(PreconditionViolation(
                    "BLOCK_DEVICE_NOT_READY", f"{image_kind.plural}/{name}",
                    f"{kind} {name!r} is {phase(image) or 'missing'}, not Ready"))
    return problems, images


async def warnings_for(reads: Reads, vm: dict[str, Any], req: CreateVmSnapshotRequest,
                       images: list[str]) -> list[str]:
    """The guide's warnings for a VM snapshot, in the order a reader needs them."""
    found: list[str] = []
    vm_name = req.virtual_machine_name
    if images:
        found.append(f"images are not saved in a VM snapshot: {', '.join(images)} stay(s) attached by reference "
                     "only; a restore needs them to exist (a BestEffort restore drops missing ones)")
    inconsistent = vm_consistency_warning(vm, req.required_consistency)
    if inconsistent:
        found.append(inconsistent)
    if req.keep_ip_address is KeepIpAddress.ALWAYS:
        ip_name = str(status(vm).get("virtualMachineIPAddressName") or spec(vm).get("virtualMachineIPAddressName")
                      or "")
        vmip = await reads.find(VIRTUAL_MACHINE_IP_ADDRESS, req.namespace, ip_name) if ip_name else None
        if vmip is not None and spec(vmip).get("type") != "Static":
            address = status(vmip).get("address") or "its current address"
            found.append(f"the dynamic IP address {address} of VirtualMachine {vm_name!r} will be pinned as static "
                         f"(VirtualMachineIPAddress {ip_name!r}) so that a restore gets it back; set "
                         "keep_ip_address to NEVER to leave it dynamic")
    pending = status(vm).get("restartAwaitingChanges")
    awaiting = any(c.type == "AwaitingRestartToApplyConfiguration" and c.status == "True"
                   for c in conditions_from_resource(vm))
    if awaiting or (isinstance(pending, list) and pending):
        found.append(f"VirtualMachine {vm_name!r} has changes awaiting a restart; the snapshot saves the VM's "
                     "configuration with them, so a restore applies them")
    return found


class CreateVmSnapshot:
    op_type = OperationType.CREATE_VM_SNAPSHOT
    kind = KIND
    request = CreateVmSnapshotRequest

    def check(self, req: CreateVmSnapshotRequest) -> None:
        check_create(req)

    def name_for(self, req: CreateVmSnapshotRequest) -> str:
        return req.name or generated_name(req.generate_name or f"{req.virtual_machine_name}-")

    def target_of(self, req: CreateVmSnapshotRequest) -> ResourceRef:
        return ResourceRef(VIRTUAL_MACHINE.api_version, VIRTUAL_MACHINE.kind, req.virtual_machine_name, req.namespace)

    async def plan(self, reads: Reads, req: CreateVmSnapshotRequest, name: str) -> Plan:
        vm = await reads.require(VIRTUAL_MACHINE, req.namespace, req.virtual_machine_name, "virtual_machine_name")
        problems, images = await device_problems(reads, vm)
        if problems:
            raise failed_precondition(
                problems[0].type, f"VirtualMachine {req.virtual_machine_name!r} cannot be snapshotted now: "
                + "; ".join(p.description for p in problems), problems)
        target = ResourceRef(VIRTUAL_MACHINE.api_version, VIRTUAL_MACHINE.kind, req.virtual_machine_name,
                             req.namespace, str(metadata(vm).get("uid", "")))
        return Plan(name=name, target=target, warnings=await warnings_for(reads, vm, req, images))

    def manifest(self, op: Operation) -> dict[str, Any]:
        req = op.request
        annotations = str_map(req.get("annotations"))
        if op.target.uid:
            annotations[ANNOTATION_VM_UID] = op.target.uid
        keep = KeepIpAddress(req.get("keep_ip_address") or KeepIpAddress.ALWAYS.value)
        return vm_snapshot_manifest(
            namespace=op.namespace, name=op.resource.name if op.resource else "",
            virtual_machine_name=op.target.name, required_consistency=bool(req.get("required_consistency", True)),
            keep_ip_address=keep, labels=str_map(req.get("labels")), annotations=annotations, operation_id=op.id,
            actor=op.actor)

    def follow(self, obj: dict[str, Any] | None) -> Mutation:
        follow = follow_resource(KIND, obj, deleting=False)

        def mutate(op: Operation) -> Change | None:
            change = follow(op)
            if obj is None or op.state is not OperationState.SUCCEEDED:
                return change
            saved = saved_results(obj)
            if saved == op.results:
                return change
            op.results = saved
            return change or Change("Saved", f"{len(saved)} resources saved")

        return mutate


def saved_results(obj: dict[str, Any]) -> list[ResourceResult]:
    """What a Ready VM snapshot saved (``status.resources``) and its per-disk snapshots."""
    results = [ResourceResult(r.api_version, r.kind, r.name, "Saved", r.message, "Saved")
               for r in results_from_resource(obj)]
    names = status(obj).get("virtualDiskSnapshotNames")
    for name in names if isinstance(names, list) else []:
        if isinstance(name, str):
            results.append(ResourceResult(VIRTUAL_DISK_SNAPSHOT.api_version, VIRTUAL_DISK_SNAPSHOT.kind, name,
                                          "Saved", "the snapshot of one of the VM's disks", "DiskSnapshot"))
    return results


class DeleteVmSnapshot:
    op_type = OperationType.DELETE_VM_SNAPSHOT
    kind = KIND

    async def users(self, reads: Reads, namespace: str, name: str) -> list[PreconditionViolation]:
        """A restore still reading the snapshot (its VirtualMachineOperation not finished)."""
        found = []
        for vmop in await reads.list(VIRTUAL_MACHINE_OPERATION, namespace):
            restore = spec(vmop).get("restore")
            if not isinstance(restore, dict) or restore.get("virtualMachineSnapshotName") != name:
                continue
            if phase(vmop) in ("Completed", "Failed", "Superseded") or metadata(vmop).get("deletionTimestamp"):
                continue
            vmop_name = str(metadata(vmop).get("name", ""))
            found.append(PreconditionViolation(
                "IN_USE", f"virtualmachineoperations/{vmop_name}",
                f"the restore VirtualMachineOperation {vmop_name!r} is still using this snapshot"))
        return found


def register(registry: Registry, deps: Deps) -> None:
    catalog: Catalog[VirtualMachineSnapshot, VirtualMachineSnapshotEvent] = Catalog(
        kind=KIND, view=vm_snapshot_from_resource, event=VirtualMachineSnapshotEvent, cluster=deps.cluster,
        hub=deps.hub, default_page_size=deps.default_page_size, max_page_size=deps.max_page_size,
        page_tokens=deps.page_tokens)
    catalog.serve(registry, contract.GET_VM_SNAPSHOT, contract.LIST_VM_SNAPSHOTS, contract.WATCH_VM_SNAPSHOTS)
    registry.serve_creates(contract.CREATE_VM_SNAPSHOT, CreateVmSnapshot(), deps.flows,
                           lambda req: {"virtual_machine_name": req.virtual_machine_name,
                                        "required_consistency": req.required_consistency,
                                        "keep_ip_address": str(req.keep_ip_address)})
    registry.serve_deletes(contract.DELETE_VM_SNAPSHOT, DeleteVmSnapshot(), deps.flows)
