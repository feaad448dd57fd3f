"""The REST listener's timeouts, and a runner that applies the one aiohttp lacks.

aiohttp 3.14 closes a connection idle between requests after ``keepalive_timeout`` (its
timer also runs from the connection's start, so it bounds a first request's header too),
but once a request has begun nothing bounds how long its header may take to arrive: a
client sending half a header after an earlier request holds the connection until the
keep-alive timer fires, and with aiohttp's default that is an hour. ``RestRunner`` gives
every connection a header timer: armed when the connection opens and whenever bytes
arrive while no request is being handled, disarmed when a request's header is complete;
when it fires the connection is closed.

Body reads have their own bound (``body_timeout``, in ``service.api.rest.body``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from service.api.rest.problems import internal_error, problem_response, transport_error

log = logging.getLogger("dvp.rest")


@dataclass(frozen=True)
class ListenerSettings:
    # A request's header (request line and fields) must arrive whole within this.
    header_timeout: float = 10.0
    # A keep-alive connection with no request in flight is closed after this; longer
    # than the usual proxy idle timeout (60 s) so a proxy never reuses a closing connection.
    idle_timeout: float = 75.0
    # A request body must arrive whole within this (408 otherwise).
    body_timeout: float = 30.0


LISTENER = web.AppKey("listener", ListenerSettings)


class _Connection(RequestHandler):
    """aiohttp's connection protocol plus the header timer."""

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if data and not self._in_request and self._header_timer is None:
            self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def request_started(self) -> None:
        self._in_request = True
        self._disarm()

    def request_done(self) -> None:
        self._in_request = False

    def _arm(self) -> None:
        self._header_timer = asyncio.get_running_loop().call_later(self._header_timeout, self._header_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if not self._in_request:
            log.info("closing a connection whose request header did not arrive within %gs", self._header_timeout)
            self.force_close()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """What the HTTP parser could not read (or what escaped the application) as a
        problem document. aiohttp's own answer and log line echo the offending header line,
        which may be the Authorization header: neither is used."""
        if status >= 500:
            log.error("unhandled error serving a request", exc_info=exc)
        else:
            log.info("refused a request that is not HTTP/1.1 as the parser reads it (%s)", type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun; no error response can follow")  # as aiohttp does
        error = internal_error() if status >= 500 else transport_error(
            status, "MALFORMED_HTTP_REQUEST", "the request could not be read as HTTP/1.1")
        rid = uuid.uuid4().hex
        response = problem_response(error, request_id=rid, instance="")
        response.headers["X-Request-Id"] = rid
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's server, making ``_Connection``s and telling them when requests start and end."""

    def __init__(self, plain: web.Server, header_timeout: float) -> None:
        handle, make_request = plain.request_handler, plain.request_factory

        async def handle_and_tell(request: web.BaseRequest) -> web.StreamResponse:
            try:
                return await handle(request)
            finally:
                if isinstance(request.protocol, _Connection):
                    request.protocol.request_done()

        def make_and_tell(message: RawRequestMessage, payload: StreamReader, protocol: RequestHandler,
                          writer: AbstractStreamWriter, task: asyncio.Task[None]) -> web.BaseRequest:
            if isinstance(protocol, _Connection):
                protocol.request_started()
            return make_request(message, payload, protocol, writer, task)

        # The keyword arguments aiohttp gathered for its connections (the application's
        # handler_args, the runner's access log settings): only ``Server`` holds them.
        self._connection_kwargs: dict[str, Any] = dict(plain._kwargs)
        self._header_timeout = header_timeout
        super().__init__(handle_and_tell, request_factory=make_and_tell,
                         handler_cancellation=plain.handler_cancellation, **self._connection_kwargs)

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=asyncio.get_running_loop(), header_timeout=self._header_timeout,
                           **self._connection_kwargs)


class RestRunner(web.AppRunner):
    """``web.AppRunner`` for ``create_rest_app``'s application: its connections close when a
    request header is late (``ListenerSettings.header_timeout``); the idle timeout is
    the application's own (``keepalive_timeout`` in its handler_args)."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        settings = self.app.get(LISTENER) or ListenerSettings()
        return _Server(plain, settings.header_timeout)


def rest_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """The runner the REST listener is served with (``web.AppRunner``'s keyword arguments)."""
    return RestRunner(app, **kwargs)

