"""Typed keys for what the middleware hands the handlers."""

from __future__ import annotations

from aiohttp import web

from service.api.rest.facade import RestGateway
from service.core.domain import RequestContext

GATEWAY = web.AppKey("gateway", RestGateway)
REQUEST_ID = web.RequestKey("request_id", str)
CONTEXT = web.RequestKey("context", RequestContext)


def gateway(request: web.Request) -> RestGateway:
    return request.app[GATEWAY]


def context(request: web.Request) -> RequestContext:
    return request[CONTEXT]


def request_id(request: web.Request) -> str:
    return str(request.get(REQUEST_ID, ""))
