"""RFC 9457 problem documents from ``ApiError``, plus the few transport-level errors only
HTTP has (413, 415, 405, unknown route)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from service.core.errors import ApiError, Code, FieldViolation

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://snapshots.dvp.deckhouse.io/problems/"

# The core names fields as in its request objects (snake_case); REST callers know the
# JSON names, and the idempotency key travels in a header.
_FIELD_RENAMES = {"request_id": "Idempotency-Key", "after_version": "Last-Event-ID",
                  "keep_ip_address": "keepIPAddress"}
# A clone's options as the core's request object nests them, and where the body has them
# (the core reports the proto names, "customization.name_prefix"; both are understood).
_PREFIX_RENAMES = (("options.name_prefix", "customization.name_prefix"),
                   ("options.name_suffix", "customization.name_suffix"),
                   ("options.", ""))
# A path of identifiers with array indices: "name_replacements[0].from.name"; a map key
# ("labels['a_b']") ends it and is left as is.
_PATH_RE = re.compile(r"^[a-z0-9_]+(?:\[\d+\])*(?:\.[a-z0-9_]+(?:\[\d+\])*)*")
_IDENTIFIER_RE = re.compile(r"[a-z0-9_]+")


def rest_field_name(field: str) -> str:
    """``virtual_disk_name`` -> ``virtualDiskName``, ``name_replacements[0].from.name`` ->
    ``nameReplacements[0].from.name``; a ``labels['a_b']`` key is left as is."""
    if field in _FIELD_RENAMES:
        return _FIELD_RENAMES[field]
    for core, rest in _PREFIX_RENAMES:
        if field.startswith(core):
            field = rest + field[len(core):]
            break
    match = _PATH_RE.match(field)
    if match is None:
        return field
    head = _IDENTIFIER_RE.sub(lambda m: _camel(m.group(0)), match.group(0))
    return head + field[match.end():]


def _camel(snake: str) -> str:
    first, *rest = snake.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


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
    doc: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.reason.lower().replace("_", "-"),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": error.message,
        "instance": instance,
        "code": error.code.value,
        "reason": error.reason,
        "requestId": request_id,
    }
    if error.field_violations:
        # The adapter's own violations already name JSON fields; the core's name request fields.
        rename = (lambda field: field) if isinstance(error, TransportError) else rest_field_name
        doc["fieldViolations"] = [{"field": rename(v.field), "description": v.description}
                                  for v in error.field_violations]
    if error.precondition_violations:
        doc["preconditionViolations"] = [{"type": v.type, "subject": v.subject, "description": v.description}
                                         for v in error.precondition_violations]
    if error.metadata:
        doc["metadata"] = dict(error.metadata)
    return doc


def problem_response(error: ApiError, *, request_id: str, instance: str) -> web.Response:
    doc = problem_document(error, request_id=request_id, instance=instance)
    headers: dict[str, str] = {}
    if error.retry_after_seconds is not None:
        headers["Retry-After"] = str(max(0, error.retry_after_seconds))
    if error.code is Code.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = 'Bearer realm="dvp-snapshot-gateway"'
    if error.code is Code.OUT_OF_RANGE and error.metadata.get("size", "").isdigit():
        headers["Content-Range"] = f"bytes */{error.metadata['size']}"
    return web.Response(status=doc["status"], headers=headers, content_type=PROBLEM_CONTENT_TYPE,
                        text=json.dumps(doc, ensure_ascii=False))


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
        return payload_too_large()
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
    return transport_error(status, phrase.upper().replace(" ", "_").replace("-", "_"), phrase)


def payload_too_large() -> ApiError:
    return transport_error(413, "PAYLOAD_TOO_LARGE", "the request body exceeds the 1 MiB limit")
