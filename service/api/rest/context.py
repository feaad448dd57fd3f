"""Typed keys for what the middleware hands the handlers."""

from __future__ import annotations

from aiohttp import web

from service.core.domain import RequestContext
from service.core.facade import GatewayFacade
from service.observability.telemetry import CallScope, Telemetry

GATEWAY = web.AppKey("gateway", GatewayFacade)
TELEMETRY = web.AppKey("telemetry", Telemetry)
REQUEST_ID = web.RequestKey("request_id", str)
CONTEXT = web.RequestKey("context", RequestContext)
CALL = web.RequestKey("call", CallScope)


def gateway(request: web.Request) -> GatewayFacade:
    return request.app[GATEWAY]


def context(request: web.Request) -> RequestContext:
    return request[CONTEXT]


def request_id(request: web.Request) -> str:
    return str(request.get(REQUEST_ID, ""))


def ended_with(request: web.Request, code: str) -> None:
    """How a response already under way ended (a stream's error event, a client gone),
    for the telemetry: its status line said 200."""
    scope = request.get(CALL)
    if scope is not None:
        scope.outcome = code
