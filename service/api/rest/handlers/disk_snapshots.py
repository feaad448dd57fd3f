"""/v1/namespaces/{namespace}/disk-snapshots[...]"""

from __future__ import annotations

from aiohttp import web

from service.api.rest import wire
from service.api.rest.context import context, gateway
from service.api.rest.handlers.common import idempotency_key, json_response, operation_accepted
from service.api.rest.parsing import Body, Query, json_object
from service.api.rest.streams import SseEvent, serve_sse
from service.core import contract
from service.core.domain import DiskSnapshotEvent
from service.core.requests import (
    CreateDiskSnapshotRequest,
    DeleteDiskSnapshotRequest,
    ListRequest,
    ObjectKey,
    WatchRequest,
)

CREATE_FIELDS = ("name", "generateName", "virtualDiskName", "requiredConsistency", "labels", "annotations")


async def list_disk_snapshots(request: web.Request) -> web.StreamResponse:
    query = Query(request.query, ("pageSize", "pageToken", "labelSelector"))
    req = ListRequest(namespace=request.match_info["namespace"], page_size=query.page_size(),
                      page_token=query.text("pageToken"), label_selector=query.text("labelSelector"))
    page = await gateway(request).call(context(request), contract.LIST_DISK_SNAPSHOTS, req)
    return json_response({"items": [wire.disk_snapshot(s) for s in page.items],
                          "nextPageToken": page.next_page_token})


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


async def get_disk_snapshot(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    key = ObjectKey(request.match_info["namespace"], request.match_info["name"])
    snapshot = await gateway(request).call(context(request), contract.GET_DISK_SNAPSHOT, key)
    return json_response(wire.disk_snapshot(snapshot))


async def delete_disk_snapshot(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    req = DeleteDiskSnapshotRequest(namespace=request.match_info["namespace"], name=request.match_info["name"],
                                    request_id=idempotency_key(request))
    return operation_accepted(await gateway(request).call(context(request), contract.DELETE_DISK_SNAPSHOT, req))


def _event(e: DiskSnapshotEvent) -> SseEvent:
    return SseEvent(event=e.type.value, data=wire.disk_snapshot_event(e), id=e.snapshot.resource_version)


async def watch_disk_snapshots(request: web.Request) -> web.StreamResponse:
    # Last-Event-ID needs no handling: a watch always starts with the current objects.
    query = Query(request.query, ("name",))
    req = WatchRequest(namespace=request.match_info["namespace"], name=query.text("name"))
    events = gateway(request).stream(context(request), contract.WATCH_DISK_SNAPSHOTS, req)
    return await serve_sse(request, events, _event)
