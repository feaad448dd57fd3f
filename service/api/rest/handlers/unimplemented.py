"""Calls of the contract a later release implements: routed, audited, answered 501."""

from __future__ import annotations

from aiohttp import web

from service.api.rest.context import context, gateway


async def unimplemented(request: web.Request) -> web.StreamResponse:
    method = request.match_info.route.name or "unknown"
    raise await gateway(request).unimplemented(context(request), method)
