"""Clients of the gateway.

- ``GatewayClient`` (``service.client.gateway``): the typed async client of the gRPC API
  for other platform services, with typed errors (``service.client.errors``), retries
  (``service.client.retry``) and TLS (``service.client.tls``); see docs/client.md.
- The REST download client used by the ``dvp-gateway`` command line (``download``).
- ``ClientConfig``: where both find the gateway (``var/client.yaml``).

The names below are imported on first use: ``dvp-gateway download`` and the gateway's
own ``client.yaml`` writer import this package and must not pay for the gRPC client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.client.config import ClientConfig
    from service.client.errors import (
        Aborted,
        AlreadyExists,
        Cancelled,
        DataLoss,
        DeadlineExceeded,
        FailedPrecondition,
        FieldViolation,
        GatewayError,
        Internal,
        InvalidArgument,
        NotFound,
        OperationFailed,
        OutOfRange,
        PermissionDenied,
        PreconditionViolation,
        ResourceExhausted,
        Unauthenticated,
        Unavailable,
        Unimplemented,
        Unknown,
        WaitTimeout,
    )
    from service.client.gateway import GatewayClient, Stream, rename, save_export
    from service.client.retry import RetryPolicy

_HOMES = {
    "ClientConfig": "service.client.config",
    "GatewayClient": "service.client.gateway",
    "Stream": "service.client.gateway",
    "rename": "service.client.gateway",
    "save_export": "service.client.gateway",
    "RetryPolicy": "service.client.retry",
    **{name: "service.client.errors" for name in (
        "Aborted", "AlreadyExists", "Cancelled", "DataLoss", "DeadlineExceeded", "FailedPrecondition",
        "FieldViolation", "GatewayError", "Internal", "InvalidArgument", "NotFound", "OperationFailed", "OutOfRange",
        "PermissionDenied", "PreconditionViolation", "ResourceExhausted", "Unauthenticated", "Unavailable",
        "Unimplemented", "Unknown", "WaitTimeout")},
}

__all__ = [
    "Aborted", "AlreadyExists", "Cancelled", "ClientConfig", "DataLoss", "DeadlineExceeded", "FailedPrecondition",
    "FieldViolation", "GatewayClient", "GatewayError", "Internal", "InvalidArgument", "NotFound", "OperationFailed",
    "OutOfRange", "PermissionDenied", "PreconditionViolation", "ResourceExhausted", "RetryPolicy", "Stream",
    "Unauthenticated", "Unavailable", "Unimplemented", "Unknown", "WaitTimeout", "rename", "save_export",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
