"""The gateway's error model: one set of errors for both doors.

Every failure a caller can see is an ``ApiError`` with a stable machine-readable
``reason`` (``UPPER_SNAKE``, as in google.rpc.ErrorInfo.reason) and a ``code`` from the
shared table below. The gRPC adapter maps ``code`` to a grpc.StatusCode and attaches
google.rpc details; the REST adapter maps it to an HTTP status and an RFC 9457
problem document. Neither adapter invents errors of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Code(StrEnum):
    """Canonical codes (names match grpc.StatusCode)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    ABORTED = "ABORTED"  # optimistic-concurrency / idempotency conflicts
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"  # a byte range past the end of an export
    INTERNAL = "INTERNAL"


HTTP_STATUS: dict[Code, int] = {
    Code.INVALID_ARGUMENT: 400,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.ABORTED: 409,
    Code.FAILED_PRECONDITION: 412,
    Code.PERMISSION_DENIED: 403,
    Code.UNAUTHENTICATED: 401,
    Code.UNAVAILABLE: 503,
    Code.DEADLINE_EXCEEDED: 504,
    Code.UNIMPLEMENTED: 501,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.OUT_OF_RANGE: 416,
    Code.INTERNAL: 500,
}

# The domain of every ErrorInfo we emit.
ERROR_DOMAIN = "snapshots.dvp.deckhouse.io"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field; ``field`` is a dotted path in the request (``disk_snapshot.name``)."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """google.rpc.PreconditionFailure.Violation: ``type`` e.g. ``VM_RUNNING``."""

    type: str
    subject: str
    description: str


@dataclass
class ApiError(Exception):
    code: Code
    reason: str
    message: str
    field_violations: list[FieldViolation] = field(default_factory=list)
    precondition_violations: list[PreconditionViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after_seconds: int | None = None
    # Set once the audit log holds this failure, so an adapter knows whether a rejection
    # of its own (a body it could not parse) still has to be recorded.
    audited: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}/{self.reason}: {self.message}"

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


# Constructors for the common cases: one place that spells each reason.


def invalid_argument(message: str, violations: list[FieldViolation] | None = None,
                     reason: str = "INVALID_ARGUMENT") -> ApiError:
    return ApiError(Code.INVALID_ARGUMENT, reason, message, field_violations=violations or [])


def not_found(kind: str, name: str, namespace: str | None = None) -> ApiError:
    where = f" in namespace {namespace!r}" if namespace else ""
    return ApiError(Code.NOT_FOUND, "RESOURCE_NOT_FOUND", f"{kind} {name!r} not found{where}",
                    metadata={"kind": kind, "name": name, **({"namespace": namespace} if namespace else {})})


def already_exists(kind: str, name: str, namespace: str | None = None) -> ApiError:
    return ApiError(Code.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS", f"{kind} {name!r} already exists",
                    metadata={"kind": kind, "name": name, **({"namespace": namespace} if namespace else {})})


def idempotency_conflict(request_id: str) -> ApiError:
    return ApiError(Code.ABORTED, "IDEMPOTENCY_KEY_REUSED",
                    f"request_id {request_id!r} was already used with a different request body",
                    metadata={"request_id": request_id})


def failed_precondition(reason: str, message: str,
                        violations: list[PreconditionViolation] | None = None) -> ApiError:
    return ApiError(Code.FAILED_PRECONDITION, reason, message, precondition_violations=violations or [])


def permission_denied(message: str) -> ApiError:
    return ApiError(Code.PERMISSION_DENIED, "PERMISSION_DENIED", message)


def unauthenticated(message: str = "a valid bearer token is required") -> ApiError:
    return ApiError(Code.UNAUTHENTICATED, "UNAUTHENTICATED", message)


def unavailable(message: str, retry_after_seconds: int = 1, reason: str = "CLUSTER_UNAVAILABLE") -> ApiError:
    return ApiError(Code.UNAVAILABLE, reason, message, retry_after_seconds=retry_after_seconds)


def unimplemented(method: str, issue_hint: str = "") -> ApiError:
    hint = f" ({issue_hint})" if issue_hint else ""
    return ApiError(Code.UNIMPLEMENTED, "NOT_IMPLEMENTED_YET",
                    f"{method} is part of the contract but not implemented in this release{hint}")


def stale_operation(operation_id: str, read_version: int, stored_version: int) -> ApiError:
    """A save of an operation copy older than the stored one (another writer got there first)."""
    return ApiError(Code.ABORTED, "OPERATION_CHANGED",
                    f"operation {operation_id!r} changed meanwhile (read version {read_version}, "
                    f"stored version {stored_version}); re-read it and try again",
                    metadata={"operation_id": operation_id})


# What a watcher that fell too far behind is told, by every layer that bounds it (the
# watch hub's backlog, the SSE socket's buffer): its view is incomplete, so it has to list
# again and watch again; retrying the watch alone would miss what it dropped.
WATCH_OVERFLOW = "WATCH_OVERFLOW"


def watch_overflow(what: str) -> ApiError:
    return ApiError(Code.ABORTED, WATCH_OVERFLOW, "the watch fell too far behind the changes and was closed: "
                    f"list again, then watch again ({what})", retry_after_seconds=1,
                    metadata={"resync": "RESYNC_REQUIRED"})


def database_unavailable(retry_after_seconds: int = 2) -> ApiError:
    """The database did not answer in time (locked past the busy timeout, or down)."""
    return unavailable("the database is unavailable or busy; retry shortly", retry_after_seconds,
                       reason="DATABASE_UNAVAILABLE")
