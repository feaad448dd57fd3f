"""Fixtures of the client tests: a ``GatewayClient`` of the real gateway (``gateway_server``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service.client.gateway import GatewayClient
from tests.support.gateway import GatewayServer


@pytest.fixture
async def client(gateway_server: GatewayServer) -> AsyncIterator[GatewayClient]:
    """The admin's client, demo as its default namespace."""
    async with GatewayClient.connect(gateway_server.grpc_target, token=gateway_server.token,
                                     namespace=gateway_server.namespace) as connected:
        yield connected
