"""Per-call plumbing shared by every servicer: request id, authentication, error mapping.

Every RPC is one contract method (``service.core.contract``). ``CallRunner.unary`` and
``CallRunner.stream`` take that ``Method``, the proto request, a function building the
core request from it and a function converting the answer, so that
- the request id (``x-request-id``, generated when absent or malformed) is sent back in
  the initial metadata before anything else, and set for log lines;
- bytes that did not decode as the method's request (``decode.Undecodable``) are
  refused INVALID_ARGUMENT before authentication, logged in one line and recorded as a
  rejection by the anonymous caller (``CallRunner.refuse_undecodable``; health and
  reflection, never audited: ``refuse_unaudited``);
- the caller is authenticated through the facade (audited there) under ``method.name``;
- the core request is built inside the error-mapped path: a proto message the core
  cannot take (an unknown enum number in any field) is INVALID_ARGUMENT, recorded as a
  rejection;
- the facade's ``call`` / ``stream`` runs the method (a method the core does not
  implement yet gets the request ``None`` and answers UNIMPLEMENTED, audited there);
- an ``ApiError`` becomes a gRPC status with google.rpc details;
- anything unexpected becomes INTERNAL with a generic message (logged, never sent);
- the telemetry sees the call (``service.observability``): its server span, continuing
  a ``traceparent`` sent in the metadata, and its code (the request counter, latency
  histogram, open streams gauge).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, TypeVar

from google.protobuf.message import Message
from grpc_status import rpc_status

from service.api.grpc.convert import reject_unknown_enums
from service.api.grpc.decode import Undecodable
from service.api.grpc.status import to_rpc_status
from service.core.audit import ANONYMOUS
from service.core.contract import BY_NAME, Method
from service.core.domain import Caller, ExportStart, Operation, RequestContext
from service.core.errors import ApiError, Code, FieldViolation, invalid_argument
from service.core.facade import GatewayFacade
from service.log import request_id_var
from service.observability.telemetry import CANCELLED, OK, CallScope, Telemetry

log = logging.getLogger(__name__)

P = TypeVar("P", bound=Message)    # the proto request message
Req = TypeVar("Req")  # the core request
Res = TypeVar("Res")  # the core answer (a stream's item)
M = TypeVar("M")    # the proto answer message

# A grpc.aio.ServicerContext: grpcio ships no type stubs in this environment.
ServicerContext = Any

REQUEST_ID_HEADER = "x-request-id"
PROTO_PACKAGE = "dvp.snapshots.v1"
# Echoed back and logged, so only a conservative token is accepted from the client.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(metadata: dict[str, str]) -> str:
    sent = metadata.get(REQUEST_ID_HEADER, "")
    return sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def metadata_dict(context: ServicerContext) -> dict[str, str]:
    """Text metadata, lower-cased keys; the first value wins, binary headers are skipped."""
    result: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            result.setdefault(str(key).lower(), value)
    return result


async def abort(context: ServicerContext, err: ApiError, request_id: str) -> NoReturn:
    await context.abort_with_status(rpc_status.to_status(to_rpc_status(err, request_id)))
    # abort_with_status always raises; this keeps the NoReturn contract explicit.
    raise RuntimeError("abort_with_status returned")


def internal_error(request_id: str) -> ApiError:
    return ApiError(Code.INTERNAL, "INTERNAL", f"internal error (request id {request_id})")


def undecodable_error(bad: Undecodable) -> ApiError:
    return invalid_argument(f"the request is not a valid {bad.type_name} message",
                            [FieldViolation("request", "is not a valid protobuf encoding of the method's request")])


def _log_undecodable(action: str, peer: str, bad: Undecodable) -> None:
    # One line, no traceback: a malformed request is the caller's problem, not ours.
    log.warning("refused an undecodable %s request to %s from %s: %s", bad.type_name, action, peer, bad.error)


async def refuse_unaudited(context: ServicerContext, action: str, bad: Undecodable) -> NoReturn:
    """The same refusal for the services outside the contract (health, reflection), whose
    calls are never authenticated nor audited."""
    _log_undecodable(action, str(context.peer() or ""), bad)
    await abort(context, undecodable_error(bad), "")


def namespace_of(message: object) -> str:
    """The request's namespace for the audit event of a refused call (as the REST door
    records the path's; the core cuts it, the store cleans the text)."""
    namespace = getattr(message, "namespace", "")
    return namespace if isinstance(namespace, str) else ""


def _core_request(message: P, request: Callable[[P], Req]) -> Req:
    reject_unknown_enums(message)
    return request(message)


