"""Long-lived responses: Server-Sent Events and whole-log exports.

Every open stream is registered in the application so a graceful shutdown can end them
(``close_streams``) instead of waiting for clients that never hang up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from service.api.rest.context import REQUEST_ID
from service.api.rest.problems import internal_error, problem_document
from service.core.errors import ApiError

log = logging.getLogger("dvp.rest.streams")

T = TypeVar("T")

# aiohttp's ClientConnectionResetError is a ConnectionResetError, hence a ConnectionError.
_CLOSED_CONNECTION = (ConnectionError,)


@dataclass
class StreamSettings:
    keepalive_seconds: float = 15.0
    # How long a watch may take to produce its first event before the 200 goes out anyway
    # (so that errors raised by the first step still become proper problem responses).
    first_event_grace_seconds: float = 0.5


@dataclass(eq=False)  # hashed by identity: kept in a set
class OpenStream:
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


STREAM_SETTINGS = web.AppKey("stream_settings", StreamSettings)
SSE_STREAMS = web.AppKey("sse_streams", set[OpenStream])


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: dict[str, Any]
    id: str = ""

    def encode(self) -> bytes:
        lines = [f"id: {_single_line(self.id)}"] if self.id else []
        lines.append(f"event: {_single_line(self.event)}")
        # json.dumps never emits a raw newline, so one data line carries the whole document.
        lines.append("data: " + json.dumps(self.data, ensure_ascii=False, separators=(",", ":")))
        return ("\n".join(lines) + "\n\n").encode()


def _single_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


async def close_streams(app: web.Application, grace_seconds: float = 5.0) -> None:
    """Ask every open stream to end, and wait (bounded) until they have."""
    streams = list(app.get(SSE_STREAMS, ()))
    for stream in streams:
        stream.closing.set()
    if streams:
        waits = [asyncio.ensure_future(s.finished.wait()) for s in streams]
        _, pending = await asyncio.wait(waits, timeout=grace_seconds)
        for task in pending:
            task.cancel()


async def _first(iterator: AsyncIterator[T], grace: float) -> asyncio.Future[T]:
    """Start fetching the first item; re-raise its error if it fails within ``grace``."""
    pending: asyncio.Future[T] = asyncio.ensure_future(anext(iterator))
    await asyncio.wait({pending}, timeout=grace)
    if pending.done() and pending.exception() is not None and not isinstance(pending.exception(),
                                                                             StopAsyncIteration):
        pending.result()  # raises: the adapter turns it into a problem response
    return pending


async def serve_sse(request: web.Request, events: AsyncIterator[T],
                    render: Callable[[T], SseEvent]) -> web.StreamResponse:
    settings = request.app[STREAM_SETTINGS]
    pending = await _first(events, settings.first_event_grace_seconds)
    response = web.StreamResponse(status=200, headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        "X-Request-Id": request[REQUEST_ID]})
    stream = OpenStream()
    registry = request.app[SSE_STREAMS]
    registry.add(stream)
    closing = asyncio.ensure_future(stream.closing.wait())
    try:
        await response.prepare(request)
        while True:
            watched: set[asyncio.Future[Any]] = {pending, closing}
            await asyncio.wait(watched, timeout=settings.keepalive_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
            if closing.done():
                break
            if not pending.done():
                await response.write(b": keepalive\n\n")
                continue
            final = _final_event(pending, request)
            if final is not None:
                if final.event:
                    await response.write(final.encode())
                break
            await response.write(render(pending.result()).encode())
            pending = asyncio.ensure_future(anext(events))
        with contextlib.suppress(*_CLOSED_CONNECTION):
            await response.write_eof()
    except _CLOSED_CONNECTION:
        log.debug("event stream client went away")
    except Exception:
        # The 200 is out: the error can only travel as the stream's last event.
        log.exception("event stream failed after it started")
        error = SseEvent(event="error", data=problem_document(internal_error(), request_id=request[REQUEST_ID],
                                                              instance=request.path))
        if response.prepared:
            with contextlib.suppress(*_CLOSED_CONNECTION):
                await response.write(error.encode())
                await response.write_eof()
    finally:
        closing.cancel()
        pending.cancel()
        try:
            # Let the cancelled step unwind inside the generator before closing it.
            await asyncio.wait({pending}, timeout=1.0)
            with contextlib.suppress(Exception):
                await _aclose(events)
        finally:
            registry.discard(stream)
            stream.finished.set()
    return response


def _final_event(done: asyncio.Future[Any], request: web.Request) -> SseEvent | None:
    """None while the stream goes on; an empty event for a clean end; an error event otherwise."""
    exc = done.exception()
    if exc is None:
        return None
    if isinstance(exc, StopAsyncIteration):
        return SseEvent(event="", data={})
    error = exc if isinstance(exc, ApiError) else internal_error()
    if not isinstance(exc, ApiError):
        log.error("event stream failed", exc_info=exc)
    return SseEvent(event="error", data=problem_document(error, request_id=request[REQUEST_ID],
                                                          instance=request.path))


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def serve_lines(request: web.Request, items: AsyncIterator[T], content_type: str,
                      render: Callable[[T], bytes], header: bytes = b"") -> web.StreamResponse:
    """Stream every item as one line of an export; the first item is fetched before the 200
    goes out so an authorization or validation error is still a problem response."""
    try:
        first: T | None = await anext(items)
    except StopAsyncIteration:
        first = None
    response = web.StreamResponse(status=200, headers={"Content-Type": content_type,
                                                       "X-Request-Id": request[REQUEST_ID]})
    try:
        await response.prepare(request)
        if header:
            await response.write(header)
        if first is not None:
            await response.write(render(first))
            async for item in items:
                await response.write(render(item))
        await response.write_eof()
    except _CLOSED_CONNECTION:
        log.debug("export client went away")
    except Exception:
        # The status line is gone: cutting the stream short is the only honest signal left.
        log.warning("export aborted by an error after it started", exc_info=True)
        if request.transport is not None:
            request.transport.close()
    finally:
        with contextlib.suppress(Exception):
            await _aclose(items)
    return response
