"""/v1/namespaces/{namespace}/disks:restore and .../virtual-machines/{name}:restore"""

from __future__ import annotations

from aiohttp import web

from service.api.rest.body import json_object
from service.api.rest.context import context, gateway
from service.api.rest.handlers.common import idempotency_key, operation_accepted
from service.api.rest.parsing import Body, Query
from service.core import contract
from service.core.domain import ApplyMode
from service.core.requests import RestoreDiskRequest, RestoreVmRequest

RESTORE_DISK_FIELDS = ("name", "diskSnapshotName", "size", "storageClassName", "labels")
RESTORE_VM_FIELDS = ("virtualMachineSnapshotName", "mode")


async def restore_disk(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    body = Body(await json_object(request), RESTORE_DISK_FIELDS)
    req = RestoreDiskRequest(
        namespace=request.match_info["namespace"],
        name=body.string("name", required=True),
        disk_snapshot_name=body.string("diskSnapshotName", required=True),
        size=body.string("size"),
        storage_class_name=body.string("storageClassName"),
        labels=body.string_map("labels"),
        request_id=idempotency_key(request),
    )
    body.check()
    return operation_accepted(await gateway(request).call(context(request), contract.RESTORE_DISK, req))


async def restore_vm(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    body = Body(await json_object(request), RESTORE_VM_FIELDS)
    req = RestoreVmRequest(
        namespace=request.match_info["namespace"],
        virtual_machine_name=request.match_info["name"],
        virtual_machine_snapshot_name=body.string("virtualMachineSnapshotName", required=True),
        mode=body.enum("mode", ApplyMode, default=ApplyMode.STRICT),
        request_id=idempotency_key(request),
    )
    body.check()
    return operation_accepted(await gateway(request).call(context(request), contract.RESTORE_VM, req))
