"""The gRPC listener against connections that never become gRPC: raw sockets that send
nothing, half of the HTTP/2 preface, or the preface without SETTINGS are closed once the
handshake timeout passes; a connection with no call in flight is sent away once idle.

The server here runs with short limits (``GrpcLimits``) so the test takes a second; the
defaults are checked as the channel arguments they become.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from service.api.grpc import GrpcLimits, start_grpc_server
from service.api.grpc_gen.dvp.snapshots.v1 import operation_service_pb2, operation_service_pb2_grpc
from tests.gateway.test_grpc_adapter import AUTH, FakeGateway

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HANDSHAKE = 0.5
IDLE = 0.5
# Generous: a loaded two-core machine may be slow to run grpc's timers, never 10x slow.
BOUND = 8.0


@pytest.fixture
async def port() -> AsyncIterator[int]:
    limits = GrpcLimits(handshake_timeout=HANDSHAKE, max_connection_idle=IDLE)
    server, bound = await start_grpc_server(FakeGateway(), host="127.0.0.1", port=0, limits=limits)
    try:
        yield bound
    finally:
        await server.stop(None)


async def _seconds_until_closed(port: int, sent: bytes) -> float:
    """Connect, send ``sent``, then read (and discard the server's SETTINGS) until the
    server closes the connection; the time that took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(sent)
        await writer.drain()
        async with asyncio.timeout(BOUND):
            while True:
                try:
                    if not await reader.read(65536):
                        break
                except ConnectionResetError:
                    break
        return time.monotonic() - started
    finally:
        writer.close()


@pytest.mark.parametrize("sent", [b"", PREFACE[:12], PREFACE], ids=["nothing", "half-preface", "no-settings"])
async def test_a_connection_that_never_completes_the_handshake_is_closed(port: int, sent: bytes) -> None:
    elapsed = await _seconds_until_closed(port, sent)
    assert HANDSHAKE * 0.5 <= elapsed < BOUND


async def test_a_real_client_outlives_the_handshake_timeout_and_idle_connections_are_sent_away(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = operation_service_pb2_grpc.OperationServiceStub(channel)
        for _ in range(2):  # the second call comes after the handshake timeout: still served
            await stub.GetOperation(operation_service_pb2.GetOperationRequest(operation_id="op-1"), metadata=AUTH)
            await asyncio.sleep(HANDSHAKE * 1.5)
        # No call in flight for longer than the idle limit: the server sent GOAWAY.
        async with asyncio.timeout(BOUND):
            while channel.get_state() == grpc.ChannelConnectivity.READY:
                await channel.wait_for_state_change(grpc.ChannelConnectivity.READY)
        assert channel.get_state() != grpc.ChannelConnectivity.READY


def test_default_limits_become_grpc_channel_arguments() -> None:
    options = dict(GrpcLimits().options())
    assert options["grpc.server_handshake_timeout_ms"] == 10_000
    assert options["grpc.max_connection_idle_ms"] == 300_000
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.keepalive_timeout_ms"] == 20_000
    assert options["grpc.max_receive_message_length"] == 4 * 1024 * 1024
    assert options["grpc.max_concurrent_streams"] == 1000
