"""Request bodies: a size limit per operation, read as a bounded stream, decoded as JSON
that cannot make the decoder fail in ways it was not asked about.

aiohttp's ``client_max_size`` is one number for the whole application and only applies to
``request.read()``; each operation here has a limit fitting what it accepts, checked on
``Content-Length`` before anything is read and again while the body streams in (chunked
bodies have no length), so no more than the limit (plus one read) is ever buffered.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from service.api.rest.listener import LISTENER
from service.api.rest.parsing import bad_request
from service.api.rest.problems import payload_too_large, request_timeout, transport_error
from service.api.rest.text import printable
from service.core.errors import FieldViolation

KiB = 1024
# By operationId; an operation not listed takes no body (GET, DELETE).
BODY_LIMITS: dict[str, int] = {
    # Kubernetes allows 256 KiB of annotations (UTF-8 bytes); the rest is room for JSON
    # escaping and for labels.
    "CreateDiskSnapshot": 512 * KiB,
    "CreateVirtualMachineSnapshot": 512 * KiB,
    # Labels, or a clone's name map (a few hundred bytes per renamed object).
    "RestoreDisk": 64 * KiB,
    "CloneVirtualMachine": 64 * KiB,
    "CreateVirtualMachineFromSnapshot": 64 * KiB,
    # A name and a mode, a flag, nothing.
    "RestoreVirtualMachine": 4 * KiB,
    "CancelOperation": 4 * KiB,
    "VerifyAuditLog": 4 * KiB,
    "VerifyAuditLogStream": 4 * KiB,
}
MAX_BODY_BYTES = max(BODY_LIMITS.values())
# No request schema nests deeper than 4: a body nested far deeper is refused as a whole.
MAX_JSON_DEPTH = 32
_READ_STEP = 64 * KiB
# Python refuses int() of more than 4300 digits (a ValueError json does not expect); no
# field is a number anyway, so a literal longer than any int64 is kept as a marker.
_INT_LITERAL_MAX = 20
_INT64 = range(-(2**63), 2**63)


def body_limit(operation_id: str) -> int:
    return BODY_LIMITS.get(operation_id, 0)


class OutOfRangeNumber:
    """A JSON number no field could hold (past int64, 1e999, NaN): a value of the wrong
    type wherever it appears, so the field it is in is named by the usual type check."""

    def __repr__(self) -> str:
        return "<number out of range>"


def _int(literal: str) -> int | OutOfRangeNumber:
    if len(literal) > _INT_LITERAL_MAX:
        return OutOfRangeNumber()
    value = int(literal)
    return value if value in _INT64 else OutOfRangeNumber()


def _float(literal: str) -> float | OutOfRangeNumber:
    value = float(literal)
    return value if math.isfinite(value) else OutOfRangeNumber()


def _constant(_literal: str) -> OutOfRangeNumber:  # NaN, Infinity, -Infinity: not JSON
    return OutOfRangeNumber()


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise bad_request([FieldViolation(printable(key), "appears more than once")])
        result[key] = value
    return result


def check_declared_length(request: web.Request, limit: int) -> None:
    """413 before reading, when the body announces itself larger than ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise payload_too_large(limit)


async def read_body(request: web.Request, limit: int, seconds: float) -> bytes:
    """The body, at most ``limit`` bytes (413 beyond), all of it within ``seconds``
    (408 otherwise: a client trickling a body must not hold a handler forever)."""
    check_declared_length(request, limit)
    if not request.body_exists:
        return b""
    body = bytearray()
    try:
        async with asyncio.timeout(seconds):
            while chunk := await request.content.read(min(_READ_STEP, limit + 1 - len(body))):
                body += chunk
                if len(body) > limit:
                    raise payload_too_large(limit)
    except TimeoutError:
        raise request_timeout(seconds) from None
    except RequestPayloadError:
        raise bad_request([FieldViolation("body", "could not be read (a broken chunked encoding)")]) from None
    return bytes(body)


async def json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object, within its operation's limit and the listener's body
    timeout; 415 for another media type. With ``required=False`` an absent (empty) body
    reads as ``{}``."""
    limit = body_limit(request.match_info.route.name or "")
    seconds = request.app[LISTENER].body_timeout
    check_declared_length(request, limit)
    if request.body_exists and request.content_type != "application/json":
        raise transport_error(415, "UNSUPPORTED_MEDIA_TYPE", "the request body must be application/json")
    if request.body_exists and request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise transport_error(415, "UNSUPPORTED_MEDIA_TYPE", "the request body must not be compressed")
    raw = await read_body(request, limit, seconds)
    if not raw:
        if not required:
            return {}
        raise bad_request([FieldViolation("body", "a JSON object is required")])
    return decode_object(raw)


def decode_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates, parse_int=_int,
                           parse_float=_float, parse_constant=_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad_request([FieldViolation("body", f"is not valid UTF-8 JSON: {type(exc).__name__}")]) from None
    if not isinstance(value, dict):
        raise bad_request([FieldViolation("body", "must be a JSON object")])
    if _depth(value) > MAX_JSON_DEPTH:
        raise bad_request([FieldViolation("body", f"nests deeper than {MAX_JSON_DEPTH} levels")])
    return value


def _depth(value: Any) -> int:
    """How deep objects and arrays nest (iterative: the depth is what is being measured)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            return depth
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest
