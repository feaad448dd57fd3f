"""/healthz, /readyz and /openapi.yaml: unauthenticated, for probes and clients."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from service.api.rest.context import GATEWAY
from service.api.rest.handlers.common import json_response

log = logging.getLogger("dvp.rest")

OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)
READY_CHECK_TIMEOUT_SECONDS = 5.0


async def healthz(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok", "checks": {}})


async def readyz(request: web.Request) -> web.StreamResponse:
    try:
        checks = await asyncio.wait_for(request.app[GATEWAY].check_ready(), READY_CHECK_TIMEOUT_SECONDS)
    except Exception:  # a probe must answer, whatever broke
        log.warning("readiness check failed", exc_info=True)
        checks = {"gateway": False}
    ready = bool(checks) and all(checks.values())
    return json_response({"status": "ok" if ready else "unavailable", "checks": dict(checks)},
                         status=200 if ready else 503)


async def openapi_document(request: web.Request) -> web.StreamResponse:
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/yaml")
