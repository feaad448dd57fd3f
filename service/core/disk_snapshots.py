"""Disk snapshot use cases: create, get, list, delete, watch (authorization and audit are
the facade's; these assume an allowed caller).

Mutations are write-ahead: the operation row (PENDING, with the full request) is
committed before anything is written to the cluster. When the cluster is unavailable
(during the checks or the write) the call fails UNAVAILABLE with a retry hint *and* the
operation id in the error's metadata: the request is recorded, the reconciler finishes
it once the cluster answers, and a retry with the same request_id returns that operation.
Caller errors from the cluster (invalid, conflict, forbidden) mark the operation FAILED
and are raised as they are.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from dataclasses import replace

from service.cluster.kinds import VIRTUAL_DISK, VIRTUAL_DISK_SNAPSHOT
from service.cluster.translate import disk_snapshot_from_resource, metadata
from service.core import disk_snapshot_steps as steps
from service.core import paging, request_checks
from service.core.domain import (
    Caller,
    DiskSnapshot,
    DiskSnapshotEvent,
    Operation,
    OperationType,
    Page,
    ResourceRef,
    WatchEventType,
)
from service.core.errors import ApiError, Code, not_found
from service.core.idempotency import create_once, find_replay, request_document, request_hash
from service.core.op_updates import OperationWriter
from service.core.ports import ClusterClient, WatchSource
from service.core.progress import add_warning
from service.core.requests import CreateDiskSnapshotRequest, DeleteDiskSnapshotRequest, ListRequest
from service.core.validation import effective_page_size

KIND = "VirtualDiskSnapshot"
RETRY_WARNING = "the cluster was unavailable when this operation was requested; the gateway retries in the background"


def snapshot_ref(namespace: str, name: str, uid: str = "") -> ResourceRef:
    return ResourceRef(VIRTUAL_DISK_SNAPSHOT.api_version, KIND, name, namespace, uid)


class DiskSnapshots:
    def __init__(self, *, cluster: ClusterClient, writer: OperationWriter, hub: WatchSource,
                 default_page_size: int, max_page_size: int) -> None:
        self._cluster = cluster
        self._writer = writer
        self._operations = writer.operations
        self._hub = hub
        self._default_page_size = default_page_size
        self._max_page_size = max_page_size

    # ------------------------------------------------------------ create

    async def create(self, caller: Caller, req: CreateDiskSnapshotRequest) -> Operation:
        request_checks.create_disk_snapshot(req)
        digest = request_hash(req)
        replay = await find_replay(self._operations, caller.subject, req.request_id, digest)
        if replay is not None:
            return replay
        name = req.name or steps.generated_name(req.generate_name or f"{req.virtual_disk_name}-")
        try:
            disk = await steps.read_disk(self._cluster, self._hub, req.namespace, req.virtual_disk_name)
            warning = await steps.consistency_check(self._cluster, self._hub, disk, req.required_consistency)
            await steps.ensure_name_free(self._cluster, req.namespace, name)
        except ApiError as exc:
            if exc.code not in steps.RETRYABLE:
                raise
            # Accepted but not yet checked: record it so nothing is lost; the reconciler
            # runs the checks and the create once the cluster answers.
            op, _ = await self._record(caller, req, digest, name, disk_uid="", warnings=[RETRY_WARNING])
            raise _with_operation(exc, op) from None
        op, fresh = await self._record(caller, req, digest, name, disk_uid=str(metadata(disk).get("uid", "")),
                                       warnings=[warning] if warning else [])
        if not fresh:
            return op  # a concurrent replay of the same key won the race
        try:
            return await steps.write_snapshot(self._cluster, self._writer, op)
        except ApiError as exc:
            raise await self._recorded_failure(exc, op) from None

    async def _record(self, caller: Caller, req: CreateDiskSnapshotRequest, digest: str, name: str, *,
                      disk_uid: str, warnings: list[str]) -> tuple[Operation, bool]:
        """The write-ahead row: committed before anything is written to the cluster."""
        op = Operation(
            id=str(uuid.uuid4()), type=OperationType.CREATE_DISK_SNAPSHOT, namespace=req.namespace,
            target=ResourceRef(VIRTUAL_DISK.api_version, VIRTUAL_DISK.kind, req.virtual_disk_name, req.namespace,
                               disk_uid),
            actor=caller.subject, request_hash=digest, resource=snapshot_ref(req.namespace, name),
            warnings=warnings, request_id=req.request_id or None, request=request_document(req),
        )
        return await create_once(self._operations, op)

    # ------------------------------------------------------------ read

    async def get(self, namespace: str, name: str) -> DiskSnapshot:
        request_checks.object_key(namespace, name)
        try:
            obj = await self._cluster.get(VIRTUAL_DISK_SNAPSHOT, namespace, name)
        except ApiError as exc:
            if exc.code == Code.NOT_FOUND:
                raise not_found(KIND, name, namespace) from None
            raise
        return disk_snapshot_from_resource(obj)

    async def list_page(self, req: ListRequest) -> Page[DiskSnapshot]:
        request_checks.list_request(req)
        continue_token = paging.unwrap(req.page_token, req.namespace, req.label_selector)
        size = effective_page_size(req.page_size, self._default_page_size, self._max_page_size)
        try:
            result = await self._cluster.list(VIRTUAL_DISK_SNAPSHOT, req.namespace, label_selector=req.label_selector,
                                              limit=size, continue_token=continue_token)
        except ApiError as exc:
            if exc.reason == "WATCH_EXPIRED" or (continue_token and exc.code == Code.INVALID_ARGUMENT):
                raise ApiError(Code.INVALID_ARGUMENT, "PAGE_TOKEN_EXPIRED",
                               "page_token has expired; start the list again") from None
            raise
        return Page([disk_snapshot_from_resource(o) for o in result.items],
                    paging.wrap(result.continue_token, req.namespace, req.label_selector))

    # ------------------------------------------------------------ delete

    async def delete(self, caller: Caller, req: DeleteDiskSnapshotRequest) -> Operation:
        request_checks.delete_disk_snapshot(req)
        digest = request_hash(req)
        replay = await find_replay(self._operations, caller.subject, req.request_id, digest)
        if replay is not None:
            return replay
        current = await self.get(req.namespace, req.name)
        ref = snapshot_ref(req.namespace, req.name, current.uid)
        op = Operation(
            id=str(uuid.uuid4()), type=OperationType.DELETE_DISK_SNAPSHOT, namespace=req.namespace, target=ref,
            actor=caller.subject, request_hash=digest, resource=ref, request_id=req.request_id or None,
            request=request_document(req), phase="Pending",
        )
        op, fresh = await create_once(self._operations, op)
        if not fresh:
            return op
        try:
            return await steps.delete_snapshot(self._cluster, self._writer, op)
        except ApiError as exc:
            raise await self._recorded_failure(exc, op) from None

    async def _recorded_failure(self, exc: ApiError, op: Operation) -> ApiError:
        """The error to raise for a call whose operation is already recorded: it names the
        operation (FAILED for caller errors; still PENDING, and retried, for outages)."""
        if exc.code in steps.RETRYABLE:
            await self._writer.update(op.id, add_warning(RETRY_WARNING))
            return _with_operation(exc, op, retried=True)
        return _with_operation(exc, op, retried=False)

    # ------------------------------------------------------------ watch

    async def watch(self, namespace: str, name: str = "") -> AsyncGenerator[DiskSnapshotEvent, None]:
        """Current objects as ADDED (the hub replays its cache to a new subscriber), then
        every change; repeats of an already delivered resourceVersion are dropped."""
        request_checks.watch_key(namespace, name)
        delivered: dict[str, str] = {}
        async with self._hub.subscribe(VIRTUAL_DISK_SNAPSHOT, namespace, name or None) as events:
            async for event in events:
                if event.type not in WatchEventType.__members__:
                    continue  # BOOKMARK and anything unknown
                snap = disk_snapshot_from_resource(event.object)
                if snap.namespace != namespace or (name and snap.name != name):
                    continue
                kind = WatchEventType(event.type)
                if kind is WatchEventType.DELETED:
                    delivered.pop(snap.name, None)
                elif delivered.get(snap.name) == snap.resource_version:
                    continue
                else:
                    delivered[snap.name] = snap.resource_version
                yield DiskSnapshotEvent(kind, snap)


def _with_operation(exc: ApiError, op: Operation, *, retried: bool = True) -> ApiError:
    """The error, telling the caller which operation holds the request."""
    if not retried:
        return replace(exc, metadata={**exc.metadata, "operation_id": op.id})
    return replace(exc, metadata={**exc.metadata, "operation_id": op.id},
                   message=f"{exc.message}; the request is recorded as operation {op.id} and will be retried")
