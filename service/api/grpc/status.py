"""``ApiError`` -> ``google.rpc.Status`` with typed details.

The status carries ErrorInfo always (reason, ERROR_DOMAIN, metadata), then BadRequest,
PreconditionFailure and RetryInfo when the error has them, and RequestInfo so a caller
can quote the request id. ``Code`` names equal google.rpc.Code / grpc.StatusCode names,
so the mapping is by name.
"""

from __future__ import annotations

from google.protobuf.any_pb2 import Any as AnyPb
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from service.core.errors import ERROR_DOMAIN, ApiError, Code

# Status details travel in a trailer; keep them well under gRPC's default 8 KiB limit.
MAX_VIOLATIONS = 20
MAX_TEXT = 512


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _pack(detail: Message) -> AnyPb:
    packed = AnyPb()
    packed.Pack(detail)
    return packed


def rpc_code(code: Code) -> int:
    return int(code_pb2.Code.Value(code.value))


def to_rpc_status(err: ApiError, request_id: str = "") -> status_pb2.Status:
    details: list[Message] = [error_details_pb2.ErrorInfo(
        reason=err.reason, domain=ERROR_DOMAIN,
        metadata={_clip(k): _clip(v) for k, v in sorted(err.metadata.items())})]
    if err.field_violations:
        details.append(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=_clip(v.field), description=_clip(v.description))
            for v in err.field_violations[:MAX_VIOLATIONS]]))
    if err.precondition_violations:
        details.append(error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(type=_clip(v.type), subject=_clip(v.subject),
                                                            description=_clip(v.description))
            for v in err.precondition_violations[:MAX_VIOLATIONS]]))
    if err.retry_after_seconds is not None:
        details.append(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=max(0, err.retry_after_seconds))))
    if request_id:
        details.append(error_details_pb2.RequestInfo(request_id=request_id))
    return status_pb2.Status(code=rpc_code(err.code), message=_clip(err.message),
                             details=[_pack(d) for d in details])
