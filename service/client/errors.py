"""Typed errors of the gateway's gRPC API.

The gateway sends every refusal as a ``google.rpc.Status`` in the
``grpc-status-details-bin`` trailer: ErrorInfo always (reason, domain, metadata), then
BadRequest, PreconditionFailure and RetryInfo when they apply, and RequestInfo with the
call's request id. ``error_from_rpc`` turns a ``grpc.aio.AioRpcError`` into the
``GatewayError`` subclass of its status code with those details as attributes, so a
caller writes ``except NotFound`` rather than comparing codes.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from service.api.grpc_gen.dvp.snapshots.v1 import operation_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"
REQUEST_ID_KEY = "x-request-id"


class FieldViolation(NamedTuple):
    """One bad field of the request (google.rpc.BadRequest)."""

    field: str
    description: str


class PreconditionViolation(NamedTuple):
    """One unmet precondition (google.rpc.PreconditionFailure), e.g. a disk in use."""

    type: str
    subject: str
    description: str


class GatewayError(Exception):
    """A call the gateway refused or could not complete.

    ``code`` is the ``grpc.StatusCode``; ``reason`` and ``metadata`` come from ErrorInfo;
    ``retry_after`` (seconds) from RetryInfo; ``request_id`` quotes the call in the
    gateway's logs and audit log."""

    status_code: ClassVar[Any] = None    # the grpc.StatusCode a subclass stands for
    _by_code: ClassVar[dict[Any, type[GatewayError]]] = {}

    def __init__(self, code: Any, message: str, *, reason: str = "", domain: str = "",
                 metadata: dict[str, str] | None = None, field_violations: list[FieldViolation] | None = None,
                 precondition_violations: list[PreconditionViolation] | None = None,
                 retry_after: float | None = None, request_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.field_violations = list(field_violations or [])
        self.precondition_violations = list(precondition_violations or [])
        self.retry_after = retry_after
        self.request_id = request_id

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.status_code is not None:
            GatewayError._by_code.setdefault(cls.status_code, cls)

    @staticmethod
    def class_for(code: Any) -> type[GatewayError]:
        """The subclass raised for a status code (GatewayError itself for an unknown one)."""
        return GatewayError._by_code.get(code, GatewayError)

    def __str__(self) -> str:
        name = getattr(self.code, "name", str(self.code))
        text = f"{name} {self.reason}: {self.message}" if self.reason else f"{name}: {self.message}"
        return f"{text} (request id {self.request_id})" if self.request_id else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class Cancelled(GatewayError):
    status_code = grpc.StatusCode.CANCELLED


class Unknown(GatewayError):
    status_code = grpc.StatusCode.UNKNOWN


class InvalidArgument(GatewayError):
    status_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(GatewayError):
    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(GatewayError):
    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(GatewayError):
    status_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(GatewayError):
    status_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(GatewayError):
    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(GatewayError):
    status_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(GatewayError):
    status_code = grpc.StatusCode.ABORTED


class OutOfRange(GatewayError):
    status_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(GatewayError):
    status_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(GatewayError):
    status_code = grpc.StatusCode.INTERNAL


class Unavailable(GatewayError):
    status_code = grpc.StatusCode.UNAVAILABLE


class DataLoss(GatewayError):
    status_code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(GatewayError):
    status_code = grpc.StatusCode.UNAUTHENTICATED


class OperationFailed(GatewayError):
    """``GatewayClient.wait`` followed an operation to FAILED or CANCELLED.

    ``operation`` is its final version; ``error`` its ``OperationError`` (code, reason,
    message); ``code`` the grpc.StatusCode named by that error."""

    def __init__(self, operation: operation_pb2.Operation) -> None:
        state = operation_pb2.Operation.State.Name(operation.state)
        error = operation.error
        fallback = grpc.StatusCode.CANCELLED if operation.state == operation_pb2.Operation.CANCELLED \
            else grpc.StatusCode.UNKNOWN
        code = getattr(grpc.StatusCode, error.code, fallback) if error.code else fallback
        detail = error.message or error.reason or "no error recorded"
        super().__init__(code, f"operation {operation.id} ended {state}: {detail}", reason=error.reason,
                         request_id=operation.request_id)
        self.operation = operation
        self.error = error


class WaitTimeout(TimeoutError):
    """``GatewayClient.wait`` gave up before the operation was done; ``operation`` is the
    last version seen (None when none was)."""

    def __init__(self, operation_id: str, timeout: float, operation: operation_pb2.Operation | None) -> None:
        state = operation_pb2.Operation.State.Name(operation.state) if operation is not None else "unknown"
        super().__init__(f"operation {operation_id} not done after {timeout:g} s (last state {state})")
        self.operation_id = operation_id
        self.operation = operation


def _metadata_value(metadata: Any, key: str) -> str | bytes | None:
    for entry_key, value in metadata or ():
        if str(entry_key).lower() == key:
            return value  # type: ignore[no-any-return]
    return None


def _status_details(rpc_error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    raw = _metadata_value(rpc_error.trailing_metadata(), STATUS_DETAILS_KEY)
    if not isinstance(raw, bytes):
        return None
    try:
        return status_pb2.Status.FromString(raw)
    except DecodeError:
        return None   # a proxy's mangled trailer: the code and message still stand


def error_from_rpc(rpc_error: grpc.aio.AioRpcError) -> GatewayError:
    """The typed error for a failed call, its google.rpc details parsed."""
    code = rpc_error.code()
    info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    preconditions = error_details_pb2.PreconditionFailure()
    retry = error_details_pb2.RetryInfo()
    request = error_details_pb2.RequestInfo()
    seen_retry = False
    status = _status_details(rpc_error)
    for packed in status.details if status is not None else ():
        for holder in (info, bad_request, preconditions, retry, request):
            if packed.Is(holder.DESCRIPTOR):
                packed.Unpack(holder)
                seen_retry = seen_retry or holder is retry
    request_id = request.request_id
    if not request_id:
        sent = _metadata_value(rpc_error.initial_metadata(), REQUEST_ID_KEY)
        request_id = sent if isinstance(sent, str) else ""
    return GatewayError.class_for(code)(
        code, rpc_error.details() or "", reason=info.reason, domain=info.domain, metadata=dict(info.metadata),
        field_violations=[FieldViolation(v.field, v.description) for v in bad_request.field_violations],
        precondition_violations=[PreconditionViolation(v.type, v.subject, v.description)
                                 for v in preconditions.violations],
        retry_after=retry.retry_delay.ToTimedelta().total_seconds() if seen_retry else None,
        request_id=request_id)
