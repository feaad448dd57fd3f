"""Builds the grpc.aio server: the six services, health checking and reflection."""

# grpcio ships no type stubs in this environment; its objects are typed as Any.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.api.grpc.audit import AuditServicer
from service.api.grpc.calls import CallRunner
from service.api.grpc.clone import CloneServicer
from service.api.grpc.export import ExportServicer
from service.api.grpc.operations import OperationServicer
from service.api.grpc.restore import RestoreServicer
from service.api.grpc.snapshots import SnapshotServicer
from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    clone_service_pb2,
    clone_service_pb2_grpc,
    export_service_pb2,
    export_service_pb2_grpc,
    operation_service_pb2,
    operation_service_pb2_grpc,
    restore_service_pb2,
    restore_service_pb2_grpc,
    snapshot_service_pb2,
    snapshot_service_pb2_grpc,
)
from service.core.facade import GatewayFacade

# Fully qualified names of the product's services, e.g. "dvp.snapshots.v1.SnapshotService".
SERVICE_NAMES: tuple[str, ...] = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (snapshot_service_pb2, "SnapshotService"),
        (restore_service_pb2, "RestoreService"),
        (clone_service_pb2, "CloneService"),
        (export_service_pb2, "ExportService"),
        (operation_service_pb2, "OperationService"),
        (audit_service_pb2, "AuditService"),
    )
)
HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

_SERVER_OPTIONS = [
    # A second server on the same port must fail to bind, not share it silently.
    ("grpc.so_reuseport", 0),
    # Idle streams (watches) are kept alive through proxies; clients may ping.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


@dataclass(frozen=True)
class GrpcTls:
    """PEM-encoded server credentials; with ``client_ca`` clients must present a
    certificate signed by it (mTLS)."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def start_grpc_server(gateway: GatewayFacade, *, host: str, port: int, tls: GrpcTls | None = None,
                            health_servicer: health.aio.HealthServicer | None = None,
                            ) -> tuple[grpc.aio.Server, int]:
    """Start a grpc.aio server on ``host:port`` (port 0: any free port) and return it with
    the bound port. Stop it with ``await server.stop(grace)``.

    Health: ``health_servicer`` (a ``grpc_health.v1.health.aio.HealthServicer``) lets the
    caller own the serving status; when omitted, one is created with every service, and
    the server as a whole (""), SERVING. Either way it is also reachable as
    ``server.health_servicer`` (e.g. to report NOT_SERVING while draining).
    """
    calls = CallRunner(gateway)
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    snapshot_service_pb2_grpc.add_SnapshotServiceServicer_to_server(SnapshotServicer(calls), server)
    restore_service_pb2_grpc.add_RestoreServiceServicer_to_server(RestoreServicer(calls), server)
    clone_service_pb2_grpc.add_CloneServiceServicer_to_server(CloneServicer(calls), server)
    export_service_pb2_grpc.add_ExportServiceServicer_to_server(ExportServicer(calls), server)
    operation_service_pb2_grpc.add_OperationServiceServicer_to_server(OperationServicer(calls), server)
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(calls), server)

    if health_servicer is None:
        health_servicer = health.aio.HealthServicer()
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.health_servicer = health_servicer
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server)

    address = _address(host, port)
    cause: RuntimeError | None = None
    try:
        bound = _bind(server, address, tls)
    except RuntimeError as exc:  # grpcio raises RuntimeError("Failed to bind ...")
        bound, cause = 0, exc
    if not bound:
        await server.stop(None)
        raise OSError(f"gRPC server could not bind {address}") from cause
    await server.start()
    return server, bound


def _bind(server: grpc.aio.Server, address: str, tls: GrpcTls | None) -> int:
    if tls is None:
        return int(server.add_insecure_port(address))
    credentials = grpc.ssl_server_credentials(
        [(tls.private_key, tls.cert_chain)], root_certificates=tls.client_ca,
        require_client_auth=tls.client_ca is not None)
    return int(server.add_secure_port(address, credentials))
