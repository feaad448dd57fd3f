"""/v1/operations[...]"""

from __future__ import annotations

from aiohttp import web

from service.api.rest import wire
from service.api.rest.context import context, gateway
from service.api.rest.handlers.common import json_response
from service.api.rest.parsing import Query, header_version
from service.api.rest.streams import SseEvent, serve_sse
from service.core.domain import Operation, OperationState, OperationType
from service.core.requests import ListOperationsRequest


async def list_operations(request: web.Request) -> web.StreamResponse:
    query = Query(request.query, ("namespace", "type", "state", "actor", "pageSize", "pageToken"))
    req = ListOperationsRequest(namespace=query.text("namespace"), type=query.enum("type", OperationType),
                                state=query.enum("state", OperationState), actor=query.text("actor"),
                                page_size=query.page_size(), page_token=query.text("pageToken"))
    page = await gateway(request).list_operations(context(request), req)
    return json_response({"items": [wire.operation(op) for op in page.items],
                          "nextPageToken": page.next_page_token})


async def get_operation(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    op = await gateway(request).get_operation(context(request), request.match_info["id"])
    return json_response(wire.operation(op))


async def get_operation_timeline(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    timeline = await gateway(request).get_operation_timeline(context(request), request.match_info["id"])
    return json_response({"items": [wire.transition(t) for t in timeline]})


def _event(op: Operation) -> SseEvent:
    return SseEvent(event="operation", data=wire.operation(op), id=str(op.version))


async def watch_operation(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    after = header_version(request)
    versions = gateway(request).watch_operation(context(request), request.match_info["id"], after_version=after)
    return await serve_sse(request, versions, _event)
