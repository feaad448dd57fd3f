"""/v1/operations[...]"""

from __future__ import annotations

from aiohttp import web

from service.api.rest import wire
from service.api.rest.body import json_object
from service.api.rest.context import context, gateway
from service.api.rest.handlers.common import idempotency_key, json_response
from service.api.rest.parsing import Body, Query, header_version
from service.api.rest.streams import SseEvent, serve_sse
from service.core import contract
from service.core.domain import Operation, OperationState, OperationType
from service.core.requests import CancelOperationRequest, ListOperationsRequest, OperationKey, WatchOperationRequest

CANCEL_FIELDS = ("force",)


async def list_operations(request: web.Request) -> web.StreamResponse:
    query = Query(request.query, ("namespace", "type", "state", "actor", "pageSize", "pageToken"))
    req = ListOperationsRequest(namespace=query.text("namespace"), type=query.enum("type", OperationType),
                                state=query.enum("state", OperationState), actor=query.text("actor"),
                                page_size=query.page_size(), page_token=query.text("pageToken"))
    page = await gateway(request).call(context(request), contract.LIST_OPERATIONS, req)
    return json_response({"items": [wire.operation(op) for op in page.items],
                          "nextPageToken": page.next_page_token})


async def get_operation(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    op = await gateway(request).call(context(request), contract.GET_OPERATION, OperationKey(request.match_info["id"]))
    return json_response(wire.operation(op))


async def get_operation_timeline(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    timeline = await gateway(request).call(context(request), contract.GET_OPERATION_TIMELINE,
                                           OperationKey(request.match_info["id"]))
    return json_response({"items": [wire.transition(t) for t in timeline]})


async def cancel_operation(request: web.Request) -> web.StreamResponse:
    """200 with the operation as it stands after the cancellation was asked for."""
    Query(request.query, ())
    body = Body(await json_object(request, required=False), CANCEL_FIELDS)
    req = CancelOperationRequest(operation_id=request.match_info["id"], force=body.boolean("force", default=False),
                                 request_id=idempotency_key(request))
    body.check()
    op = await gateway(request).call(context(request), contract.CANCEL_OPERATION, req)
    return json_response(wire.operation(op))


def _event(op: Operation) -> SseEvent:
    return SseEvent(event="operation", data=wire.operation(op), id=str(op.version))


async def watch_operation(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    req = WatchOperationRequest(operation_id=request.match_info["id"], after_version=header_version(request))
    versions = gateway(request).stream(context(request), contract.WATCH_OPERATION, req)
    return await serve_sse(request, versions, _event)
