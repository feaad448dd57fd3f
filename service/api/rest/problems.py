"""RFC 9457 problem documents from ``ApiError``, plus the few transport-level errors only
HTTP has (413, 415, 405, unknown route)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from service.api.rest.names import rest_field_name, rest_text
from service.api.rest.text import printable
from service.core.errors import ApiError, Code, FieldViolation

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://snapshots.dvp.deckhouse.io/problems/"


@dataclass
class TransportError(ApiError):
    """An error only HTTP has (413, 415, 405...): its own status, a canonical code for gRPC parity."""

    status: int = 400


def transport_error(status: int, reason: str, message: str, code: Code = Code.INVALID_ARGUMENT,
                    violations: list[FieldViolation] | None = None) -> ApiError:
    return TransportError(code, reason, message, field_violations=violations or [], status=status)


def status_of(error: ApiError) -> int:
    return error.status if isinstance(error, TransportError) else error.http_status


def problem_document(error: ApiError, *, request_id: str, instance: str) -> dict[str, Any]:
    status = status_of(error)
    # The adapter's own errors already name JSON fields; the core's name request fields.
    own = isinstance(error, TransportError)
    fields = [v.field for v in error.field_violations]

    def field_name(field: str) -> str:
        return field if own else rest_field_name(field)

    def text(message: str) -> str:
        return message if own else rest_text(message, fields)

    doc: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.reason.lower().replace("_", "-"),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": text(error.message),
        "instance": instance,
        "code": error.code.value,
        "reason": error.reason,
        "requestId": request_id,
    }
    if error.field_violations:
        doc["fieldViolations"] = [{"field": field_name(v.field), "description": text(v.description)}
                                  for v in error.field_violations]
    if error.precondition_violations:
        doc["preconditionViolations"] = [{"type": v.type, "subject": v.subject, "description": v.description}
                                         for v in error.precondition_violations]
    if error.metadata:
        doc["metadata"] = dict(error.metadata)
    printed: dict[str, Any] = _printable(doc)
    return printed


def _printable(value: Any) -> Any:
    """Every string of a document encodable: a client's text echoed back (an unknown field's
    name, a rejected header) must not turn a 400 into a failure to write the 400."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(item) for item in value]
    return value


def problem_response(error: ApiError, *, request_id: str, instance: str) -> web.Response:
    doc = problem_document(error, request_id=request_id, instance=instance)
    headers: dict[str, str] = {}
    if error.retry_after_seconds is not None:
        headers["Retry-After"] = str(max(0, error.retry_after_seconds))
    if error.code is Code.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = 'Bearer realm="dvp-snapshot-gateway"'
    if error.code is Code.OUT_OF_RANGE and error.metadata.get("size", "").isdigit():
        headers["Content-Range"] = f"bytes */{error.metadata['size']}"
    response = web.Response(status=doc["status"], headers=headers, content_type=PROBLEM_CONTENT_TYPE,
                            text=json.dumps(doc, ensure_ascii=False))
    if doc["status"] in _CLOSES_CONNECTION:
        response.force_close()
    return response


def internal_error() -> ApiError:
    # Deliberately generic: the log line carries the details, keyed by the request id.
    return ApiError(Code.INTERNAL, "INTERNAL", "an internal error occurred; quote the requestId when reporting it")


def from_http_exception(exc: web.HTTPException) -> ApiError:
    """aiohttp's own 404/405/413 (routing, body size) as problems."""
    status = exc.status
    if status == 404:
        return transport_error(404, "ROUTE_NOT_FOUND", "no such path", Code.NOT_FOUND)
    if status == 405:
        return transport_error(405, "METHOD_NOT_ALLOWED", "this path does not support that method",
                               Code.UNIMPLEMENTED)
    if status == 413:
        return transport_error(413, "PAYLOAD_TOO_LARGE", "the request body is too large")
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
    return transport_error(status, phrase.upper().replace(" ", "_").replace("-", "_"), phrase)


def payload_too_large(limit: int) -> ApiError:
    what = "takes no request body" if limit == 0 else f"accepts request bodies of at most {_size(limit)}"
    return transport_error(413, "PAYLOAD_TOO_LARGE", f"this operation {what}")


def request_timeout(seconds: float) -> ApiError:
    return transport_error(408, "REQUEST_TIMEOUT", f"the request body did not arrive within {seconds:g}s",
                           Code.DEADLINE_EXCEEDED)


def _size(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"


# The rest of such a request may still be on its way: the connection is not reused.
_CLOSES_CONNECTION = frozenset({408, 413})
