"""RestoreVirtualMachine: a VirtualMachineOperation of type Restore (DryRun, Strict, BestEffort).

The gateway checks every condition of the guide itself before writing, and reports each
conflict as a typed per-resource result (apiVersion, kind, name, status, reason, message):
- the VM exists and its uid is the one recorded in the snapshot;
- the snapshot's disks are not attached to another VM;
- its IP address and MAC addresses are not held by another VM;
- missing VirtualImage / ClusterVirtualImage / VirtualMachineClass: Strict restores and the
  VM stays Pending until they exist (as the guide says); BestEffort drops missing images.
DryRun writes the platform's own DryRun operation and answers with every conflict at
once, merged with the platform's ``status.resources``. Strict and BestEffort are refused
(FAILED_PRECONDITION, every conflict listed) while a conflict stands; nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from service.cluster.kinds import (
    ANNOTATION_VM_UID,
    CLUSTER_VIRTUAL_IMAGE,
    SECRET,
    VIRTUAL_DISK,
    VIRTUAL_IMAGE,
    VIRTUAL_MACHINE,
    VIRTUAL_MACHINE_CLASS,
    VIRTUAL_MACHINE_IP_ADDRESS,
    VIRTUAL_MACHINE_MAC_ADDRESS,
    VIRTUAL_MACHINE_OPERATION,
    VIRTUAL_MACHINE_SNAPSHOT,
)
from service.cluster.translate import (
    block_device_refs,
    metadata,
    phase,
    restore_vm_manifest,
    results_from_resource,
    spec,
    status,
)
from service.core import contract
from service.core import validation as v
from service.core.capabilities.flows import generated_name
from service.core.capabilities.registry import Deps, Registry
from service.core.capabilities.results import CONFLICT, follow_with_results
from service.core.capabilities.shape import Plan, Reads
from service.core.domain import ApplyMode, Operation, OperationType, ResourceRef, ResourceResult
from service.core.errors import (
    ApiError,
    Code,
    FieldViolation,
    PreconditionViolation,
    failed_precondition,
    invalid_argument,
)
from service.core.op_updates import Mutation
from service.core.requests import RestoreVmRequest

KIND = VIRTUAL_MACHINE_OPERATION
API = VIRTUAL_MACHINE.api_version
# Conflicts a Strict or BestEffort restore cannot go past.
IMAGE_KINDS = {VIRTUAL_IMAGE.kind: VIRTUAL_IMAGE, CLUSTER_VIRTUAL_IMAGE.kind: CLUSTER_VIRTUAL_IMAGE}
BLOCKING = frozenset({"VirtualMachineNotFound", "UidMismatch", "AttachedToAnotherVM", "IPAddressInUse",
                      "MACAddressInUse"})


def saved_configuration(secret: dict[str, Any] | None) -> dict[str, Any]:
    """The VM configuration a snapshot's Secret holds, read tolerantly: every data value
    that is base64 JSON with a VM ``spec`` (the platform keeps the VM as JSON there)."""
    data = secret.get("data") if isinstance(secret, dict) else None
    for value in (data or {}).values() if isinstance(data, dict) else ():
        try:
            doc = json.loads(base64.b64decode(str(value), validate=True))
        except (binascii.Error, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("spec"), dict):
            uid = doc.get("uid") or metadata(doc).get("uid") or ""
            return {"spec": doc["spec"], "uid": str(uid), "ipAddress": str(doc.get("ipAddress") or "")}
    return {}


def conflict(kind: str, name: str, reason: str, message: str, *, api_version: str = API,
             state: str = CONFLICT) -> ResourceResult:
    return ResourceResult(api_version, kind, name, state, message, reason)


# Errors a read may retry (the cluster is away): raised, never taken for an answer.
_TRANSIENT = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED})


async def _class_missing(reads: Reads, name: str) -> bool:
    """The VirtualMachineClass is known not to exist. A cluster that does not serve the
    class at the version the gateway reads (or denies it) leaves that unknown: no finding."""
    try:
        return await reads.find(VIRTUAL_MACHINE_CLASS, "", name) is None
    except ApiError as exc:
        if exc.code in _TRANSIENT:
            raise
        return False


def _holder(obj: dict[str, Any] | None) -> str:
    return str(status(obj).get("virtualMachineName") or "") if obj else ""


class RestoreVm:
    op_type = OperationType.RESTORE_VM
    kind = KIND
    request = RestoreVmRequest

    def check(self, req: RestoreVmRequest) -> None:
        found = v.namespace(req.namespace)
        found += v.dns1123_subdomain("virtual_machine_name", req.virtual_machine_name)
        found += v.dns1123_subdomain("virtual_machine_snapshot_name", req.virtual_machine_snapshot_name)
        if not isinstance(req.mode, ApplyMode):
            found.append(FieldViolation("mode", "must be DryRun, Strict or BestEffort"))
        found += v.request_id(req.request_id)
        v.raise_if_any(found)

    def name_for(self, req: RestoreVmRequest) -> str:
        return generated_name(f"{req.virtual_machine_name[:40].rstrip('.-')}-restore-")

    def target_of(self, req: RestoreVmRequest) -> ResourceRef:
        return ResourceRef(API, VIRTUAL_MACHINE.kind, req.virtual_machine_name, req.namespace)

    async def plan(self, reads: Reads, req: RestoreVmRequest, name: str) -> Plan:
        snap = await reads.require(VIRTUAL_MACHINE_SNAPSHOT, req.namespace, req.virtual_machine_snapshot_name,
                                   "virtual_machine_snapshot_name")
        snap_vm = str(spec(snap).get("virtualMachineName", ""))
        if snap_vm and snap_vm != req.virtual_machine_name:
            raise invalid_argument("the snapshot is of another virtual machine", [FieldViolation(
                "virtual_machine_snapshot_name",
                f"VirtualMachineSnapshot {req.virtual_machine_snapshot_name!r} is a snapshot of {snap_vm!r}, "
                f"not of {req.virtual_machine_name!r}")])
        if phase(snap) != "Ready":
            raise failed_precondition(
                "SNAPSHOT_NOT_READY", f"VirtualMachineSnapshot {req.virtual_machine_snapshot_name!r} is "
                f"{phase(snap) or 'Pending'}; only a Ready snapshot can be restored",
                [PreconditionViolation("SNAPSHOT_NOT_READY",
                                       f"virtualmachinesnapshots/{req.virtual_machine_snapshot_name}",
                                       "wait until the snapshot is Ready")])
        saved = await self._saved(reads, req.namespace, str(status(snap).get("virtualMachineSnapshotSecretName") or ""))
        vm = await reads.find(VIRTUAL_MACHINE, req.namespace, req.virtual_machine_name)
        results = await self._conflicts(reads, req, snap, saved, vm)
        blocking = [r for r in results if r.reason in BLOCKING]
        if blocking and req.mode is not ApplyMode.DRY_RUN:
            raise failed_precondition(
                blocking[0].reason, f"VirtualMachine {req.virtual_machine_name!r} cannot be restored from "
                f"{req.virtual_machine_snapshot_name!r}: " + "; ".join(r.message for r in blocking)
                + " (a DryRun restore lists every conflict)",
                [PreconditionViolation(r.reason, f"{r.kind}/{r.name}", r.message) for r in blocking])
        warnings = [r.message for r in results if r.reason not in BLOCKING]
        if req.mode is ApplyMode.DRY_RUN:
            warnings.insert(0, "DryRun: nothing is changed; the results list what a restore would do and every "
                               "conflict found")
        target = ResourceRef(API, VIRTUAL_MACHINE.kind, req.virtual_machine_name, req.namespace,
                             str(metadata(vm).get("uid", "")) if vm else "")
        return Plan(name=name, target=target, warnings=warnings, results=results)

    @staticmethod
    async def _saved(reads: Reads, namespace: str, secret_name: str) -> dict[str, Any]:
        """What the snapshot's Secret saved; {} when there is none or the gateway cannot read
        it (no RBAC for Secrets, or Secrets not reachable): the checks then use the VM as it is."""
        if not secret_name:
            return {}
        try:
            return saved_configuration(await reads.find(SECRET, namespace, secret_name))
        except ApiError as exc:
            if exc.code in _TRANSIENT:
                raise
            return {}

    async def _conflicts(self, reads: Reads, req: RestoreVmRequest, snap: dict[str, Any], saved: dict[str, Any],
                         vm: dict[str, Any] | None) -> list[ResourceResult]:
        ns, vm_name = req.namespace, req.virtual_machine_name
        found: list[ResourceResult] = []
        recorded_uid = str((metadata(snap).get("annotations") or {}).get(ANNOTATION_VM_UID) or saved.get("uid") or "")
        if vm is None:
            found.append(conflict(VIRTUAL_MACHINE.kind, vm_name, "VirtualMachineNotFound",
                                  f"VirtualMachine {vm_name!r} does not exist; it must exist to be restored"))
        elif recorded_uid and metadata(vm).get("uid") != recorded_uid:
            found.append(conflict(VIRTUAL_MACHINE.kind, vm_name, "UidMismatch",
                                  f"VirtualMachine {vm_name!r} has uid {metadata(vm).get('uid')}, but the snapshot "
                                  f"was taken of uid {recorded_uid} (a VM re-created under the same name)"))
        saved_refs = results_from_resource(snap)
        others = [o for o in await reads.list(VIRTUAL_MACHINE, ns) if metadata(o).get("name") != vm_name]
        for ref in saved_refs:
            if ref.kind == VIRTUAL_DISK.kind:
                users = [str(metadata(o).get("name")) for o in others
                         if (VIRTUAL_DISK.kind, ref.name) in block_device_refs(spec(o))]
                if users:
                    found.append(conflict(VIRTUAL_DISK.kind, ref.name, "AttachedToAnotherVM",
                                          f"VirtualDisk {ref.name!r} is attached to another VirtualMachine "
                                          f"{users[0]!r}; detach it or delete that VM first"))
            elif ref.kind in (VIRTUAL_MACHINE_IP_ADDRESS.kind, VIRTUAL_MACHINE_MAC_ADDRESS.kind):
                found += await self._address_conflict(reads, ns, vm_name, ref.kind, ref.name, saved)
        # What the snapshot saved, else (a Secret the gateway cannot read) the VM as it is now.
        found += await self._missing_dependencies(reads, req, saved.get("spec") or (spec(vm) if vm else {}))
        return found

    @staticmethod
    async def _address_conflict(reads: Reads, ns: str, vm_name: str, kind: str, name: str,
                                saved: dict[str, Any]) -> list[ResourceResult]:
        is_ip = kind == VIRTUAL_MACHINE_IP_ADDRESS.kind
        address_kind = VIRTUAL_MACHINE_IP_ADDRESS if is_ip else VIRTUAL_MACHINE_MAC_ADDRESS
        current = await reads.find(address_kind, ns, name)
        holder = _holder(current)
        address = str(status(current).get("address") or spec(current).get("staticIP") or spec(current).get("address")
                      or "") if current else (saved.get("ipAddress", "") if is_ip else "")
        if not holder or holder == vm_name:
            # The address object is free (or ours); another object may still hold the same address.
            holder = ""
            if address:
                for other in await reads.list(address_kind, ns):
                    if (metadata(other).get("name") != name and status(other).get("address") == address
                            and _holder(other) not in ("", vm_name)):
                        holder = _holder(other)
                        break
        if not holder:
            return []
        what = "IP address" if is_ip else "MAC address"
        reason = "IPAddressInUse" if is_ip else "MACAddressInUse"
        return [conflict(kind, name, reason, f"the {what} {address or name} is in use by VirtualMachine {holder!r}")]

    @staticmethod
    async def _missing_dependencies(reads: Reads, req: RestoreVmRequest,
                                    vm_spec: dict[str, Any]) -> list[ResourceResult]:
        found = []
        for kind, name in block_device_refs(vm_spec):
            image_kind = IMAGE_KINDS.get(kind)
            if image_kind is None:
                continue
            if await reads.find(image_kind, req.namespace if image_kind.namespaced else "", name) is not None:
                continue
            if req.mode is ApplyMode.BEST_EFFORT:
                found.append(conflict(kind, name, "ImageNotFound", f"{kind} {name!r} does not exist: BestEffort "
                                      "drops it from the restored VM's block devices", state="Dropped"))
            else:
                found.append(conflict(kind, name, "ImageNotFound", f"{kind} {name!r} does not exist: the restored "
                                      "VM stays Pending until it exists (BestEffort would drop it)", state="Pending"))
        class_name = vm_spec.get("virtualMachineClassName")
        if isinstance(class_name, str) and class_name and await _class_missing(reads, class_name):
            found.append(conflict(VIRTUAL_MACHINE_CLASS.kind, class_name, "ClassNotFound",
                                  f"VirtualMachineClass {class_name!r} does not exist: the restored VM stays "
                                  "Pending until it exists", state="Pending"))
        return found

    def manifest(self, op: Operation) -> dict[str, Any]:
        req = op.request
        return restore_vm_manifest(
            namespace=op.namespace, name=op.resource.name if op.resource else "",
            virtual_machine_name=op.target.name,
            virtual_machine_snapshot_name=str(req.get("virtual_machine_snapshot_name", "")),
            mode=ApplyMode(req.get("mode") or ApplyMode.STRICT.value), operation_id=op.id, actor=op.actor)

    def follow(self, obj: dict[str, Any] | None) -> Mutation:
        return follow_with_results(KIND, obj)


def register(registry: Registry, deps: Deps) -> None:
    registry.serve_creates(contract.RESTORE_VM, RestoreVm(), deps.flows,
                           lambda req: {"virtual_machine_snapshot_name": req.virtual_machine_snapshot_name,
                                        "mode": str(req.mode)})