class CallRunner:
    def __init__(self, gateway: GatewayFacade, telemetry: Telemetry | None = None) -> None:
        self.gateway = gateway
        self.telemetry = telemetry or Telemetry.off()

    async def _open(self, context: ServicerContext, action: str) -> tuple[dict[str, str], str, str, CallScope]:
        """Metadata, request id (already sent back), peer and telemetry of the call."""
        metadata = metadata_dict(context)
        request_id = request_id_from(metadata)
        request_id_var.set(request_id)
        await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
        return metadata, request_id, str(context.peer() or ""), self._scope(action, request_id, metadata)

    def _scope(self, action: str, request_id: str, metadata: dict[str, str]) -> CallScope:
        if not self.telemetry.traced:
            return self.telemetry.call(action, "grpc", request_id)
        method = BY_NAME.get(action)
        service = f"{PROTO_PACKAGE}.{method.service}" if method is not None else PROTO_PACKAGE
        return self.telemetry.call(action, "grpc", request_id, metadata, span_name=f"{service}/{action}",
                                   attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": action})

    async def refuse_undecodable(self, context: ServicerContext, action: str, bad: Undecodable) -> NoReturn:
        """INVALID_ARGUMENT for a request that did not decode, before any token is
        checked; audited as a rejection by the anonymous caller."""
        _, request_id, peer, scope = await self._open(context, action)
        code = CANCELLED
        try:
            _log_undecodable(action, peer, bad)
            ctx = RequestContext(caller=Caller(ANONYMOUS), request_id=request_id, protocol="grpc", peer=peer)
            failure = await self._recorded(ctx, action, undecodable_error(bad))
            code = failure.code.value
            await abort(context, failure, request_id)
        finally:
            scope.end(code)

    async def _begin(self, context: ServicerContext, action: str,
                     message: object) -> tuple[str, RequestContext | ApiError, CallScope]:
        metadata, request_id, peer, scope = await self._open(context, action)
        try:
            caller = await self.gateway.authenticate(metadata.get("authorization"), action=action, protocol="grpc",
                                                     peer=peer, request_id=request_id,
                                                     namespace=namespace_of(message))
        except ApiError as err:
            return request_id, err, scope
        except Exception:
            scope.end(Code.INTERNAL.value)
            raise
        except BaseException:
            scope.end(CANCELLED)
            raise
        scope.caller(caller.subject)
        return request_id, RequestContext(caller=caller, request_id=request_id, protocol="grpc", peer=peer), scope

    async def _recorded(self, ctx: RequestContext, action: str, err: ApiError, message: object = None) -> ApiError:
        """The failure to send, once the audit log holds it (adapter rejections included)."""
        try:
            await self.gateway.record_rejection(ctx, action, err, namespace=namespace_of(message))
        except ApiError as audit_failure:
            return audit_failure
        return err

    async def unary(self, context: ServicerContext, method: Method[Req, Res], message: P,
                    request: Callable[[P], Req], reply: Callable[[Res], M]) -> M:
        request_id, ctx, scope = await self._begin(context, method.name, message)
        code = CANCELLED   # unless the call gets to answer
        try:
            if isinstance(ctx, ApiError):
                code = ctx.code.value
                await abort(context, ctx, request_id)
            failure: ApiError
            try:
                result = await self.gateway.call(ctx, method, _core_request(message, request))
                answer = reply(result)
            except ApiError as err:
                failure = await self._recorded(ctx, method.name, err, message)
                scope.operation(err.metadata.get("operation_id", ""))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unexpected error in %s", method.name)
                failure = internal_error(request_id)
            else:
                if isinstance(result, Operation):
                    scope.operation(result.id)
                code = OK
                return answer
            code = failure.code.value
            await abort(context, failure, request_id)
        finally:
            scope.end(code)

    async def stream(self, context: ServicerContext, method: Method[Req, Res], message: P,
                     request: Callable[[P], Req], reply: Callable[[Res], M]) -> AsyncIterator[M]:
        """Relay a facade stream; stops (and closes the facade's generator) when the
        caller cancels. The facade checks authorization on the first ``__anext__``."""
        request_id, ctx, scope = await self._begin(context, method.name, message)
        code = CANCELLED   # unless the stream gets to its end
        try:
            if isinstance(ctx, ApiError):
                code = ctx.code.value
                await abort(context, ctx, request_id)
            scope.streaming()
            failure: ApiError
            source: AsyncIterator[Res] | None = None
            try:
                source = self.gateway.stream(ctx, method, _core_request(message, request))
                traced = scope.traced
                async for item in source:
                    if traced and isinstance(item, ExportStart):
                        scope.operation(item.operation_id)
                    yield reply(item)
                code = OK
                return
            except ApiError as err:
                failure = await self._recorded(ctx, method.name, err, message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unexpected error in %s", method.name)
                failure = internal_error(request_id)
            finally:
                aclose = getattr(source, "aclose", None)
                if aclose is not None:
                    await aclose()
            code = failure.code.value
            await abort(context, failure, request_id)
        finally:
            scope.end(code)
