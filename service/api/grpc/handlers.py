"""Registers a servicer from its service descriptor, with decoding that cannot fail in grpc.

The generated ``add_*Servicer_to_server`` functions use ``Message.FromString``, which
raises on corrupt bytes before any of our code runs (UNKNOWN, a traceback, no audit).
Here every method gets ``decode.safe_deserializer`` and a thin wrapper that hands an
``Undecodable`` to ``refuse`` (which aborts the call) instead of the servicer. A servicer
may answer with pre-serialized bytes (shared watch events): the response serializer
passes them through.
"""

# grpcio ships no type stubs in this environment; its objects are typed as Any.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from service.api.grpc.calls import ServicerContext
from service.api.grpc.decode import Undecodable, safe_deserializer

# Aborts the call (context, method name, what did not decode); never returns.
Refuse = Callable[[ServicerContext, str, Undecodable], Awaitable[NoReturn]]
Behaviour = Callable[[Any, ServicerContext], Any]

_KINDS = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
          (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}


def add_servicer(server: grpc.aio.Server, service: ServiceDescriptor, servicer: object, refuse: Refuse) -> None:
    """Serve every method of ``service`` with ``servicer``'s method of the same name."""
    handlers = {method.name: _handler(method, getattr(servicer, method.name), refuse) for method in service.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def _handler(method: MethodDescriptor, behaviour: Behaviour, refuse: Refuse) -> grpc.RpcMethodHandler:
    action = method.name

    async def one(request: Any, context: ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await refuse(context, action, request)
        return request

    async def each(received: AsyncIterator[Any], context: ServicerContext) -> AsyncIterator[Any]:
        return _each_checked(received, context, action, refuse)

    return _KINDS[method.client_streaming, method.server_streaming](
        _wrapped(behaviour, each if method.client_streaming else one),
        request_deserializer=safe_deserializer(message_factory.GetMessageClass(method.input_type)),
        response_serializer=_serializer(message_factory.GetMessageClass(method.output_type)))


def _serializer(message_class: Any) -> Callable[[Any], bytes]:
    """The message's own serializer, except that bytes pass through untouched: a watch
    event is serialized once and the same bytes are sent to every subscriber."""
    serialize = message_class.SerializeToString

    def serialized(message: Any) -> bytes:
        if isinstance(message, bytes):
            return message
        data: bytes = serialize(message)
        return data

    return serialized


async def _each_checked(received: AsyncIterator[Any], context: ServicerContext, action: str,
                        refuse: Refuse) -> AsyncIterator[Any]:
    async for request in received:
        if isinstance(request, Undecodable):
            await refuse(context, action, request)
        yield request


def _wrapped(behaviour: Behaviour, checked: Callable[[Any, ServicerContext], Awaitable[Any]]) -> Behaviour:
    """``behaviour`` given ``checked(request)``: an async generator (a server stream)
    stays one, a coroutine (unary, or streaming through ``context.write``) stays one."""
    if inspect.isasyncgenfunction(behaviour):
        async def stream(request: Any, context: ServicerContext) -> AsyncGenerator[Any, None]:
            items = behaviour(await checked(request, context), context)
            try:
                async for item in items:
                    yield item
            finally:
                # Closed now, not by the garbage collector, when the caller goes away midway.
                await items.aclose()

        return stream

    async def call(request: Any, context: ServicerContext) -> Any:
        return await behaviour(await checked(request, context), context)

    return call
