"""Shared request and response helpers for the handlers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from service.api.rest import wire
from service.api.rest.parsing import bad_request
from service.api.rest.text import text_problem
from service.core.domain import Operation
from service.core.errors import FieldViolation

IDEMPOTENCY_KEY = "Idempotency-Key"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers=headers, content_type="application/json",
                        text=json.dumps(body, ensure_ascii=False))


def operation_accepted(op: Operation) -> web.Response:
    """202 + Location: every mutating call answers with its long-running operation."""
    return json_response(wire.operation(op), status=202, headers={"Location": f"/v1/operations/{op.id}"})


def idempotency_key(request: web.Request) -> str:
    """The request id of a mutating call (checked by the core, once it is text at all:
    a header's non-UTF-8 bytes arrive as lone surrogates)."""
    key = request.headers.get(IDEMPOTENCY_KEY, "")
    problem = text_problem(key)
    if problem is not None:
        raise bad_request([FieldViolation(IDEMPOTENCY_KEY, problem)])
    return key
