"""Long-lived responses: Server-Sent Events and whole-log exports.

Every open stream is registered in the application so a graceful shutdown can end them
(``close_streams``) instead of waiting for clients that never hang up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from service.api.rest.context import REQUEST_ID, ended_with
from service.api.rest.problems import internal_error, problem_document
from service.core.errors import ApiError, Code, watch_overflow
from service.core.fanout import OncePer
from service.observability.telemetry import CANCELLED

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
    # Bytes a watch may have waiting in its socket's send buffer (past the kernel's): a
    # client that reads slower than the events come is sent WATCH_OVERFLOW and let go,
    # instead of holding memory or slowing the others.
    max_buffer_bytes: int = 256 * 1024
    # How long the last event and the end of a stream may take to go out.
    end_timeout_seconds: float = 10.0


@dataclass(eq=False)  # hashed by identity: kept in a set
class OpenStream:
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    # Set while serving: the handler's task (cancelled to end the stream at once when the
    # gateway closes it or the client is gone) and its response (for keepalives).
    task: asyncio.Task[Any] | None = None
    response: web.StreamResponse | None = None
    transport: asyncio.BaseTransport | None = None
    last_write: float = 0.0
    ping: asyncio.Task[None] | None = None
    gone: bool = False

    def end(self, *, gone: bool = False) -> None:
        """Stop serving: the handler's task wakes from whatever it awaits."""
        self.gone = self.gone or gone
        # Only while in the serving loop (response set): not while writing the end.
        if self.response is not None and self.task is not None and not self.task.done():
            self.task.cancel()


STREAM_SETTINGS = web.AppKey("stream_settings", StreamSettings)
SSE_STREAMS = web.AppKey("sse_streams", set[OpenStream])
# One task per application sends the keepalives of every idle stream: a stream's own loop
# then only awaits its next event (no timer, no extra task per event).
_KEEPALIVES: weakref.WeakKeyDictionary[web.Application, asyncio.Task[None]] = weakref.WeakKeyDictionary()
_KEEPALIVE_FRAME = b": keepalive\n\n"


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
        stream.end()
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


# Encoders by render function: each event object (the same one for every watcher of a
# change, service.core.fanout) is rendered and encoded once, and the frame is shared.
# Each is the frame, and the same frame as one HTTP/1.1 chunk (what aiohttp's writer would
# send), so a stream writes it to its socket as is.
Frame = tuple[bytes, bytes]
_ENCODERS: weakref.WeakKeyDictionary[Callable[[Any], SseEvent], OncePer[Any, Frame]] = weakref.WeakKeyDictionary()


def _encoder(render: Callable[[T], SseEvent]) -> OncePer[T, Frame]:
    encoder = _ENCODERS.get(render)
    if encoder is None:
        name = getattr(render, "__qualname__", "render")
        encoder = _ENCODERS[render] = OncePer(f"sse:{name}", lambda item: _frame(render(item).encode()))
    return encoder


def _frame(data: bytes) -> Frame:
    return data, b"%x\r\n%b\r\n" % (len(data), data)


def _start_keepalives(app: web.Application, settings: StreamSettings) -> None:
    task = _KEEPALIVES.get(app)
    if task is None or task.done():
        _KEEPALIVES[app] = asyncio.get_running_loop().create_task(
            _keepalives(app[SSE_STREAMS], settings.keepalive_seconds), name="sse-keepalives")


async def _keepalives(streams: set[OpenStream], every: float) -> None:
    """A comment frame on every stream that wrote nothing for about ``every`` seconds; a
    stream whose client is gone (the write fails, the transport closed) is ended."""
    loop = asyncio.get_running_loop()
    while streams:
        await asyncio.sleep(every / 2)
        now = loop.time()
        for stream in list(streams):
            if stream.response is None or now - stream.last_write < every / 2:
                continue
            transport = stream.transport
            if transport is None or transport.is_closing():
                stream.end(gone=True)
                continue
            if isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
                continue  # still sending: the client is not idle, only slow
            if stream.ping is not None and not stream.ping.done():
                continue
            stream.last_write = now
            stream.ping = loop.create_task(_keepalive(stream, stream.response))


