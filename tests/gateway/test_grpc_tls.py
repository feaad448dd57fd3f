"""TLS and mTLS on the gRPC listener, with certificates made for the test."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api.grpc import GrpcTls, start_grpc_server
from tests.gateway.test_grpc_adapter import FakeGateway
from tests.support.certs import issue, pem


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    return Pem(*pem(cert, key))


@dataclass(frozen=True)
class Pki:
    ca: Pem
    server: Pem
    client: Pem


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = issue("test-ca", None, None)
    return Pki(_pem(*ca), _pem(*issue("gateway", ca, ExtendedKeyUsageOID.SERVER_AUTH)),
               _pem(*issue("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)))


async def _check(port: int, credentials: grpc.ChannelCredentials) -> int:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return int(reply.status)


async def test_tls_serves_clients_that_trust_the_ca(pki: Pki) -> None:
    server, port = await start_grpc_server(FakeGateway(), host="127.0.0.1", port=0,
                                           tls=GrpcTls(pki.server.cert, pki.server.key))
    try:
        assert await _check(port, grpc.ssl_channel_credentials(pki.ca.cert)) == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)


async def test_mtls_requires_a_client_certificate_from_the_ca(pki: Pki) -> None:
    server, port = await start_grpc_server(FakeGateway(), host="127.0.0.1", port=0,
                                           tls=GrpcTls(pki.server.cert, pki.server.key, client_ca=pki.ca.cert))
    try:
        with_cert = grpc.ssl_channel_credentials(pki.ca.cert, pki.client.key, pki.client.cert)
        assert await _check(port, with_cert) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _check(port, grpc.ssl_channel_credentials(pki.ca.cert))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)
