"""TLS and mTLS from the client's side: a real grpc.aio server with certificates made for
the test (as tests/gateway/test_grpc_tls.py makes them), and the client trusting its CA,
presenting a client certificate, and checking a server name other than the target's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from service.api.grpc_gen.dvp.snapshots.v1 import operation_pb2, operation_service_pb2_grpc
from service.client import errors
from service.client.config import load_config
from service.client.gateway import GatewayClient
from tests.support.certs import issue, pem
from tests.support.gateway import start_gateway

SERVER_NAME = "gateway.internal"   # the only name in the server's certificate


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: bytes
    server_key: bytes
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = issue("test-ca", None, None)
    server_cert, server_key = pem(*issue("gateway", ca, ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName(SERVER_NAME)]))
    client_cert, client_key = pem(*issue("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH))
    for name, content in (("ca.pem", pem(*ca)[0]), ("client.pem", client_cert), ("client-key.pem", client_key)):
        (directory / name).write_bytes(content)
    return Pki(directory / "ca.pem", server_cert, server_key, directory / "client.pem", directory / "client-key.pem")


class Operations(operation_service_pb2_grpc.OperationServiceServicer):
    async def GetOperation(self, request: Any, context: Any) -> operation_pb2.Operation:
        return operation_pb2.Operation(id=request.operation_id, state=operation_pb2.Operation.SUCCEEDED)


async def _serve(pki: Pki, *, require_client_cert: bool) -> tuple[Any, str]:
    server = grpc.aio.server()
    operation_service_pb2_grpc.add_OperationServiceServicer_to_server(Operations(), server)
    credentials = grpc.ssl_server_credentials([(pki.server_key, pki.server_cert)],
                                              root_certificates=pki.ca.read_bytes() if require_client_cert else None,
                                              require_client_auth=require_client_cert)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[str]:
    server, target = await _serve(pki, require_client_cert=False)
    yield target
    await server.stop(None)


@pytest.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[str]:
    server, target = await _serve(pki, require_client_cert=True)
    yield target
    await server.stop(None)


async def test_tls_with_the_ca_and_the_server_name(pki: Pki, tls_server: str, tmp_path: Path) -> None:
    async with GatewayClient.connect(tls_server, ca_file=pki.ca, server_name=SERVER_NAME, retries=0) as client:
        assert client.tls and (await client.get_operation("op-1")).id == "op-1"
    # The certificate names gateway.internal only: dialled as 127.0.0.1 it is refused.
    async with GatewayClient.connect(tls_server, ca_file=pki.ca, retries=0, timeout=5) as unchecked:
        with pytest.raises(errors.Unavailable):
            await unchecked.get_operation("op-1")
    # The config file's caFile, as `dvp-gateway serve --tls-cert` writes it.
    config = tmp_path / "client.yaml"
    config.write_text(yaml.safe_dump({"grpc": tls_server, "tls": True, "caFile": str(pki.ca)}))
    loaded = load_config(config)
    async with GatewayClient.connect(loaded.grpc, tls=loaded.tls, ca_file=loaded.ca_file,
                                     server_name=SERVER_NAME) as configured:
        assert (await configured.get_operation("op-2")).id == "op-2"


async def test_mtls_needs_the_client_certificate(pki: Pki, mtls_server: str) -> None:
    async with GatewayClient.connect(mtls_server, ca_file=pki.ca, client_cert=pki.client_cert,
                                     client_key=pki.client_key, server_name=SERVER_NAME, retries=0) as client:
        assert (await client.get_operation("op-3")).id == "op-3"
    async with GatewayClient.connect(mtls_server, ca_file=pki.ca, server_name=SERVER_NAME, retries=0,
                                     timeout=5) as anonymous:
        with pytest.raises(errors.Unavailable):
            await anonymous.get_operation("op-3")
    with pytest.raises(ValueError, match="go together"):
        GatewayClient.connect(mtls_server, client_cert=pki.client_cert)
    with pytest.raises(ValueError, match="cannot read the CA bundle"):
        GatewayClient.connect(mtls_server, ca_file=pki.ca.with_name("missing.pem"))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_real_gateway_over_mtls(pki: Pki, embedded_cluster: Any, database_url: str, tmp_path: Path) -> None:
    (tmp_path / "server.pem").write_bytes(pki.server_cert)
    (tmp_path / "server-key.pem").write_bytes(pki.server_key)
    app, tokens, _ = await start_gateway(embedded_cluster, database_url, tmp_path, tls_cert=tmp_path / "server.pem",
                                         tls_key=tmp_path / "server-key.pem", tls_client_ca=pki.ca)
    try:
        async with GatewayClient.connect(f"127.0.0.1:{app.grpc_port}", token=tokens["operator"], ca_file=pki.ca,
                                         client_cert=pki.client_cert, client_key=pki.client_key,
                                         server_name=SERVER_NAME, namespace="demo") as client:
            operation = await client.create_disk_snapshot(virtual_disk_name="spare-disk", name="over-mtls")
            assert (await client.wait(operation, timeout=20)).state == operation_pb2.Operation.SUCCEEDED
            with pytest.raises(errors.PermissionDenied):   # the operator's policy: the demo namespace only
                await client.list_disk_snapshots("default")
    finally:
        await app.stop()
