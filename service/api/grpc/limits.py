"""Connection and message limits of the gRPC listener, as grpc core channel arguments."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class GrpcLimits:
    """What one client (one TCP connection) may hold of the gRPC listener.

    - ``handshake_timeout``: a connection must finish TLS and send the HTTP/2 preface and
      SETTINGS within this time, or it is closed (grpc core's default is 120 s, so a
      silent or half-open connection would pin a socket that long).
    - ``max_connection_idle``: a connection with no call in flight is sent GOAWAY after
      this long (live watches and exports are calls, so they are never idle).
    - ``keepalive_time`` / ``keepalive_timeout``: the server pings a quiet connection
      (watches through proxies stay open) and drops it when the ping is not answered.
    - ``max_receive_message``: a larger request is RESOURCE_EXHAUSTED, never parsed; the
      biggest legitimate request is a few KiB.
    - ``max_concurrent_streams``: calls one connection may have open at once.
    """

    handshake_timeout: float = 10.0
    max_connection_idle: float = 300.0
    keepalive_time: float = 60.0
    keepalive_timeout: float = 20.0
    max_receive_message: int = 4 * MiB
    max_concurrent_streams: int = 1000

    def options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.server_handshake_timeout_ms", _ms(self.handshake_timeout)),
            ("grpc.max_connection_idle_ms", _ms(self.max_connection_idle)),
            ("grpc.keepalive_time_ms", _ms(self.keepalive_time)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout)),
            ("grpc.max_receive_message_length", self.max_receive_message),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
        ]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
