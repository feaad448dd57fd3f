"""The handlers every namespaced object kind has (list, get, delete, watch), made once
per kind from its contract methods and its wire shapes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from aiohttp import web

from service.api.rest.context import context, gateway
from service.api.rest.handlers.common import idempotency_key, json_response, operation_accepted
from service.api.rest.parsing import Query
from service.api.rest.streams import SseEvent, serve_sse
from service.api.rest.wire import JsonObject
from service.core.contract import Method
from service.core.domain import Operation, Page, WatchEventType
from service.core.requests import ListRequest, ObjectKey, WatchRequest

T = TypeVar("T")
E = TypeVar("E", bound="KindEvent")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Versioned(Protocol):
    @property
    def resource_version(self) -> str: ...


class KindEvent(Protocol):
    @property
    def type(self) -> WatchEventType: ...

    @property
    def snapshot(self) -> Versioned: ...


class DeleteRequestType(Protocol):
    def __call__(self, *, namespace: str, name: str, request_id: str) -> Any: ...


def list_handler(method: Method[ListRequest, Page[T]], to_json: Callable[[T], JsonObject]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        query = Query(request.query, ("pageSize", "pageToken", "labelSelector"))
        req = ListRequest(namespace=request.match_info["namespace"], page_size=query.page_size(),
                          page_token=query.text("pageToken"), label_selector=query.text("labelSelector"))
        page = await gateway(request).call(context(request), method, req)
        return json_response({"items": [to_json(item) for item in page.items], "nextPageToken": page.next_page_token})

    return handle


def get_handler(method: Method[ObjectKey, T], to_json: Callable[[T], JsonObject]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        Query(request.query, ())
        key = ObjectKey(request.match_info["namespace"], request.match_info["name"])
        return json_response(to_json(await gateway(request).call(context(request), method, key)))

    return handle


def delete_handler(method: Method[Any, Operation], request_type: DeleteRequestType) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        Query(request.query, ())
        req = request_type(namespace=request.match_info["namespace"], name=request.match_info["name"],
                           request_id=idempotency_key(request))
        return operation_accepted(await gateway(request).call(context(request), method, req))

    return handle


def watch_handler(method: Method[WatchRequest, E], to_json: Callable[[E], JsonObject]) -> Handler:
    """Server-Sent Events. Last-Event-ID needs no handling: a watch always starts with the
    current objects (as ADDED), as a relist would."""

    def event(e: E) -> SseEvent:
        return SseEvent(event=e.type.value, data=to_json(e), id=e.snapshot.resource_version)

    async def handle(request: web.Request) -> web.StreamResponse:
        query = Query(request.query, ("name",))
        req = WatchRequest(namespace=request.match_info["namespace"], name=query.text("name"))
        return await serve_sse(request, gateway(request).stream(context(request), method, req), event)

    return handle
