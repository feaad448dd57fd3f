"""The cluster-side steps of disk snapshot operations, shared by the request path and the
reconciler (which replays them for operations a crash or an outage left PENDING)."""

from __future__ import annotations

import logging
import secrets
import string
from typing import Any

from service.cluster.consistency import consistency_warning
from service.cluster.kinds import LABEL_OPERATION_ID, VIRTUAL_DISK, VIRTUAL_DISK_SNAPSHOT, VIRTUAL_MACHINE
from service.cluster.translate import disk_snapshot_manifest, metadata, status
from service.core.domain import Operation, OperationError
from service.core.errors import ApiError, Code, already_exists, not_found
from service.core.op_updates import OperationWriter
from service.core.ports import ClusterClient, ResourceKind, WatchSource
from service.core.progress import fail, follow_created, follow_resource

log = logging.getLogger(__name__)

SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
SUFFIX_LENGTH = 5
# Failures the cluster may recover from: the operation stays PENDING and is retried.
RETRYABLE = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.INTERNAL, Code.RESOURCE_EXHAUSTED})


def generated_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))


def operation_error(exc: ApiError) -> OperationError:
    return OperationError(exc.code.value, exc.reason, exc.message)


async def read(cluster: ClusterClient, cache: WatchSource, kind: ResourceKind, namespace: str,
               name: str) -> dict[str, Any]:
    """From the shared watch's cache when it has the object (no round trip: these reads
    only inform checks and warnings), else from the cluster (a just-created object)."""
    cached = cache.get_cached(kind, namespace, name)
    return cached if cached is not None else await cluster.get(kind, namespace, name)


async def read_disk(cluster: ClusterClient, cache: WatchSource, namespace: str, disk_name: str) -> dict[str, Any]:
    try:
        return await read(cluster, cache, VIRTUAL_DISK, namespace, disk_name)
    except ApiError as exc:
        if exc.code != Code.NOT_FOUND:
            raise
        error = not_found("VirtualDisk", disk_name, namespace)
        error.metadata["field"] = "virtual_disk_name"
        raise error from None


async def consistency_check(cluster: ClusterClient, cache: WatchSource, disk: dict[str, Any],
                            required_consistency: bool) -> str | None:
    """The guide's warning for a consistent snapshot of a disk a running VM without a
    guest agent uses (the snapshot would wait in Pending)."""
    if not required_consistency:
        return None
    namespace = str(metadata(disk).get("namespace", ""))
    attached = status(disk).get("attachedToVirtualMachines")
    vms = []
    for entry in attached if isinstance(attached, list) else []:
        vm_name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(vm_name, str) or not vm_name:
            continue
        try:
            vms.append(await read(cluster, cache, VIRTUAL_MACHINE, namespace, vm_name))
        except ApiError as exc:
            if exc.code != Code.NOT_FOUND:
                raise
    return consistency_warning(disk, vms, required_consistency)


async def ensure_name_free(cluster: ClusterClient, namespace: str, name: str) -> None:
    try:
        await cluster.get(VIRTUAL_DISK_SNAPSHOT, namespace, name)
    except ApiError as exc:
        if exc.code == Code.NOT_FOUND:
            return
        raise
    raise already_exists("VirtualDiskSnapshot", name, namespace)


def snapshot_manifest(op: Operation) -> dict[str, Any]:
    req = op.request
    name = op.resource.name if op.resource else ""
    labels = req.get("labels") if isinstance(req.get("labels"), dict) else {}
    annotations = req.get("annotations") if isinstance(req.get("annotations"), dict) else {}
    return disk_snapshot_manifest(
        namespace=op.namespace, name=name, generate_name="", virtual_disk_name=op.target.name,
        required_consistency=bool(req.get("required_consistency", True)), labels=dict(labels or {}),
        annotations=dict(annotations or {}), operation_id=op.id, actor=op.actor)


async def write_snapshot(cluster: ClusterClient, writer: OperationWriter, op: Operation) -> Operation:
    """Create the VirtualDiskSnapshot of a PENDING operation and follow it to RUNNING.

    Idempotent: a resource of that name carrying this operation's label is adopted.
    A caller error marks the operation FAILED and is raised; a retryable one leaves it
    PENDING (the reconciler retries) and is raised."""
    try:
        obj = await cluster.create(VIRTUAL_DISK_SNAPSHOT, op.namespace, snapshot_manifest(op))
    except ApiError as exc:
        if exc.code in RETRYABLE:
            raise
        if exc.code == Code.ALREADY_EXISTS and op.resource is not None:
            adopted = await _ours(cluster, op)
            if adopted is not None:
                return await writer.update(op.id, follow_created(VIRTUAL_DISK_SNAPSHOT, adopted))
        await writer.update(op.id, fail(operation_error(exc)))
        raise
    return await writer.update(op.id, follow_created(VIRTUAL_DISK_SNAPSHOT, obj))


async def _ours(cluster: ClusterClient, op: Operation) -> dict[str, Any] | None:
    assert op.resource is not None
    try:
        existing = await cluster.get(VIRTUAL_DISK_SNAPSHOT, op.namespace, op.resource.name)
    except ApiError as exc:
        if exc.code == Code.NOT_FOUND:
            return None
        raise
    labels = metadata(existing).get("labels")
    if isinstance(labels, dict) and labels.get(LABEL_OPERATION_ID) == op.id:
        return existing
    return None


async def delete_snapshot(cluster: ClusterClient, writer: OperationWriter, op: Operation) -> Operation:
    """Delete the snapshot of a PENDING/RUNNING delete operation; SUCCEEDED once it is gone."""
    assert op.resource is not None
    name = op.resource.name
    try:
        await cluster.delete(VIRTUAL_DISK_SNAPSHOT, op.namespace, name)
    except ApiError as exc:
        if exc.code in RETRYABLE:
            raise
        if exc.code != Code.NOT_FOUND:
            await writer.update(op.id, fail(operation_error(exc)))
            raise
    return await follow_deletion(cluster, writer, op)


async def follow_deletion(cluster: ClusterClient, writer: OperationWriter, op: Operation) -> Operation:
    assert op.resource is not None
    try:
        obj: dict[str, Any] | None = await cluster.get(VIRTUAL_DISK_SNAPSHOT, op.namespace, op.resource.name)
    except ApiError as exc:
        if exc.code != Code.NOT_FOUND:
            raise
        obj = None
    if obj is not None and op.resource.uid and metadata(obj).get("uid") != op.resource.uid:
        obj = None  # a new object under the old name: ours is gone
    return await writer.update(op.id, follow_resource(VIRTUAL_DISK_SNAPSHOT, obj, deleting=True))
