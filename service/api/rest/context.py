"""Typed keys for what the middleware hands the handlers."""

from __future__ import annotations

from aiohttp import web

from service.core.domain import RequestContext
from service.core.facade import GatewayFacade

GATEWAY = web.AppKey("gateway", GatewayFacade)
REQUEST_ID = web.RequestKey("request_id", str)
CONTEXT = web.RequestKey("context", RequestContext)


def gateway(request: web.Request) -> GatewayFacade:
    return request.app[GATEWAY]


def context(request: web.Request) -> RequestContext:
    return request[CONTEXT]


def request_id(request: web.Request) -> str:
    return str(request.get(REQUEST_ID, ""))
