"""Clones: CloneVirtualMachine (VirtualMachineOperation Clone, from a stopped VM) and
CreateVirtualMachineFromSnapshot (VirtualMachineSnapshotOperation CreateVirtualMachine).

The whole name map is planned before anything is written: every object the clone will
create (the VM, its disks; its IP and MAC address objects are new ones the platform
names) with its final name (``service.cluster.naming``), each checked for a valid name
and for a collision, with existing objects and with the names other clones in flight
will take. Invalid names come back at once as field violations; taken names as one
ALREADY_EXISTS listing every one. A DryRun answers the map (old -> new) and every
conflict as typed results and creates nothing. Missing images: BestEffort drops them
and says so, Strict refuses naming them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from service.cluster.kinds import (
    CLUSTER_VIRTUAL_IMAGE,
    SECRET,
    VIRTUAL_DISK,
    VIRTUAL_IMAGE,
    VIRTUAL_MACHINE,
    VIRTUAL_MACHINE_IP_ADDRESS,
    VIRTUAL_MACHINE_MAC_ADDRESS,
    VIRTUAL_MACHINE_OPERATION,
    VIRTUAL_MACHINE_SNAPSHOT,
    VIRTUAL_MACHINE_SNAPSHOT_OPERATION,
)
from service.cluster.naming import clone_name
from service.cluster.translate import (
    block_device_refs,
    clone_vm_manifest,
    metadata,
    phase,
    results_from_resource,
    spec,
    status,
    vm_from_snapshot_manifest,
)
from service.core import contract
from service.core import validation as v
from service.core.capabilities.flows import generated_name
from service.core.capabilities.registry import Deps, Registry
from service.core.capabilities.restore_vm import saved_configuration
from service.core.capabilities.results import CONFLICT, finding, follow_with_results
from service.core.capabilities.shape import Plan, Reads
from service.core.domain import ApplyMode, Operation, OperationState, OperationType, ResourceRef, ResourceResult
from service.core.errors import (
    ApiError,
    Code,
    FieldViolation,
    PreconditionViolation,
    failed_precondition,
)
from service.core.op_updates import Change, Mutation
from service.core.ports import OperationRepository, ResourceKind
from service.core.requests import CloneOptions, CloneVmRequest, CreateVmFromSnapshotRequest, NameReplacement

API = VIRTUAL_MACHINE.api_version
AFFIX_MAX = 59
# Objects a clone creates under a name from the map; address objects are new ones the platform names.
RENAMED_KINDS: dict[str, ResourceKind] = {VIRTUAL_MACHINE.kind: VIRTUAL_MACHINE, VIRTUAL_DISK.kind: VIRTUAL_DISK}
ADDRESS_KINDS = (VIRTUAL_MACHINE_IP_ADDRESS.kind, VIRTUAL_MACHINE_MAC_ADDRESS.kind)
REPLACEABLE_KINDS = (*RENAMED_KINDS, *ADDRESS_KINDS)
IMAGE_KINDS = {VIRTUAL_IMAGE.kind: VIRTUAL_IMAGE, CLUSTER_VIRTUAL_IMAGE.kind: CLUSTER_VIRTUAL_IMAGE}
TERMINAL_PHASES = frozenset({"Completed", "Failed", "Superseded"})
CLONE_TYPES = frozenset({OperationType.CLONE_VM, OperationType.CREATE_VM_FROM_SNAPSHOT})

GUEST_WARNING = (
    "prepare the guest before cloning, as the guide says: reset /etc/machine-id, remove the SSH host keys, "
    "static network settings and the cloud-init cache (cloud-init clean); run sysprep on Windows; otherwise the "
    "clone shares the source's identity")
ADDRESS_WARNING = "the clone gets a new IP address and new MAC addresses (new VirtualMachineIPAddress and " \
                  "VirtualMachineMACAddress objects, named by the platform)"
TEMPORARY_WARNING = ("the platform takes a temporary snapshot for the clone and removes it afterwards; the new "
                     "disks' dataSource still names it, which is expected (see the guide)")


@dataclass(frozen=True)
class Source:
    """One object the clone copies."""

    kind: str
    name: str


MAX_NAME_REPLACEMENTS = 256


def check_options(opts: CloneOptions) -> list[FieldViolation]:
    """Every rule on the naming options that needs no cluster read."""
    if len(opts.name_replacements) > MAX_NAME_REPLACEMENTS:  # each costs checks; a clone names few objects
        return [FieldViolation("name_replacements", f"must have at most {MAX_NAME_REPLACEMENTS} entries")]
    found: list[FieldViolation] = []
    if opts.mode is None:
        found.append(FieldViolation("mode", "is required: DryRun, Strict or BestEffort"))
    elif not isinstance(opts.mode, ApplyMode):
        found.append(FieldViolation("mode", "must be DryRun, Strict or BestEffort"))
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(opts.name_replacements):
        where = f"name_replacements[{i}]"
        found += v.dns1123_subdomain(f"{where}.from.name", r.from_name)
        if r.from_kind and r.from_kind not in REPLACEABLE_KINDS:
            kinds = ", ".join(REPLACEABLE_KINDS)
            found.append(FieldViolation(f"{where}.from.kind", f"must be empty or one of {kinds}"))
        if not 1 <= len(r.to) <= AFFIX_MAX:
            found.append(FieldViolation(f"{where}.to", f"must be 1-{AFFIX_MAX} characters"))
        if (r.from_kind, r.from_name) in seen:
            found.append(FieldViolation(f"{where}.from", "renames the same object as an earlier replacement"))
        seen.add((r.from_kind, r.from_name))
    for field, value in (("name_prefix", opts.name_prefix), ("name_suffix", opts.name_suffix)):
        if value is not None and not 1 <= len(value) <= AFFIX_MAX:
            found.append(FieldViolation(f"customization.{field}", f"must be 1-{AFFIX_MAX} characters when set"))
    if not opts.name_replacements and opts.name_prefix is None and opts.name_suffix is None:
        found.append(FieldViolation("customization", "set at least one of customization.name_prefix, "
                                                     "customization.name_suffix or name_replacements"))
    return found


def new_name(opts: CloneOptions, source: Source) -> str:
    return clone_name(source.kind, source.name, prefix=opts.name_prefix or "", suffix=opts.name_suffix or "",
                      replacements=[(r.from_kind, r.from_name, r.to) for r in opts.name_replacements])


def _replacement_of(opts: CloneOptions, source: Source) -> int | None:
    for i, r in enumerate(opts.name_replacements):
        if r.from_name == source.name and r.from_kind in ("", source.kind):
            return i
    return None


def name_map(opts: CloneOptions, sources: list[Source]) -> list[ResourceResult]:
    """Every object the clone creates, old -> new (pure)."""
    planned = []
    for source in sources:
        if source.kind in RENAMED_KINDS:
            target = new_name(opts, source)
            planned.append(ResourceResult(API, source.kind, target, "Planned",
                                          f"{source.kind} {source.name!r} is cloned as {target!r}", "Renamed",
                                          source.name))
        else:
            planned.append(ResourceResult(API, source.kind, "", "Planned",
                                          f"a new {source.kind} replaces {source.name!r}; the platform names it",
                                          "NewAddress", source.name))
    return planned


def map_violations(opts: CloneOptions, sources: list[Source], planned: list[ResourceResult]) -> list[FieldViolation]:
    """Names that would be invalid or collide within the map, and replacements that match nothing."""
    found: list[FieldViolation] = []
    taken: dict[tuple[str, str], str] = {}
    for source, entry in zip(sources, planned, strict=True):
        if source.kind not in RENAMED_KINDS:
            continue
        index = _replacement_of(opts, source)
        field = f"name_replacements[{index}].to" if index is not None else "customization"
        for problem in v.dns1123_label(field, entry.name):
            found.append(FieldViolation(field, f"{source.kind} {source.name!r} would be named {entry.name!r}: "
                                               f"a name {problem.description}"))
        earlier = taken.get((source.kind, entry.name))
        if earlier is not None:
            found.append(FieldViolation(field, f"{source.kind} {source.name!r} and {earlier!r} would both be named "
                                               f"{entry.name!r}"))
        taken[(source.kind, entry.name)] = source.name
    for i, r in enumerate(opts.name_replacements):
        if not any(s.name == r.from_name and r.from_kind in ("", s.kind) for s in sources):
            objects = ", ".join(f"{s.kind} {s.name!r}" for s in sources)
            found.append(FieldViolation(f"name_replacements[{i}].from",
                                        f"matches no object the clone creates ({objects})"))
    return found


async def _planned_by_other_clones(reads: Reads, operations: OperationRepository, namespace: str,
                                   resource_name: str) -> dict[tuple[str, str], str]:
    """Names that clones still in flight in the namespace will take: (kind, name) -> by whom.

    The gateway's own clones from their write-ahead rows (committed before their resource
    is written, so a clone accepted a moment ago counts); anyone else's from the cluster's
    operations, read from the shared watches. ``resource_name`` is the clone being planned
    (a replay must not collide with its own row or its own custom resource)."""
    planned: dict[tuple[str, str], str] = {}
    for op in await operations.unfinished():
        dry_run = (op.request.get("options") or {}).get("mode") == ApplyMode.DRY_RUN.value
        itself = op.resource is not None and op.resource.name == resource_name
        if op.namespace == namespace and op.type in CLONE_TYPES and not dry_run and not itself:
            for r in op.results:
                if r.reason == "Renamed":
                    planned[(r.kind, r.name)] = f"operation {op.id}"
    for kind, params_key in ((VIRTUAL_MACHINE_OPERATION, "clone"),
                             (VIRTUAL_MACHINE_SNAPSHOT_OPERATION, "createVirtualMachine")):
        for op_obj in await reads.list_cached(kind, namespace):
            params = spec(op_obj).get(params_key)
            if not isinstance(params, dict) or phase(op_obj) in TERMINAL_PHASES \
                    or metadata(op_obj).get("deletionTimestamp") or params.get("mode") == "DryRun" \
                    or metadata(op_obj).get("name") == resource_name:
                continue
            opts = options_from_spec(params)
            if kind is VIRTUAL_MACHINE_OPERATION:
                vm = await reads.find(VIRTUAL_MACHINE, namespace, str(spec(op_obj).get("virtualMachineName", "")))
                sources = vm_sources(vm) if vm is not None else []
            else:
                snap = await reads.find(VIRTUAL_MACHINE_SNAPSHOT, namespace,
                                        str(spec(op_obj).get("virtualMachineSnapshotName", "")))
                sources = snapshot_sources(snap) if snap is not None else []
            for source in sources:
                if source.kind in RENAMED_KINDS:
                    planned.setdefault((source.kind, new_name(opts, source)),
                                       f"{kind.kind} {metadata(op_obj).get('name')!r}")
    return planned


def options_from_spec(params: dict[str, Any]) -> CloneOptions:
    """The naming options of a clone written by anyone (read back from its custom resource)."""
    replacements = []
    for item in params.get("nameReplacement") or []:
        source = item.get("from") if isinstance(item, dict) else None
        if isinstance(source, dict):
            replacements.append(NameReplacement(str(source.get("name", "")), str(item.get("to", "")),
                                                str(source.get("kind", "") or "")))
    customization = params.get("customization") if isinstance(params.get("customization"), dict) else {}
    prefix, suffix = (customization or {}).get("namePrefix"), (customization or {}).get("nameSuffix")
    return CloneOptions(None, tuple(replacements), prefix if isinstance(prefix, str) else None,
                        suffix if isinstance(suffix, str) else None)


def vm_sources(vm: dict[str, Any]) -> list[Source]:
    """What cloning a VM copies: the VM, its disks, and its address objects (replaced by new ones)."""
    sources = [Source(VIRTUAL_MACHINE.kind, str(metadata(vm).get("name", "")))]
    sources += [Source(kind, name) for kind, name in block_device_refs(spec(vm)) if kind == VIRTUAL_DISK.kind]
    ip_name = status(vm).get("virtualMachineIPAddressName") or spec(vm).get("virtualMachineIPAddressName")
    if isinstance(ip_name, str) and ip_name:
        sources.append(Source(VIRTUAL_MACHINE_IP_ADDRESS.kind, ip_name))
    networks = status(vm).get("networks")
    for net in networks if isinstance(networks, list) else []:
        mac = net.get("virtualMachineMACAddressName") if isinstance(net, dict) else None
        if isinstance(mac, str) and mac:
            sources.append(Source(VIRTUAL_MACHINE_MAC_ADDRESS.kind, mac))
    return sources


def snapshot_sources(snap: dict[str, Any]) -> list[Source]:
    """What creating a VM from a snapshot copies: what the snapshot saved (``status.resources``)."""
    kinds = (*RENAMED_KINDS, *ADDRESS_KINDS)
    saved = [Source(r.kind, r.name) for r in results_from_resource(snap) if r.kind in kinds]
    return sorted(saved, key=lambda s: kinds.index(s.kind))


class _Clone:
    """What both clone calls share: the name map, its checks, images, warnings, results."""

    kind: ResourceKind

    def __init__(self, operations: OperationRepository) -> None:
        self._operations = operations

    async def _plan(self, reads: Reads, name: str, opts: CloneOptions, sources: list[Source],
                    vm_spec: dict[str, Any], target: ResourceRef) -> Plan:
        namespace = target.namespace
        planned = name_map(opts, sources)
        v.raise_if_any(map_violations(opts, sources, planned), "the clone's names are invalid")
        conflicts = await self._taken(reads, namespace, planned, name)
        images = await self._missing_images(reads, namespace, vm_spec, opts.mode)
        if opts.mode is not ApplyMode.DRY_RUN:
            if conflicts:
                raise ApiError(
                    Code.ALREADY_EXISTS, "NAMES_TAKEN",
                    "the clone would create objects whose names are taken: "
                    + "; ".join(f"{c.kind} {c.name!r}" for c in conflicts) + " (nothing was written)",
                    precondition_violations=[PreconditionViolation("NAME_TAKEN", f"{c.kind}/{c.name}", c.message)
                                             for c in conflicts],
                    metadata={"names": ",".join(f"{c.kind}/{c.name}" for c in conflicts)})
            missing = [i for i in images if i.status == CONFLICT]
            if missing:
                raise failed_precondition(
                    "IMAGE_NOT_FOUND", "a Strict clone needs every image the VM uses: "
                    + "; ".join(i.message for i in missing) + " (BestEffort drops missing images)",
                    [PreconditionViolation("IMAGE_NOT_FOUND", f"{i.kind}/{i.name}", i.message) for i in missing])
        results = _replace_by_key(planned, conflicts) + images
        warnings = [GUEST_WARNING, ADDRESS_WARNING, TEMPORARY_WARNING]
        run_policy = vm_spec.get("runPolicy")
        if run_policy != "AlwaysOff":
            warnings.insert(0, f"the clone inherits runPolicy {run_policy or 'AlwaysOnUnlessStoppedManually'}, so it "
                               "may start as soon as it is created; AlwaysOff on the source (or a change of the "
                               "clone right after) keeps it stopped until the guest is prepared")
        warnings += [i.message for i in images if i.status == "Dropped"]
        if opts.mode is ApplyMode.DRY_RUN:
            warnings.insert(0, "DryRun: nothing is created; the results are the name map (sourceName -> name) "
                               "and every conflict found")
        return Plan(name=name, target=target, warnings=warnings, results=results)

    async def _taken(self, reads: Reads, namespace: str, planned: list[ResourceResult],
                     resource_name: str) -> list[ResourceResult]:
        others = await _planned_by_other_clones(reads, self._operations, namespace, resource_name)
        found = []
        for entry in planned:
            kind = RENAMED_KINDS.get(entry.kind)
            if kind is None:
                continue
            if await reads.fresh(kind, namespace, entry.name) is not None:
                found.append(finding(API, entry.kind, entry.name, "NameTaken",
                                     f"{entry.kind} {entry.name!r} already exists", source_name=entry.source_name))
            elif (entry.kind, entry.name) in others:
                found.append(finding(API, entry.kind, entry.name, "NameTaken",
                                     f"{entry.kind} {entry.name!r} will be created by "
                                     f"{others[(entry.kind, entry.name)]}, still in progress",
                                     source_name=entry.source_name))
        return found

    @staticmethod
    async def _missing_images(reads: Reads, namespace: str, vm_spec: dict[str, Any],
                              mode: ApplyMode | None) -> list[ResourceResult]:
        found = []
        for kind, name in block_device_refs(vm_spec):
            image_kind = IMAGE_KINDS.get(kind)
            if image_kind is None or await reads.find(image_kind, namespace if image_kind.namespaced else "",
                                                      name) is not None:
                continue
            if mode is ApplyMode.BEST_EFFORT:
                found.append(finding(API, kind, name, "ImageNotFound", f"{kind} {name!r} does not exist: BestEffort "
                                     "drops it from the clone's block devices", status="Dropped"))
            else:
                found.append(finding(API, kind, name, "ImageNotFound", f"{kind} {name!r} does not exist"))
        return found

    def follow(self, obj: dict[str, Any] | None) -> Mutation:
        follow = follow_with_results(self.kind, obj)

        def mutate(op: Operation) -> Change | None:
            change = follow(op)
            if op.state is OperationState.SUCCEEDED and op.request.get("options", {}).get("mode") != "DryRun":
                # The new address objects exist now; the platform named them.
                op.results = [replace(r, status="Created") if r.reason == "NewAddress" and r.status == "Planned"
                              else r for r in op.results]
            return change

        return mutate


def _replace_by_key(planned: list[ResourceResult], conflicts: list[ResourceResult]) -> list[ResourceResult]:
    by_key = {(c.kind, c.name): c for c in conflicts}
    return [by_key.get((p.kind, p.name), p) for p in planned]


class CloneVm(_Clone):
    op_type = OperationType.CLONE_VM
    kind = VIRTUAL_MACHINE_OPERATION
    request = CloneVmRequest

    def check(self, req: CloneVmRequest) -> None:
        found = v.namespace(req.namespace) + v.dns1123_subdomain("virtual_machine_name", req.virtual_machine_name)
        v.raise_if_any(found + check_options(req.options) + v.request_id(req.request_id))

    def name_for(self, req: CloneVmRequest) -> str:
        return generated_name(f"{req.virtual_machine_name[:40].rstrip('.-')}-clone-")

    def target_of(self, req: CloneVmRequest) -> ResourceRef:
        return ResourceRef(API, VIRTUAL_MACHINE.kind, req.virtual_machine_name, req.namespace)

    async def plan(self, reads: Reads, req: CloneVmRequest, name: str) -> Plan:
        vm = await reads.require(VIRTUAL_MACHINE, req.namespace, req.virtual_machine_name, "virtual_machine_name")
        if phase(vm) != "Stopped":
            raise failed_precondition(
                "VM_NOT_STOPPED", f"VirtualMachine {req.virtual_machine_name!r} is {phase(vm) or 'not Stopped'}; "
                "the guide requires a stopped VM for a clone: stop it first",
                [PreconditionViolation("VM_NOT_STOPPED", f"virtualmachines/{req.virtual_machine_name}",
                                       "stop the virtual machine, then clone it")])
        target = ResourceRef(API, VIRTUAL_MACHINE.kind, req.virtual_machine_name, req.namespace,
                             str(metadata(vm).get("uid", "")))
        return await self._plan(reads, name, req.options, vm_sources(vm), spec(vm), target)

    def manifest(self, op: Operation) -> dict[str, Any]:
        return clone_vm_manifest(namespace=op.namespace, name=op.resource.name if op.resource else "",
                                 virtual_machine_name=op.target.name, options=dict(op.request.get("options") or {}),
                                 operation_id=op.id, actor=op.actor)


class CreateVmFromSnapshot(_Clone):
    op_type = OperationType.CREATE_VM_FROM_SNAPSHOT
    kind = VIRTUAL_MACHINE_SNAPSHOT_OPERATION
    request = CreateVmFromSnapshotRequest

    def check(self, req: CreateVmFromSnapshotRequest) -> None:
        found = v.namespace(req.namespace)
        found += v.dns1123_subdomain("virtual_machine_snapshot_name", req.virtual_machine_snapshot_name)
        v.raise_if_any(found + check_options(req.options) + v.request_id(req.request_id))

    def name_for(self, req: CreateVmFromSnapshotRequest) -> str:
        return generated_name(f"{req.virtual_machine_snapshot_name[:40].rstrip('.-')}-new-vm-")

    def target_of(self, req: CreateVmFromSnapshotRequest) -> ResourceRef:
        return ResourceRef(API, VIRTUAL_MACHINE_SNAPSHOT.kind, req.virtual_machine_snapshot_name, req.namespace)

    async def plan(self, reads: Reads, req: CreateVmFromSnapshotRequest, name: str) -> Plan:
        snap = await reads.require(VIRTUAL_MACHINE_SNAPSHOT, req.namespace, req.virtual_machine_snapshot_name,
                                   "virtual_machine_snapshot_name")
        if phase(snap) != "Ready":
            raise failed_precondition(
                "SNAPSHOT_NOT_READY", f"VirtualMachineSnapshot {req.virtual_machine_snapshot_name!r} is "
                f"{phase(snap) or 'Pending'}; a VM can be created only from a Ready snapshot",
                [PreconditionViolation("SNAPSHOT_NOT_READY",
                                       f"virtualmachinesnapshots/{req.virtual_machine_snapshot_name}",
                                       "wait until the snapshot is Ready")])
        vm_spec = await self._saved_spec(reads, req.namespace, snap)
        target = ResourceRef(API, VIRTUAL_MACHINE_SNAPSHOT.kind, req.virtual_machine_snapshot_name, req.namespace,
                             str(metadata(snap).get("uid", "")))
        return await self._plan(reads, name, req.options, snapshot_sources(snap), vm_spec, target)

    @staticmethod
    async def _saved_spec(reads: Reads, namespace: str, snap: dict[str, Any]) -> dict[str, Any]:
        """The VM spec the snapshot saved; else (its Secret unreadable) the VM's current one."""
        secret_name = str(status(snap).get("virtualMachineSnapshotSecretName") or "")
        try:
            saved = saved_configuration(await reads.find(SECRET, namespace, secret_name)) if secret_name else {}
        except ApiError as exc:
            if exc.code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED):
                raise
            saved = {}
        if saved.get("spec"):
            return dict(saved["spec"])
        vm = await reads.find(VIRTUAL_MACHINE, namespace, str(spec(snap).get("virtualMachineName", "")))
        return spec(vm) if vm is not None else {}

    def manifest(self, op: Operation) -> dict[str, Any]:
        return vm_from_snapshot_manifest(
            namespace=op.namespace, name=op.resource.name if op.resource else "",
            virtual_machine_snapshot_name=op.target.name, options=dict(op.request.get("options") or {}),
            operation_id=op.id, actor=op.actor)


def _details(opts: CloneOptions) -> dict[str, Any]:
    return {"mode": str(opts.mode or ""), "name_prefix": opts.name_prefix, "name_suffix": opts.name_suffix,
            "name_replacements": len(opts.name_replacements)}


def register(registry: Registry, deps: Deps) -> None:
    registry.serve_creates(contract.CLONE_VM, CloneVm(deps.operations), deps.flows,
                           lambda req: {"virtual_machine_name": req.virtual_machine_name, **_details(req.options)})
    registry.serve_creates(contract.CREATE_VM_FROM_SNAPSHOT, CreateVmFromSnapshot(deps.operations), deps.flows,
                           lambda req: {"virtual_machine_snapshot_name": req.virtual_machine_snapshot_name,
                                        **_details(req.options)})
