"""/v1/namespaces/{namespace}/vm-snapshots[...]"""

from __future__ import annotations

from aiohttp import web

from service.api.rest import wire
from service.api.rest.context import context, gateway
from service.api.rest.handlers.common import idempotency_key, json_response, operation_accepted
from service.api.rest.parsing import Body, Query, json_object
from service.api.rest.streams import SseEvent, serve_sse
from service.core import contract
from service.core.domain import KeepIpAddress, VirtualMachineSnapshotEvent
from service.core.requests import (
    CreateVmSnapshotRequest,
    DeleteVmSnapshotRequest,
    ListRequest,
    ObjectKey,
    WatchRequest,
)

CREATE_FIELDS = ("name", "generateName", "virtualMachineName", "requiredConsistency", "keepIPAddress", "labels",
                 "annotations")


async def list_vm_snapshots(request: web.Request) -> web.StreamResponse:
    query = Query(request.query, ("pageSize", "pageToken", "labelSelector"))
    req = ListRequest(namespace=request.match_info["namespace"], page_size=query.page_size(),
                      page_token=query.text("pageToken"), label_selector=query.text("labelSelector"))
    page = await gateway(request).call(context(request), contract.LIST_VM_SNAPSHOTS, req)
    return json_response({"items": [wire.vm_snapshot(s) for s in page.items],
                          "nextPageToken": page.next_page_token})


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


async def get_vm_snapshot(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    key = ObjectKey(request.match_info["namespace"], request.match_info["name"])
    snapshot = await gateway(request).call(context(request), contract.GET_VM_SNAPSHOT, key)
    return json_response(wire.vm_snapshot(snapshot))


async def delete_vm_snapshot(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    req = DeleteVmSnapshotRequest(namespace=request.match_info["namespace"], name=request.match_info["name"],
                                  request_id=idempotency_key(request))
    return operation_accepted(await gateway(request).call(context(request), contract.DELETE_VM_SNAPSHOT, req))


def _event(e: VirtualMachineSnapshotEvent) -> SseEvent:
    return SseEvent(event=e.type.value, data=wire.vm_snapshot_event(e), id=e.snapshot.resource_version)


async def watch_vm_snapshots(request: web.Request) -> web.StreamResponse:
    # As for disk snapshots: a watch always starts with the current objects (as ADDED).
    query = Query(request.query, ("name",))
    req = WatchRequest(namespace=request.match_info["namespace"], name=query.text("name"))
    events = gateway(request).stream(context(request), contract.WATCH_VM_SNAPSHOTS, req)
    return await serve_sse(request, events, _event)
