"""/v1/namespaces/{namespace}/disk-snapshots[...]"""

from __future__ import annotations

from aiohttp import web

from service.api.rest import wire
from service.api.rest.context import context, gateway
from service.api.rest.handlers.common import json_response, operation_accepted
from service.api.rest.parsing import Body, Query, json_object
from service.api.rest.streams import SseEvent, serve_sse
from service.core.domain import DiskSnapshotEvent
from service.core.requests import CreateDiskSnapshotRequest, DeleteDiskSnapshotRequest, ListRequest

CREATE_FIELDS = ("name", "generateName", "virtualDiskName", "requiredConsistency", "labels", "annotations")


async def list_disk_snapshots(request: web.Request) -> web.StreamResponse:
    query = Query(request.query, ("pageSize", "pageToken", "labelSelector"))
    req = ListRequest(namespace=request.match_info["namespace"], page_size=query.page_size(),
                      page_token=query.text("pageToken"), label_selector=query.text("labelSelector"))
    page = await gateway(request).list_disk_snapshots(context(request), req)
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
        request_id=request.headers.get("Idempotency-Key", ""),
    )
    body.check()
    return operation_accepted(await gateway(request).create_disk_snapshot(context(request), req))


async def get_disk_snapshot(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    snapshot = await gateway(request).get_disk_snapshot(context(request), request.match_info["namespace"],
                                                       request.match_info["name"])
    return json_response(wire.disk_snapshot(snapshot))


async def delete_disk_snapshot(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    req = DeleteDiskSnapshotRequest(namespace=request.match_info["namespace"], name=request.match_info["name"],
                                    request_id=request.headers.get("Idempotency-Key", ""))
    return operation_accepted(await gateway(request).delete_disk_snapshot(context(request), req))


def _event(e: DiskSnapshotEvent) -> SseEvent:
    return SseEvent(event=e.type.value, data=wire.disk_snapshot_event(e), id=e.snapshot.resource_version)


async def watch_disk_snapshots(request: web.Request) -> web.StreamResponse:
    # Last-Event-ID needs no handling: a watch always starts with the current objects.
    query = Query(request.query, ("name",))
    events = gateway(request).watch_disk_snapshots(context(request), request.match_info["namespace"],
                                                   query.text("name"))
    return await serve_sse(request, events, _event)
