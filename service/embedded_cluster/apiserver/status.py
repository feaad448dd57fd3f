"""metav1.Status bodies and the aiohttp responses that carry them."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from service.embedded_cluster.contracts import Obj, StatusError


def status_body(error: StatusError) -> Obj:
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": error.message, "reason": error.reason, "code": error.code}
    details: dict[str, Any] = {}
    if error.name:
        details["name"] = error.name
    if error.group:
        details["group"] = error.group
    if error.kind:
        details["kind"] = error.kind
    if error.causes:
        details["causes"] = [{"reason": c.reason, "message": c.message, "field": c.field} for c in error.causes]
    if details:
        body["details"] = details
    return body


def json_response(body: Any, status: int = 200, content_type: str = "application/json") -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type=content_type)


def error_response(error: StatusError) -> web.Response:
    return json_response(status_body(error), status=error.code)


def not_found_path() -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource")


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)
