"""Request id, telemetry, authentication and error mapping for every request."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.api.rest.body import body_limit, check_declared_length, read_body
from service.api.rest.context import CALL, CONTEXT, GATEWAY, REQUEST_ID, TELEMETRY
from service.api.rest.listener import LISTENER
from service.api.rest.parsing import bad_request
from service.api.rest.problems import from_http_exception, internal_error, problem_response
from service.api.rest.text import printable, text_problem
from service.core.contract import BY_NAME
from service.core.domain import RequestContext
from service.core.errors import HTTP_STATUS, ApiError, Code, FieldViolation
from service.log import request_id_var
from service.observability.metrics import UNKNOWN_METHOD
from service.observability.telemetry import CANCELLED, OK, CallScope

log = logging.getLogger("dvp.rest")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id is echoed only when harmless in logs and headers.
_CALLER_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The canonical code of an error response a handler built itself (readyz's 503): the
# first code of the shared table with that status.
_CODE_OF_STATUS: dict[int, str] = {}
for _code, _status in HTTP_STATUS.items():
    _CODE_OF_STATUS.setdefault(_status, _code.value)
_OPERATIONS_PATH = "/v1/operations/"


def _request_id_of(request: web.Request) -> str:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    return offered if _CALLER_REQUEST_ID_RE.match(offered) else uuid.uuid4().hex


@web.middleware
async def errors_and_request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: every response carries the request id; every failure is problem+json;
    the telemetry sees every request (its span, and its code on the same scale as gRPC's)."""
    rid = _request_id_of(request)
    request[REQUEST_ID] = rid
    token = request_id_var.set(rid)
    scope = _call_scope(request, rid)
    request[CALL] = scope
    code = CANCELLED   # unless an answer is made
    try:
        try:
            response = await handler(request)
            code = _code_of_status(response.status)
        except ApiError as exc:
            code = exc.code.value
            response = problem_response(exc, request_id=rid, instance=request.path)
        except web.HTTPException as exc:
            if exc.status < 400:
                code = OK
                raise
            error = from_http_exception(exc)
            code = error.code.value
            response = problem_response(error, request_id=rid, instance=request.path)
            if exc.status == 405 and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        except Exception:
            log.exception("unhandled error serving %s %s", request.method, request.path)
            code = Code.INTERNAL.value
            response = problem_response(internal_error(), request_id=rid, instance=request.path)
        if not response.prepared:  # streams set it themselves before their headers go out
            response.headers[REQUEST_ID_HEADER] = rid
        if scope.traced:
            scope.operation(_operation_id(response))
        return response
    finally:
        scope.end(code)
        request_id_var.reset(token)


def _call_scope(request: web.Request, rid: str) -> CallScope:
    telemetry = request.app[TELEMETRY]
    match = request.match_info
    name = match.route.name if match.http_exception is None else None
    method = name or UNKNOWN_METHOD
    if not telemetry.traced:
        scope = telemetry.call(method, "rest", rid)
    else:
        route = match.route.resource.canonical if name and match.route.resource is not None else ""
        attributes = {"http.request.method": request.method}
        if route:
            attributes["http.route"] = route
        scope = telemetry.call(method, "rest", rid, request.headers,
                               span_name=f"{request.method} {route}" if route else request.method,
                               attributes=attributes)
    contract_method = BY_NAME.get(method)
    if contract_method is not None and contract_method.streaming:
        scope.streaming()
    return scope


def _code_of_status(status: int) -> str:
    return OK if status < 400 else _CODE_OF_STATUS.get(status, Code.INTERNAL.value if status >= 500
                                                          else Code.INVALID_ARGUMENT.value)


def _operation_id(response: web.StreamResponse) -> str:
    """The operation a response names: an export's X-Operation-Id, a 202's Location."""
    headers = response.headers
    if "X-Operation-Id" in headers:
        return headers["X-Operation-Id"]
    location = headers.get("Location", "")
    return location[len(_OPERATIONS_PATH):] if location.startswith(_OPERATIONS_PATH) else ""


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
    request[CALL].caller(caller.subject)
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
