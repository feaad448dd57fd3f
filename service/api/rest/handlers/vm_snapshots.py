"""/v1/namespaces/{namespace}/vm-snapshots[...]"""

from __future__ import annotations

from aiohttp import web

from service.api.rest import wire
from service.api.rest.body import json_object
from service.api.rest.context import context, gateway
from service.api.rest.handlers import objects
from service.api.rest.handlers.common import idempotency_key, operation_accepted
from service.api.rest.parsing import Body, Query
from service.core import contract
from service.core.domain import KeepIpAddress
from service.core.requests import (
    CreateVmSnapshotRequest,
    DeleteVmSnapshotRequest,
)

CREATE_FIELDS = ("name", "generateName", "virtualMachineName", "requiredConsistency", "keepIPAddress", "labels",
                 "annotations")


async def create_vm_snapshot(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    body = Body(await json_object(request), CREATE_FIELDS)
    req = CreateVmSnapshotRequest(
        namespace=request.match_info["namespace"],
        virtual_machine_name=body.string("virtualMachineName", required=True),
        name=body.string("name"),
        generate_name=body.string("generateName"),
        required_consistency=body.boolean("requiredConsistency", default=True),
        keep_ip_address=body.enum("keepIPAddress", KeepIpAddress, default=KeepIpAddress.ALWAYS),
        labels=body.string_map("labels"),
        annotations=body.string_map("annotations"),
        request_id=idempotency_key(request),
    )
    body.check()
    return operation_accepted(await gateway(request).call(context(request), contract.CREATE_VM_SNAPSHOT, req))


list_vm_snapshots = objects.list_handler(contract.LIST_VM_SNAPSHOTS, wire.vm_snapshot)
get_vm_snapshot = objects.get_handler(contract.GET_VM_SNAPSHOT, wire.vm_snapshot)
delete_vm_snapshot = objects.delete_handler(contract.DELETE_VM_SNAPSHOT, DeleteVmSnapshotRequest)
watch_vm_snapshots = objects.watch_handler(contract.WATCH_VM_SNAPSHOTS, wire.vm_snapshot_event)
