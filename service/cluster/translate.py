"""Pure translation between the gateway's requests/domain objects and custom resources.

Dicts in, dicts or dataclasses out: no I/O, no clock, no cluster. Every function is
tolerant of objects the cluster has not finished filling in (no status yet, missing
conditions, odd types) because what a cluster returns is validated here, not trusted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from service.cluster.kinds import (
    ANNOTATION_ACTOR,
    DATA_EXPORT,
    LABEL_MANAGED_BY,
    LABEL_OPERATION_ID,
    MANAGED_BY_VALUE,
    VIRTUAL_DISK,
    VIRTUAL_DISK_SNAPSHOT,
    VIRTUAL_MACHINE_OPERATION,
    VIRTUAL_MACHINE_SNAPSHOT,
    VIRTUAL_MACHINE_SNAPSHOT_OPERATION,
)
from service.core.domain import (
    ApplyMode,
    Condition,
    DiskSnapshot,
    KeepIpAddress,
    OperationError,
    OperationState,
    ResourceRef,
    ResourceResult,
    VirtualMachineSnapshot,
)
from service.core.errors import Code
from service.core.ports import ResourceKind

Obj = dict[str, Any]

# ---------------------------------------------------------------- small readers


def _dict(value: object) -> Obj:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _str_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in _dict(value).items() if isinstance(v, str)}


def metadata(obj: Obj) -> Obj:
    return _dict(obj.get("metadata"))


def status(obj: Obj) -> Obj:
    return _dict(obj.get("status"))


def spec(obj: Obj) -> Obj:
    return _dict(obj.get("spec"))


def phase(obj: Obj | None) -> str:
    return _str(status(obj).get("phase")) if obj else ""


def resource_version(obj: Obj) -> str:
    return _str(metadata(obj).get("resourceVersion"))


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as an aware UTC datetime; None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def object_ref(obj: Obj) -> ResourceRef:
    meta = metadata(obj)
    return ResourceRef(
        api_version=_str(obj.get("apiVersion")), kind=_str(obj.get("kind")), name=_str(meta.get("name")),
        namespace=_str(meta.get("namespace")), uid=_str(meta.get("uid")),
    )


# ---------------------------------------------------------------- manifests


def gateway_metadata(*, namespace: str, name: str, generate_name: str, labels: dict[str, str],
                     annotations: dict[str, str], operation_id: str, actor: str) -> Obj:
    """``metadata`` for any resource the gateway writes: the caller's labels and
    annotations, with ours merged over them (a caller cannot forge provenance)."""
    meta: Obj = {
        "namespace": namespace,
        "labels": {**labels, LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_OPERATION_ID: operation_id},
        "annotations": {**annotations, ANNOTATION_ACTOR: actor},
    }
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name
    return meta


def disk_snapshot_manifest(*, namespace: str, name: str, generate_name: str, virtual_disk_name: str,
                           required_consistency: bool, labels: dict[str, str], annotations: dict[str, str],
                           operation_id: str, actor: str) -> Obj:
    """A ``VirtualDiskSnapshot``; ``generate_name`` is used only when ``name`` is empty."""
    return {
        "apiVersion": VIRTUAL_DISK_SNAPSHOT.api_version,
        "kind": VIRTUAL_DISK_SNAPSHOT.kind,
        "metadata": gateway_metadata(
            namespace=namespace, name=name, generate_name=generate_name or f"{virtual_disk_name}-",
            labels=labels, annotations=annotations, operation_id=operation_id, actor=actor,
        ),
        "spec": {"virtualDiskName": virtual_disk_name, "requiredConsistency": required_consistency},
    }


def vm_snapshot_manifest(*, namespace: str, name: str, virtual_machine_name: str, required_consistency: bool,
                         keep_ip_address: KeepIpAddress, labels: dict[str, str], annotations: dict[str, str],
                         operation_id: str, actor: str) -> Obj:
    """A ``VirtualMachineSnapshot`` (the CRD spells it ``keepIPAddress``: Always | Never)."""
    return {
        "apiVersion": VIRTUAL_MACHINE_SNAPSHOT.api_version,
        "kind": VIRTUAL_MACHINE_SNAPSHOT.kind,
        "metadata": gateway_metadata(namespace=namespace, name=name, generate_name="", labels=labels,
                                     annotations=annotations, operation_id=operation_id, actor=actor),
        "spec": {"virtualMachineName": virtual_machine_name, "requiredConsistency": required_consistency,
                 "keepIPAddress": keep_ip_address.value},
    }


def ttl_text(seconds: float) -> str:
    """A Go duration for DataExport spec.ttl ("90s", "1.5s")."""
    return f"{seconds:g}s"


def data_export_manifest(*, namespace: str, name: str, target_kind: str, target_name: str, ttl_seconds: float,
                         operation_id: str, actor: str) -> Obj:
    """A ``DataExport`` of a VirtualDisk or VirtualDiskSnapshot for the gateway alone
    (``publish: false``: served inside the cluster, never on a public URL)."""
    return {
        "apiVersion": DATA_EXPORT.api_version,
        "kind": DATA_EXPORT.kind,
        "metadata": gateway_metadata(namespace=namespace, name=name, generate_name="", labels={}, annotations={},
                                     operation_id=operation_id, actor=actor),
        "spec": {"ttl": ttl_text(ttl_seconds), "publish": False,
                 "targetRef": {"kind": target_kind, "name": target_name}},
    }


def restore_disk_manifest(*, namespace: str, name: str, disk_snapshot_name: str, size: str, storage_class_name: str,
                          labels: dict[str, str], operation_id: str, actor: str) -> Obj:
    """A ``VirtualDisk`` provisioned from a ``VirtualDiskSnapshot`` (the guide's disk restore)."""
    pvc: Obj = {"size": size}
    if storage_class_name:
        pvc["storageClassName"] = storage_class_name
    return {
        "apiVersion": VIRTUAL_DISK.api_version,
        "kind": VIRTUAL_DISK.kind,
        "metadata": gateway_metadata(namespace=namespace, name=name, generate_name="", labels=labels,
                                     annotations={}, operation_id=operation_id, actor=actor),
        "spec": {
            "dataSource": {"type": "ObjectRef",
                           "objectRef": {"kind": VIRTUAL_DISK_SNAPSHOT.kind, "name": disk_snapshot_name}},
            "persistentVolumeClaim": pvc,
        },
    }


def restore_vm_manifest(*, namespace: str, name: str, virtual_machine_name: str, virtual_machine_snapshot_name: str,
                        mode: ApplyMode, operation_id: str, actor: str) -> Obj:
    """A ``VirtualMachineOperation`` of type Restore."""
    return {
        "apiVersion": VIRTUAL_MACHINE_OPERATION.api_version,
        "kind": VIRTUAL_MACHINE_OPERATION.kind,
        "metadata": gateway_metadata(namespace=namespace, name=name, generate_name="", labels={}, annotations={},
                                     operation_id=operation_id, actor=actor),
        "spec": {
            "type": "Restore",
            "virtualMachineName": virtual_machine_name,
            "restore": {"mode": mode.value, "virtualMachineSnapshotName": virtual_machine_snapshot_name},
        },
    }


def clone_spec(options: Obj) -> Obj:
    """``clone`` / ``createVirtualMachine`` from a stored request's options, in the CRD's
    spelling (``nameReplacement``, ``to: <string>``): the guide's example spelling
    (``nameReplacements``, ``to: {name}``) is pruned by a real API server."""
    result: Obj = {"mode": _str(options.get("mode")) or "Strict"}
    replacements = []
    for item in options.get("name_replacements") or []:
        entry = _dict(item)
        source: Obj = {"name": _str(entry.get("from_name"))}
        if _str(entry.get("from_kind")):
            source["kind"] = _str(entry.get("from_kind"))
        replacements.append({"from": source, "to": _str(entry.get("to"))})
    if replacements:
        result["nameReplacement"] = replacements
    affixes = (("namePrefix", "name_prefix"), ("nameSuffix", "name_suffix"))
    customization = {key: options[field] for key, field in affixes if isinstance(options.get(field), str)}
    if customization:
        result["customization"] = customization
    return result


def clone_vm_manifest(*, namespace: str, name: str, virtual_machine_name: str, options: Obj, operation_id: str,
                      actor: str) -> Obj:
    """A ``VirtualMachineOperation`` of type Clone."""
    return {
        "apiVersion": VIRTUAL_MACHINE_OPERATION.api_version,
        "kind": VIRTUAL_MACHINE_OPERATION.kind,
        "metadata": gateway_metadata(namespace=namespace, name=name, generate_name="", labels={}, annotations={},
                                     operation_id=operation_id, actor=actor),
        "spec": {"type": "Clone", "virtualMachineName": virtual_machine_name, "clone": clone_spec(options)},
    }


def vm_from_snapshot_manifest(*, namespace: str, name: str, virtual_machine_snapshot_name: str, options: Obj,
                              operation_id: str, actor: str) -> Obj:
    """A ``VirtualMachineSnapshotOperation`` of type CreateVirtualMachine."""
    return {
        "apiVersion": VIRTUAL_MACHINE_SNAPSHOT_OPERATION.api_version,
        "kind": VIRTUAL_MACHINE_SNAPSHOT_OPERATION.kind,
        "metadata": gateway_metadata(namespace=namespace, name=name, generate_name="", labels={}, annotations={},
                                     operation_id=operation_id, actor=actor),
        "spec": {"type": "CreateVirtualMachine", "virtualMachineSnapshotName": virtual_machine_snapshot_name,
                 "createVirtualMachine": clone_spec(options)},
    }


# ---------------------------------------------------------------- resources -> domain


def conditions_from_resource(obj: Obj | None) -> list[Condition]:
    if not obj:
        return []
    raw = status(obj).get("conditions")
    if not isinstance(raw, list):
        return []
    conditions = []
    for item in raw:
        cond = _dict(item)
        cond_type = _str(cond.get("type"))
        if not cond_type:
            continue
        conditions.append(Condition(
            type=cond_type, status=_str(cond.get("status")) or "Unknown", reason=_str(cond.get("reason")),
            message=_str(cond.get("message")), last_transition_time=parse_time(cond.get("lastTransitionTime")),
        ))
    return conditions


def results_from_resource(obj: Obj | None) -> list[ResourceResult]:
    """``status.resources`` of a VMOP/VMSOP (or what a VirtualMachineSnapshot saved)."""
    if not obj:
        return []
    raw = status(obj).get("resources")
    if not isinstance(raw, list):
        return []
    results = []
    for item in raw:
        res = _dict(item)
        if not _str(res.get("kind")) or not _str(res.get("name")):
            continue
        results.append(ResourceResult(
            api_version=_str(res.get("apiVersion")), kind=_str(res.get("kind")), name=_str(res.get("name")),
            status=_str(res.get("status")), message=_str(res.get("message")),
        ))
    return results


def disk_snapshot_from_resource(obj: Obj) -> DiskSnapshot:
    meta, st, sp = metadata(obj), status(obj), spec(obj)
    labels = _str_map(meta.get("labels"))
    required = sp.get("requiredConsistency")
    consistent = st.get("consistent")
    return DiskSnapshot(
        namespace=_str(meta.get("namespace")),
        name=_str(meta.get("name")),
        virtual_disk_name=_str(sp.get("virtualDiskName")),
        # The CRD defaults requiredConsistency to true.
        required_consistency=required if isinstance(required, bool) else True,
        uid=_str(meta.get("uid")),
        phase=_str(st.get("phase")),
        consistent=consistent if isinstance(consistent, bool) else None,
        volume_snapshot_name=_str(st.get("volumeSnapshotName")),
        conditions=conditions_from_resource(obj),
        labels=labels,
        annotations=_str_map(meta.get("annotations")),
        operation_id=labels.get(LABEL_OPERATION_ID, ""),
        resource_version=_str(meta.get("resourceVersion")),
        create_time=parse_time(meta.get("creationTimestamp")),
        deletion_time=parse_time(meta.get("deletionTimestamp")),
    )


def vm_snapshot_from_resource(obj: Obj) -> VirtualMachineSnapshot:
    meta, st, sp = metadata(obj), status(obj), spec(obj)
    labels = _str_map(meta.get("labels"))
    required = sp.get("requiredConsistency")
    consistent = st.get("consistent")
    keep = sp.get("keepIPAddress")
    names = st.get("virtualDiskSnapshotNames")
    return VirtualMachineSnapshot(
        namespace=_str(meta.get("namespace")),
        name=_str(meta.get("name")),
        virtual_machine_name=_str(sp.get("virtualMachineName")),
        required_consistency=required if isinstance(required, bool) else True,
        keep_ip_address=KeepIpAddress.NEVER if keep == KeepIpAddress.NEVER.value else KeepIpAddress.ALWAYS,
        uid=_str(meta.get("uid")),
        phase=_str(st.get("phase")),
        consistent=consistent if isinstance(consistent, bool) else None,
        resources=[ResourceRef(r.api_version, r.kind, r.name, _str(meta.get("namespace")))
                   for r in results_from_resource(obj)],
        virtual_disk_snapshot_names=[n for n in names if isinstance(n, str)] if isinstance(names, list) else [],
        conditions=conditions_from_resource(obj),
        labels=labels,
        annotations=_str_map(meta.get("annotations")),
        operation_id=labels.get(LABEL_OPERATION_ID, ""),
        resource_version=_str(meta.get("resourceVersion")),
        create_time=parse_time(meta.get("creationTimestamp")),
        deletion_time=parse_time(meta.get("deletionTimestamp")),
    )


def block_device_refs(vm_spec: Obj) -> list[tuple[str, str]]:
    """(kind, name) of every block device of a VM spec."""
    refs = vm_spec.get("blockDeviceRefs")
    return [(_str(_dict(r).get("kind")), _str(_dict(r).get("name"))) for r in refs if _str(_dict(r).get("name"))] \
        if isinstance(refs, list) else []


# ---------------------------------------------------------------- phase -> operation state

Progress = tuple[OperationState, str, OperationError | None]

# The condition that explains a failure, per kind (the first False one wins).
_READY_CONDITION: dict[str, str] = {
    VIRTUAL_DISK_SNAPSHOT.kind: "VirtualDiskSnapshotReady",
    VIRTUAL_MACHINE_SNAPSHOT.kind: "VirtualMachineSnapshotReady",
    VIRTUAL_MACHINE_OPERATION.kind: "Completed",
    VIRTUAL_MACHINE_SNAPSHOT_OPERATION.kind: "Completed",
    VIRTUAL_DISK.kind: "Ready",
    DATA_EXPORT.kind: "Ready",
}

_SNAPSHOT_DONE = {"Ready": OperationState.SUCCEEDED, "Failed": OperationState.FAILED}
_OPERATION_DONE = {"Completed": OperationState.SUCCEEDED, "Failed": OperationState.FAILED}
# A restored disk on a WaitForFirstConsumer storage class is provisioned when first used:
# the restore itself is done.
_DISK_DONE = {
    "Ready": OperationState.SUCCEEDED, "WaitForFirstConsumer": OperationState.SUCCEEDED,
    "Failed": OperationState.FAILED, "PVCLost": OperationState.FAILED,
}


def _failure(kind: ResourceKind, obj: Obj, fallback_reason: str) -> OperationError:
    conditions = conditions_from_resource(obj)
    preferred = _READY_CONDITION.get(kind.kind, "")
    failing = [c for c in conditions if c.status == "False" and c.type == preferred]
    failing += [c for c in conditions if c.status == "False" and c.type != preferred]
    if failing and (failing[0].reason or failing[0].message):
        cond = failing[0]
        return OperationError(Code.FAILED_PRECONDITION.value, cond.reason or fallback_reason,
                              cond.message or f"{kind.kind} failed ({cond.reason})")
    return OperationError(Code.FAILED_PRECONDITION.value, fallback_reason, f"{kind.kind} failed")


def _data_export_progress(obj: Obj) -> Progress:
    ready = next((c for c in conditions_from_resource(obj) if c.type == "Ready"), None)
    if ready is None:
        return OperationState.RUNNING, "Pending", None
    if ready.status == "True":
        return OperationState.SUCCEEDED, "Ready", None
    if ready.reason == "Expired":
        return OperationState.FAILED, "Expired", OperationError(
            Code.FAILED_PRECONDITION.value, "Expired", ready.message or "the export expired after its TTL")
    return OperationState.RUNNING, ready.reason or "Pending", None


def operation_progress(kind: ResourceKind, obj: Obj | None, *, deleting: bool) -> Progress:
    """Where an operation stands, judged from its custom resource (None: it is gone).

    ``deleting`` marks a delete operation: it succeeds when the object is gone."""
    if deleting:
        if obj is None:
            return OperationState.SUCCEEDED, "Deleted", None
        return OperationState.RUNNING, phase(obj) or "Terminating", None
    if obj is None:
        return OperationState.FAILED, "", OperationError(
            Code.ABORTED.value, "RESOURCE_DELETED", f"the {kind.kind} was deleted before the operation completed")
    if kind.kind == DATA_EXPORT.kind:
        return _data_export_progress(obj)

    current = phase(obj)
    if kind.kind in (VIRTUAL_DISK_SNAPSHOT.kind, VIRTUAL_MACHINE_SNAPSHOT.kind):
        done = _SNAPSHOT_DONE
    elif kind.kind in (VIRTUAL_MACHINE_OPERATION.kind, VIRTUAL_MACHINE_SNAPSHOT_OPERATION.kind):
        done = _OPERATION_DONE
        # Deleted before it finished: the operation was called off.
        if current == "Terminating":
            return OperationState.CANCELLED, current, None
        if current == "Superseded":
            return OperationState.FAILED, current, OperationError(
                Code.ABORTED.value, "Superseded", f"the {kind.kind} was superseded by a newer operation")
    elif kind.kind == VIRTUAL_DISK.kind:
        done = _DISK_DONE
    else:
        done = {}

    state = done.get(current, OperationState.RUNNING)
    error = _failure(kind, obj, f"{kind.kind}Failed") if state is OperationState.FAILED else None
    return state, current or "Pending", error
