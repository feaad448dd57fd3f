"""/v1/audit/events, /v1/audit/events:export and /v1/audit:verify"""

from __future__ import annotations

import csv
import io
import json

from aiohttp import web

from service.api.rest import wire
from service.api.rest.body import json_object
from service.api.rest.context import context, gateway
from service.api.rest.handlers.common import json_response
from service.api.rest.parsing import Body, Query
from service.api.rest.streams import serve_lines
from service.core import contract
from service.core.domain import AuditEvent, AuditOutcome, AuditVerificationProgress
from service.core.requests import ListAuditEventsRequest, VerifyAuditLogRequest

NDJSON = "application/x-ndjson"
CSV = "text/csv"
_FILTERS = ("actor", "namespace", "resource", "action", "outcome", "since", "until")
# Spreadsheets execute cells starting with these; the export must not carry formulas.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _export_format(request: web.Request, default: str = "") -> str:
    """The first media type of Accept we can stream; ``default`` (JSON pages: "") otherwise."""
    for part in request.headers.get("Accept", "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in (NDJSON, "application/jsonl", "application/json-lines"):
            return NDJSON
        if media == CSV:
            return CSV
        if media in ("application/json", "*/*", "application/*"):
            return default
    return default


def _ndjson_line(event: AuditEvent) -> bytes:
    return (json.dumps(wire.audit_event(event), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _csv_cell(value: object) -> str:
    if isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    else:
        text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _csv_row(values: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue().encode()


def _csv_line(event: AuditEvent) -> bytes:
    doc = wire.audit_event(event)
    return _csv_row([_csv_cell(doc[column]) for column in wire.AUDIT_CSV_COLUMNS])


def _filters(query: Query, *, paged: bool) -> ListAuditEventsRequest:
    return ListAuditEventsRequest(
        actor=query.text("actor"), namespace=query.text("namespace"), resource=query.text("resource"),
        action=query.text("action"), outcome=query.enum("outcome", AuditOutcome), since=query.text("since"),
        until=query.text("until"),
        # An export streams the whole filtered log: paging does not apply to it.
        page_size=query.page_size() if paged else 0, page_token=query.text("pageToken") if paged else "")


async def _export(request: web.Request, req: ListAuditEventsRequest, fmt: str) -> web.StreamResponse:
    events = gateway(request).stream(context(request), contract.EXPORT_AUDIT_EVENTS, req)
    if fmt == CSV:
        return await serve_lines(request, events, "text/csv; charset=utf-8", _csv_line,
                                 header=_csv_row(list(wire.AUDIT_CSV_COLUMNS)))
    return await serve_lines(request, events, NDJSON, _ndjson_line)


async def list_audit_events(request: web.Request) -> web.StreamResponse:
    """One JSON page; with Accept JSON Lines or CSV, the whole filtered log (ExportAuditEvents)."""
    query = Query(request.query, (*_FILTERS, "pageSize", "pageToken"))
    fmt = _export_format(request)
    req = _filters(query, paged=not fmt)
    if fmt:
        return await _export(request, req, fmt)
    page = await gateway(request).call(context(request), contract.LIST_AUDIT_EVENTS, req)
    return json_response({"items": [wire.audit_event(e) for e in page.items], "nextPageToken": page.next_page_token})


async def export_audit_events(request: web.Request) -> web.StreamResponse:
    """The whole filtered log as JSON Lines (the default) or CSV (Accept: text/csv)."""
    query = Query(request.query, _FILTERS)
    return await _export(request, _filters(query, paged=False), _export_format(request, default=NDJSON))


async def verify_audit_log(request: web.Request) -> web.StreamResponse:
    """The body is optional; when sent it is an empty object (the call has no parameters)."""
    Query(request.query, ())
    Body(await json_object(request, required=False), ()).check()
    result = await gateway(request).call(context(request), contract.VERIFY_AUDIT_LOG, VerifyAuditLogRequest())
    return json_response(wire.audit_verification(result))


async def verify_audit_log_stream(request: web.Request) -> web.StreamResponse:
    """The same verification as JSON Lines: a progress line after each batch of events
    checked, the last one with the result."""
    Query(request.query, ())
    Body(await json_object(request, required=False), ()).check()
    steps = gateway(request).stream(context(request), contract.VERIFY_AUDIT_LOG_STREAM, VerifyAuditLogRequest())
    return await serve_lines(request, steps, NDJSON, _progress_line)


def _progress_line(step: AuditVerificationProgress) -> bytes:
    return (json.dumps(wire.audit_verification_progress(step), separators=(",", ":")) + "\n").encode()
