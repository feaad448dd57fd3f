"""Request id, authentication and error mapping for every request."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.api.rest.body import body_limit, check_declared_length, read_body
from service.api.rest.context import CONTEXT, GATEWAY, REQUEST_ID
from service.api.rest.listener import LISTENER
from service.api.rest.parsing import bad_request
from service.api.rest.problems import from_http_exception, internal_error, problem_response
from service.api.rest.text import printable, text_problem
from service.core.domain import RequestContext
from service.core.errors import ApiError, FieldViolation
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
    """Every /v1 call authenticates first; the action audited is the route's operationId.
    Every refusal after that (path text nothing can store, a body over the operation's
    limit, what the handler cannot convert) is a call too, audited with the path's namespace."""
    route = request.match_info.route
    action = route.name
    if not request.path.startswith("/v1/") or action is None or request.match_info.http_exception is not None:
        return await handler(request)
    facade = request.app[GATEWAY]
    scope = _audit_scope(request)
    caller = await facade.authenticate(
        _authorization(request), action=action, protocol="rest", peer=request.remote or "",
        request_id=request[REQUEST_ID], **scope)
    ctx = RequestContext(caller=caller, request_id=request[REQUEST_ID], protocol="rest", peer=request.remote or "")
    request[CONTEXT] = ctx
    try:
        _check_path(request)
        await _refuse_oversized_body(request, body_limit(action))
        return await handler(request)
    except ApiError as exc:
        await facade.record_rejection(ctx, action, exc, **scope)
        raise


def _audit_scope(request: web.Request) -> dict[str, str]:
    """``{"namespace": ...}`` (the path's, escaped; the core cuts it) for the audit of a refusal."""
    return {"namespace": printable(request.match_info.get("namespace", ""))}


def _authorization(request: web.Request) -> str | None:
    """The Authorization header as the core can hash it: non-UTF-8 bytes arrive as lone
    surrogates, and such a token is merely wrong (401), not a failure of the check."""
    value = request.headers.get("Authorization")
    if value is None or text_problem(value) is None:
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


def _check_path(request: web.Request) -> None:
    """A path segment is text the core can store (``%00`` decodes to a NUL)."""
    violations = [FieldViolation(name, problem) for name, value in request.match_info.items()
                  if (problem := text_problem(value)) is not None]
    if violations:
        raise bad_request(violations)


async def _refuse_oversized_body(request: web.Request, limit: int) -> None:
    """413 for a body over the operation's limit, before the handler reads anything; an
    operation that takes no body is sent none (a chunked one is read to know)."""
    check_declared_length(request, limit)
    if limit == 0 and request.body_exists:
        await read_body(request, 0, request.app[LISTENER].body_timeout)
