"""GET /v1/namespaces/{namespace}/disks/{name}:export and .../disk-snapshots/{name}:export.

HTTP semantics over the core's export stream: ``Range`` (one range: 206 with
Content-Range, 416 past the end), ``If-Range`` with the ETag (a changed content gets the
whole volume, 200), ``Want-Repr-Digest`` (the whole volume's SHA-256 also for a range,
recorded on the operation), ``Repr-Digest`` (RFC 9530) when the digest is known before
the body. Holes are written as zeros; the socket's write buffer is the only buffer, so a
slow reader slows the upstream read.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from service.api.rest.context import REQUEST_ID, TELEMETRY, context, ended_with, gateway
from service.api.rest.parsing import Query, bad_request
from service.core import contract
from service.core.domain import ExportData, ExportEnd, ExportHole, ExportItem, ExportStart
from service.core.errors import ApiError, Code, FieldViolation
from service.core.requests import ExportRequest
from service.observability.telemetry import CANCELLED

log = logging.getLogger("dvp.rest.export")

_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")
_TTL = re.compile(r"^(\d{1,9})(\.\d{1,9})?s$")
_ETAG_MAX = 256
_ZEROS = memoryview(bytes(1 << 20))   # sliced, never copied
_CLOSED = (ConnectionError,)


def parse_range(header: str | None) -> tuple[int, int | None, int | None] | None:
    """(offset, length, suffix length) of one ``bytes=`` range; None for no range. What
    RFC 9110 says to ignore (several ranges, other units, nonsense) is ignored: the whole
    volume is sent."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        return (0, None, int(last)) if int(last) > 0 else None
    if not last:
        return int(first), None, None
    if int(last) < int(first):
        return None
    return int(first), int(last) - int(first) + 1, None


def _ttl(query: Query) -> float | None:
    raw = query.text("ttl")
    if not raw:
        return None
    match = _TTL.match(raw)
    if match is None:
        raise bad_request([FieldViolation("ttl", 'must be a duration in seconds such as "120s"')])
    return float(raw[:-1])


def export_request(request: web.Request) -> ExportRequest:
    query = Query(request.query, ("ttl",))
    ttl = _ttl(query)
    wanted = parse_range(request.headers.get("Range"))
    offset, length, suffix = wanted if wanted is not None else (0, None, None)
    if_range = request.headers.get("If-Range", "")
    # An If-Range date (or anything not an entity tag) cannot prove the content is the
    # same: it then never matches, and the whole volume is sent.
    if_etag = if_range if if_range.startswith('"') and len(if_range) <= _ETAG_MAX and if_range.isprintable() \
        else ('"-"' if if_range else "")
    return ExportRequest(
        namespace=request.match_info["namespace"], name=request.match_info["name"], ttl_seconds=ttl,
        offset=offset, length=length, suffix_length=suffix, expand_holes=True,
        whole_image_sha256="sha-256" in request.headers.get("Want-Repr-Digest", "").lower(), if_etag=if_etag)


def _headers(start: ExportStart, request: web.Request) -> dict[str, str]:
    name = request.match_info["name"]
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(start.length),
        "Accept-Ranges": "bytes",
        "ETag": start.etag,
        "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{name}.img"',
        "X-Operation-Id": start.operation_id,
        "X-Request-Id": request[REQUEST_ID],
    }
    if start.ranged:
        headers["Content-Range"] = f"bytes {start.offset}-{start.offset + start.length - 1}/{start.size}"
    if start.sha256:
        headers["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(start.sha256)).decode()}:"
    return headers


async def _write_hole(response: web.StreamResponse, length: int) -> None:
    while length > 0:
        step = min(length, len(_ZEROS))
        await response.write(_ZEROS[:step])
        length -= step


async def _serve(request: web.Request, method: contract.Method[ExportRequest, ExportItem]) -> web.StreamResponse:
    items: AsyncIterator[ExportItem] = gateway(request).stream(context(request), method, export_request(request))
    try:
        start = await anext(items)   # every refusal happens before this: a problem response
        assert isinstance(start, ExportStart)
        response = web.StreamResponse(status=206 if start.ranged else 200, headers=_headers(start, request))
        await response.prepare(request)
        kind = "disk" if method is contract.EXPORT_DISK else "disk-snapshot"
        await _relay(request, response, items, start, kind)
        return response
    finally:
        with contextlib.suppress(Exception):
            close: Any = getattr(items, "aclose", None)
            if close is not None:
                await close()


async def _relay(request: web.Request, response: web.StreamResponse, items: AsyncIterator[ExportItem],
                 start: ExportStart, kind: str) -> None:
    telemetry = request.app[TELEMETRY]
    sent = 0
    try:
        async for item in items:
            if isinstance(item, ExportData):
                await response.write(item.data)
                sent += len(item.data)
                telemetry.exported(kind, "rest", len(item.data))
            elif isinstance(item, ExportHole):
                await _write_hole(response, item.length)
                sent += item.length
                telemetry.exported(kind, "rest", item.length)
            elif isinstance(item, ExportEnd):
                break
        await response.write_eof()
    except _CLOSED:
        log.info("export client went away after %d of %d bytes", sent, start.length)
        ended_with(request, CANCELLED)
    except Exception as exc:
        ended_with(request, exc.code.value if isinstance(exc, ApiError) else Code.INTERNAL.value)
        # The status line is out: a body cut short of its Content-Length is the only
        # honest signal left (the operation records why).
        log.warning("export %s broke after %d of %d bytes: %s", start.operation_id, sent, start.length,
                    getattr(exc, "reason", type(exc).__name__))
        if request.transport is not None:
            request.transport.abort()


async def export_disk(request: web.Request) -> web.StreamResponse:
    return await _serve(request, contract.EXPORT_DISK)


async def export_disk_snapshot(request: web.Request) -> web.StreamResponse:
    return await _serve(request, contract.EXPORT_DISK_SNAPSHOT)
