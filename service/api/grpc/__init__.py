"""The gRPC adapter: grpc.aio servicers over the core's Gateway facade."""

from service.api.grpc.limits import GrpcLimits
from service.api.grpc.server import SERVICE_NAMES, GrpcTls, start_grpc_server

__all__ = ["SERVICE_NAMES", "GrpcLimits", "GrpcTls", "start_grpc_server"]
