"""Request id, authentication and error mapping for every request."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.api.rest.context import CONTEXT, GATEWAY, REQUEST_ID
from service.api.rest.problems import from_http_exception, internal_error, problem_response
from service.core.domain import RequestContext
from service.core.errors import ApiError
from service.log import request_id_var

log = logging.getLogger("dvp.rest")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id is echoed only when harmless in logs and headers.
_CALLER_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _request_id_of(request: web.Request) -> str:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    return offered if _CALLER_REQUEST_ID_RE.match(offered) else uuid.uuid4().hex


@web.middleware
async def errors_and_request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: every response carries the request id; every failure is problem+json."""
    rid = _request_id_of(request)
    request[REQUEST_ID] = rid
    token = request_id_var.set(rid)
    try:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = problem_response(exc, request_id=rid, instance=request.path)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = problem_response(from_http_exception(exc), request_id=rid, instance=request.path)
            if exc.status == 405 and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        except Exception:
            log.exception("unhandled error serving %s %s", request.method, request.path)
            response = problem_response(internal_error(), request_id=rid, instance=request.path)
        if not response.prepared:  # streams set it themselves before their headers go out
            response.headers[REQUEST_ID_HEADER] = rid
        return response
    finally:
        request_id_var.reset(token)


@web.middleware
async def authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every /v1 call authenticates first; the action audited is the route's operationId."""
    route = request.match_info.route
    action = route.name
    if not request.path.startswith("/v1/") or action is None or request.match_info.http_exception is not None:
        return await handler(request)
    caller = await request.app[GATEWAY].authenticate(
        request.headers.get("Authorization"), action=action, protocol="rest",
        peer=request.remote or "", request_id=request[REQUEST_ID])
    ctx = RequestContext(caller=caller, request_id=request[REQUEST_ID], protocol="rest", peer=request.remote or "")
    request[CONTEXT] = ctx
    try:
        return await handler(request)
    except ApiError as exc:
        # The adapter's own rejections (unparseable body, unknown field) are calls too.
        await request.app[GATEWAY].record_rejection(ctx, action, exc)
        raise
