"""The REST listener against clients that hold connections: half a request header, a
header trickled byte by byte, an idle keep-alive connection, a trickled body; and what
the HTTP parser refuses. Raw sockets against ``create_rest_app`` served by
``rest_runner``, with short timeouts so the bounds are measured in well under a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from service.api.rest import ListenerSettings, create_rest_app, rest_runner
from service.api.rest.listener import RestRunner
from service.core import errors
from service.core.contract import Method
from service.core.domain import Caller, RequestContext
from tests.support.openapi import SPEC_PATH

TOKEN = "listener-test-token"
SHORT = ListenerSettings(header_timeout=0.5, idle_timeout=30.0, body_timeout=5.0)
# Generous against a loaded 2-core machine; what is checked is "bounded", not "exact".
SLACK = 2.0


class StubGateway:
    """Just enough of the facade for the listener: one token, every call NOT_FOUND."""

    def __init__(self) -> None:
        self.rejections: list[tuple[str, str, str]] = []

    async def authenticate(self, authorization: str | None, *, action: str, protocol: str, peer: str = "",
                           request_id: str = "", namespace: str = "") -> Caller:
        if authorization != f"Bearer {TOKEN}":
            raise errors.unauthenticated()
        return Caller("tester")

    async def call(self, ctx: RequestContext, method: Method[Any, Any], req: Any) -> Any:
        raise errors.not_found("Operation", "x")

    def stream(self, ctx: RequestContext, method: Method[Any, Any], req: Any) -> Any:
        raise errors.not_found("Operation", "x")

    async def record_rejection(self, ctx: RequestContext, action: str, error: errors.ApiError, *,
                               namespace: str = "") -> None:
        self.rejections.append((action, error.reason, namespace))

    async def check_ready(self) -> dict[str, bool]:
        return {"stub": True}


@contextlib.asynccontextmanager
async def serve(listener: ListenerSettings | None = None,
                gateway: StubGateway | None = None) -> AsyncIterator[tuple[int, web.AppRunner]]:
    app = create_rest_app(gateway or StubGateway(), openapi_path=SPEC_PATH, listener=listener)
    runner = rest_runner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield runner.addresses[0][1], runner
    finally:
        await runner.cleanup()


async def closed_after(reader: asyncio.StreamReader, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closes the connection, and what it sent before."""
    start = time.monotonic()
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await asyncio.wait_for(reader.read(65536), limit):
            received += chunk
    return time.monotonic() - start, received


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 5)
    return int(lines[0].split()[1]), headers, body


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
HALF = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "


async def test_half_a_header_is_closed_after_the_header_timeout() -> None:
    async with serve(SHORT) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF)
        elapsed, received = await closed_after(reader, SHORT.header_timeout + SLACK)
        writer.close()
    assert received == b"" and SHORT.header_timeout * 0.8 <= elapsed < SHORT.header_timeout + SLACK


async def test_a_header_trickled_byte_by_byte_gets_no_more_time() -> None:
    async with serve(SHORT) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in HALF * 10:
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.05)

        sending = asyncio.create_task(trickle())
        elapsed, _ = await closed_after(reader, SHORT.header_timeout + SLACK)
        sending.cancel()
        writer.close()
    assert elapsed < SHORT.header_timeout + SLACK


async def test_half_a_header_on_a_kept_alive_connection_is_closed_too() -> None:
    async with serve(SHORT) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTHZ)
        status, _, _ = await read_response(reader)
        await asyncio.sleep(SHORT.header_timeout)   # idle: only the idle timeout applies
        writer.write(HALF)
        elapsed, received = await closed_after(reader, SHORT.header_timeout + SLACK)
        writer.close()
    assert status == 200 and received == b"" and elapsed < SHORT.header_timeout + SLACK


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() -> None:
    listener = ListenerSettings(header_timeout=10.0, idle_timeout=0.5)
    async with serve(listener) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTHZ)
        status, headers, _ = await read_response(reader)
        elapsed, received = await closed_after(reader, listener.idle_timeout + SLACK)
        writer.close()
    assert status == 200 and headers.get("connection", "").lower() != "close"
    assert received == b"" and elapsed < listener.idle_timeout + SLACK


async def test_a_header_that_arrives_in_time_is_served() -> None:
    async with serve(SHORT) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTHZ[:20])
        await asyncio.sleep(SHORT.header_timeout / 2)
        writer.write(HEALTHZ[20:])
        status, _, body = await read_response(reader)
        writer.close()
    assert status == 200 and json.loads(body)["status"] == "ok"


async def test_a_body_slower_than_the_header_timeout_is_not_cut_off() -> None:
    """The header timer stops with the header: a request in progress is the body timeout's."""
    async with serve(SHORT) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/operations/x:cancel HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n")
        await asyncio.sleep(SHORT.header_timeout * 2)
        writer.write(b"{}")
        status, headers, _ = await read_response(reader)
        writer.close()
    assert status == 404 and headers["content-type"].startswith("application/problem+json")


async def test_a_trickled_body_is_408_and_the_connection_closed() -> None:
    listener = ListenerSettings(header_timeout=10.0, body_timeout=0.5)
    gateway = StubGateway()
    async with serve(listener, gateway) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/namespaces/demo/disk-snapshots HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + TOKEN.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        start = time.monotonic()
        status, headers, body = await read_response(reader)
        elapsed = time.monotonic() - start
        writer.close()
    assert status == 408 and headers["connection"].lower() == "close"
    assert json.loads(body)["reason"] == "REQUEST_TIMEOUT" and elapsed < listener.body_timeout + SLACK
    assert gateway.rejections == [("CreateDiskSnapshot", "REQUEST_TIMEOUT", "demo")]


async def test_the_default_bounds_and_the_runner_that_applies_them() -> None:
    assert ListenerSettings() == ListenerSettings(header_timeout=10.0, idle_timeout=75.0, body_timeout=30.0)
    async with serve() as (port, runner):
        assert isinstance(runner, RestRunner)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTHZ)
        await read_response(reader)
        assert runner.server is not None
        [connection] = runner.server.connections
        assert connection.keepalive_timeout == 75.0
        assert connection._header_timeout == 10.0  # type: ignore[attr-defined]
        writer.close()


PARSER_REFUSES: dict[str, bytes] = {
    "raw non-UTF-8 bytes in the path": b"GET /v1/namespaces/\xff/disk-snapshots HTTP/1.1\r\nHost: x\r\n\r\n",
    "a NUL in a header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer se\x00cret\r\n\r\n",
    "a header line over the limit": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 200_000 + b"\r\n\r\n",
    "not HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
}


@pytest.mark.parametrize("request_bytes", PARSER_REFUSES.values(), ids=PARSER_REFUSES.keys())
async def test_what_the_http_parser_refuses_is_a_problem_that_echoes_nothing(
        request_bytes: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve(SHORT) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes)
        status, headers, body = await read_response(reader)
        _, rest = await closed_after(reader, SLACK)
        writer.close()
    problem = json.loads(body)
    assert status == 400 and headers["content-type"].startswith("application/problem+json") and rest == b""
    assert problem["reason"] == "MALFORMED_HTTP_REQUEST" and problem["requestId"] == headers["x-request-id"]
    assert b"cret" not in body and b"\\xff" not in body
    assert "cret" not in caplog.text   # nor in the log: the line may be an Authorization header
