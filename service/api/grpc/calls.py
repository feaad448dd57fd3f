"""Per-call plumbing shared by every servicer: request id, authentication, error mapping.

Every RPC is one contract method (``service.core.contract``). ``CallRunner.unary`` and
``CallRunner.stream`` take that ``Method``, the proto request, a function building the
core request from it and a function converting the answer, so that
- the request id (``x-request-id``, generated when absent or malformed) is sent back in
  the initial metadata before anything else, and set for log lines;
- the caller is authenticated through the facade (audited there) under ``method.name``;
- the core request is built inside the error-mapped path: a proto message the core
  cannot take (an unknown enum number) is INVALID_ARGUMENT, recorded as a rejection;
- the facade's ``call`` / ``stream`` runs the method (a method the core does not
  implement yet gets the request ``None`` and answers UNIMPLEMENTED, audited there);
- an ``ApiError`` becomes a gRPC status with google.rpc details;
- anything unexpected becomes INTERNAL with a generic message (logged, never sent).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, TypeVar

from grpc_status import rpc_status

from service.api.grpc.status import to_rpc_status
from service.core.contract import Method
from service.core.domain import RequestContext
from service.core.errors import ApiError, Code
from service.core.facade import GatewayFacade
from service.log import request_id_var

log = logging.getLogger(__name__)

P = TypeVar("P")    # the proto request message
Req = TypeVar("Req")  # the core request
Res = TypeVar("Res")  # the core answer (a stream's item)
M = TypeVar("M")    # the proto answer message

# A grpc.aio.ServicerContext: grpcio ships no type stubs in this environment.
ServicerContext = Any

REQUEST_ID_HEADER = "x-request-id"
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


class CallRunner:
    def __init__(self, gateway: GatewayFacade) -> None:
        self.gateway = gateway

    async def _begin(self, context: ServicerContext, action: str) -> tuple[str, RequestContext | ApiError]:
        metadata = metadata_dict(context)
        request_id = request_id_from(metadata)
        request_id_var.set(request_id)
        await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
        peer = str(context.peer() or "")
        try:
            caller = await self.gateway.authenticate(metadata.get("authorization"), action=action, protocol="grpc",
                                                     peer=peer, request_id=request_id)
        except ApiError as err:
            return request_id, err
        return request_id, RequestContext(caller=caller, request_id=request_id, protocol="grpc", peer=peer)

    async def _recorded(self, ctx: RequestContext, action: str, err: ApiError) -> ApiError:
        """The failure to send, once the audit log holds it (adapter rejections included)."""
        try:
            await self.gateway.record_rejection(ctx, action, err)
        except ApiError as audit_failure:
            return audit_failure
        return err

    async def unary(self, context: ServicerContext, method: Method[Req, Res], message: P,
                    request: Callable[[P], Req], reply: Callable[[Res], M]) -> M:
        request_id, ctx = await self._begin(context, method.name)
        if isinstance(ctx, ApiError):
            await abort(context, ctx, request_id)
        failure: ApiError
        try:
            return reply(await self.gateway.call(ctx, method, request(message)))
        except ApiError as err:
            failure = await self._recorded(ctx, method.name, err)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error in %s", method.name)
            failure = internal_error(request_id)
        await abort(context, failure, request_id)

    async def stream(self, context: ServicerContext, method: Method[Req, Res], message: P,
                     request: Callable[[P], Req], reply: Callable[[Res], M]) -> AsyncIterator[M]:
        """Relay a facade stream; stops (and closes the facade's generator) when the
        caller cancels. The facade checks authorization on the first ``__anext__``."""
        request_id, ctx = await self._begin(context, method.name)
        if isinstance(ctx, ApiError):
            await abort(context, ctx, request_id)
        failure: ApiError
        source: AsyncIterator[Res] | None = None
        try:
            source = self.gateway.stream(ctx, method, request(message))
            async for item in source:
                yield reply(item)
            return
        except ApiError as err:
            failure = await self._recorded(ctx, method.name, err)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error in %s", method.name)
            failure = internal_error(request_id)
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
        await abort(context, failure, request_id)