async def _keepalive(stream: OpenStream, response: web.StreamResponse) -> None:
    try:
        await response.write(_KEEPALIVE_FRAME)
    except _CLOSED_CONNECTION:
        stream.end(gone=True)
    except Exception:  # the stream's own loop reports its failures; this one only pings
        log.debug("keepalive write failed", exc_info=True)
        stream.end(gone=True)


async def serve_sse(request: web.Request, events: AsyncIterator[T],
                    render: Callable[[T], SseEvent]) -> web.StreamResponse:
    settings = request.app[STREAM_SETTINGS]
    encode = _encoder(render)
    pending = await _first(events, settings.first_event_grace_seconds)
    response = web.StreamResponse(status=200, headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        "X-Request-Id": request[REQUEST_ID]})
    loop = asyncio.get_running_loop()
    stream = OpenStream(task=asyncio.current_task())
    registry = request.app[SSE_STREAMS]
    registry.add(stream)
    final: SseEvent | None = None
    try:
        await response.prepare(request)
        stream.response, stream.transport, stream.last_write = response, request.transport, loop.time()
        _start_keepalives(request.app, settings)
        try:
            item = await pending
            # The first frame through aiohttp (it sends the headers with it); then each
            # shared frame straight to the socket: no per-subscriber encoding, no
            # coroutine, no drain wait. aiohttp's writer frames nothing else meanwhile
            # (no compression; chunked unless the client spoke HTTP/1.0).
            await response.write(encode(item)[0])
            stream.last_write = loop.time()
            chunked = response.headers.get("Transfer-Encoding", "").lower() == "chunked"
            transport = request.transport
            limit = settings.max_buffer_bytes
            while True:
                item = await anext(events)
                if transport is None or transport.is_closing():
                    raise ConnectionResetError("the client went away")
                raw, chunk = encode(item)
                transport.write(chunk if chunked else raw)
                stream.last_write = loop.time()
                if transport.get_write_buffer_size() > limit:
                    raise watch_overflow("the client reads slower than the events come")
        except asyncio.CancelledError:
            # Ended by close_streams or the keepalive task (client gone): a clean end.
            task = asyncio.current_task()
            if not (stream.closing.is_set() or stream.gone) or task is None or task.uncancel() > 0:
                raise
            if stream.gone:   # the caller hung up, as when a write finds it out
                ended_with(request, CANCELLED)
        except (StopAsyncIteration, ApiError, ConnectionError):
            raise
        except Exception as exc:
            raise _Failed() from exc
    except StopAsyncIteration:
        final = SseEvent(event="", data={})
    except ApiError as error:
        ended_with(request, error.code.value)
        final = SseEvent(event="error", data=problem_document(error, request_id=request[REQUEST_ID],
                                                              instance=request.path))
    except _CLOSED_CONNECTION:
        log.debug("event stream client went away")
        ended_with(request, CANCELLED)
        stream.gone = True
    except _Failed as failed:
        log.error("event stream failed after it started", exc_info=failed.__cause__)
        ended_with(request, Code.INTERNAL.value)
        final = SseEvent(event="error", data=problem_document(internal_error(), request_id=request[REQUEST_ID],
                                                              instance=request.path))
    finally:
        stream.response = None
        if not pending.done():
            pending.cancel()
            # Let the cancelled step unwind inside the generator before closing it.
            await asyncio.wait({pending}, timeout=1.0)
    try:
        # The subscription goes first: a client that does not read must cost nothing more.
        with contextlib.suppress(Exception):
            await _aclose(events)
        if not stream.gone and response.prepared:
            try:
                async with asyncio.timeout(settings.end_timeout_seconds):
                    if final is not None and final.event:
                        await response.write(final.encode())
                    await response.write_eof()
            except (*_CLOSED_CONNECTION, TimeoutError):
                if request.transport is not None:
                    request.transport.close()
    finally:
        registry.discard(stream)
        stream.finished.set()
    return response


class _Failed(Exception):
    """Anything but an ApiError raised once the 200 is out: it can only travel as the
    stream's last event (a generic internal error, logged here)."""


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
        ended_with(request, CANCELLED)
    except Exception as exc:
        # The status line is gone: cutting the stream short is the only honest signal left.
        log.warning("export aborted by an error after it started", exc_info=True)
        ended_with(request, exc.code.value if isinstance(exc, ApiError) else Code.INTERNAL.value)
        if request.transport is not None:
            request.transport.close()
    finally:
        with contextlib.suppress(Exception):
            await _aclose(items)
    return response
