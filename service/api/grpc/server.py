"""Builds the grpc.aio server: the six services, health checking and reflection, every
method registered with request decoding that cannot fail inside grpc (``handlers``)."""

# grpcio ships no type stubs in this environment; its objects are typed as Any.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from service.api.grpc.audit import AuditServicer
from service.api.grpc.calls import CallRunner, refuse_unaudited
from service.api.grpc.clone import CloneServicer
from service.api.grpc.export import ExportServicer
from service.api.grpc.handlers import add_servicer
from service.api.grpc.limits import GrpcLimits
from service.api.grpc.operations import OperationServicer
from service.api.grpc.restore import RestoreServicer
from service.api.grpc.snapshots import SnapshotServicer
from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    clone_service_pb2,
    export_service_pb2,
    operation_service_pb2,
    restore_service_pb2,
    snapshot_service_pb2,
)
from service.core.facade import GatewayFacade
from service.observability.telemetry import Telemetry

# Each product service: its generated module, name and servicer class.
_SERVICES = (
    (snapshot_service_pb2, "SnapshotService", SnapshotServicer),
    (restore_service_pb2, "RestoreService", RestoreServicer),
    (clone_service_pb2, "CloneService", CloneServicer),
    (export_service_pb2, "ExportService", ExportServicer),
    (operation_service_pb2, "OperationService", OperationServicer),
    (audit_service_pb2, "AuditService", AuditServicer),
)
# Fully qualified names of the product's services, e.g. "dvp.snapshots.v1.SnapshotService".
SERVICE_NAMES: tuple[str, ...] = tuple(module.DESCRIPTOR.services_by_name[name].full_name
                                       for module, name, _ in _SERVICES)
HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

_SERVER_OPTIONS = [
    # A second server on the same port must fail to bind, not share it silently.
    ("grpc.so_reuseport", 0),
    # Clients may ping idle streams (watches), but not more often than this.
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
                            limits: GrpcLimits | None = None, telemetry: Telemetry | None = None,
                            ) -> tuple[grpc.aio.Server, int]:
    """Start a grpc.aio server on ``host:port`` (port 0: any free port) and return it with
    the bound port. Stop it with ``await server.stop(grace)``.

    Health: ``health_servicer`` (a ``grpc_health.v1.health.aio.HealthServicer``) lets the
    caller own the serving status; when omitted, one is created with every service, and
    the server as a whole (""), SERVING. Either way it is also reachable as
    ``server.health_servicer`` (e.g. to report NOT_SERVING while draining).

    ``limits`` (default ``GrpcLimits()``) bounds connections and request sizes;
    ``telemetry`` (default: none) sees every contract call.
    """
    calls = CallRunner(gateway, telemetry)
    server = grpc.aio.server(options=[*_SERVER_OPTIONS, *(limits or GrpcLimits()).options()])
    for module, name, servicer_class in _SERVICES:
        add_servicer(server, module.DESCRIPTOR.services_by_name[name], servicer_class(calls), calls.refuse_undecodable)

    if health_servicer is None:
        health_servicer = health.aio.HealthServicer()
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    add_servicer(server, health_pb2.DESCRIPTOR.services_by_name["Health"], health_servicer, refuse_unaudited)
    server.health_servicer = health_servicer
    # What reflection.enable_server_reflection registers, with the same safe decoding.
    add_servicer(server, reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
                 reflection.aio.ReflectionServicer((*SERVICE_NAMES, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME)),
                 refuse_unaudited)

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
