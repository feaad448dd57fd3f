"""/v1/namespaces/{namespace}/disk-snapshots[...]"""

from __future__ import annotations

from aiohttp import web

from service.api.rest import wire
from service.api.rest.body import json_object
from service.api.rest.context import context, gateway
from service.api.rest.handlers import objects
from service.api.rest.handlers.common import idempotency_key, operation_accepted
from service.api.rest.parsing import Body, Query
from service.core import contract
from service.core.requests import (
    CreateDiskSnapshotRequest,
    DeleteDiskSnapshotRequest,
)

CREATE_FIELDS = ("name", "generateName", "virtualDiskName", "requiredConsistency", "labels", "annotations")


async def create_disk_snapshot(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    body = Body(await json_object(request), CREATE_FIELDS)
    req = CreateDiskSnapshotRequest(
        namespace=request.match_info["namespace"],
        virtual_disk_name=body.string("virtualDiskName", required=True),
        name=body.string("name"),
        generate_name=body.string("generateName"),
        required_consistency=body.boolean("requiredConsistency", default=True),
        labels=body.string_map("labels"),
        annotations=body.string_map("annotations"),
        request_id=idempotency_key(request),
    )
    body.check()
    return operation_accepted(await gateway(request).call(context(request), contract.CREATE_DISK_SNAPSHOT, req))


list_disk_snapshots = objects.list_handler(contract.LIST_DISK_SNAPSHOTS, wire.disk_snapshot)
get_disk_snapshot = objects.get_handler(contract.GET_DISK_SNAPSHOT, wire.disk_snapshot)
delete_disk_snapshot = objects.delete_handler(contract.DELETE_DISK_SNAPSHOT, DeleteDiskSnapshotRequest)
watch_disk_snapshots = objects.watch_handler(contract.WATCH_DISK_SNAPSHOTS, wire.disk_snapshot_event)
