"""Request decoding that never raises into grpc.

grpc runs a method's request deserializer before any handler code. When it raises, grpc
answers UNKNOWN, logs a traceback and no handler (so no audit) ever runs. The
deserializers built here return ``Undecodable`` instead, and the call runner refuses it
(INVALID_ARGUMENT, audited) before authenticating: no token is worth checking for a
request that cannot be read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message


@dataclass(frozen=True)
class Undecodable:
    """Bytes that are not a ``type_name`` message; ``error`` says why (for the log only)."""

    type_name: str
    error: str


def safe_deserializer(message_class: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    type_name = message_class.DESCRIPTOR.full_name

    def decode(data: bytes) -> Message | Undecodable:
        try:
            return message_class.FromString(data)
        # DecodeError for corrupt wire data or bad UTF-8; anything else the parser raises
        # on hostile input is the same refusal, never a grpc-level failure.
        except Exception as exc:
            return Undecodable(type_name, f"{type(exc).__name__}: {exc}"[:300])

    return decode
